"""Floating IPs: an address on an external network, DNAT'ed to a port once associated with it.

The address is held by a port of its own on the external network; the router joining the
associated port's network to that external network does the DNAT.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from novacron.compute.scope import resolve_project
from novacron.db.base import new_id, utcnow
from novacron.db.listing import ListParams, paginate
from novacron.db.models import FloatingIP, LoadBalancer, Port, Project, Router
from novacron.db.resolve import Named, resolve, scoped
from novacron.errors import Conflict, InvalidInput
from novacron.network import service
from novacron.network.specs import internal_ipv4
from novacron.network.sync import syncing
from novacron.quota import enforce as quota
from novacron.service import Service


@dataclass(frozen=True)
class NewFloatingIP:
    """A floating IP to create: its external network, its project, the port to associate at once."""

    network: str
    project_id: str | None = None
    port: str | None = None


class FloatingIPService(Service):
    """Hold, associate and release floating IPs."""

    def list(self, params: ListParams) -> tuple[list[FloatingIP], str | None]:
        """One page of the floating IPs the caller sees."""
        stmt = scoped(select(FloatingIP), FloatingIP, self.principal)
        return paginate(self.session, stmt, FloatingIP, params)

    def get(self, ref: str) -> FloatingIP:
        """The floating IP of this id, as the caller sees it."""
        return resolve(self.session, self.principal, FloatingIP, ref)

    def fixed_ip(self, fip: FloatingIP) -> str | None:
        """The address it is DNAT'ed to: its port's IPv4 address."""
        return internal_ipv4(self.session, fip.port_id) if fip.port_id else None

    def create(self, spec: NewFloatingIP) -> FloatingIP:
        """A new floating IP holding the next free address of the external network, charged to quota."""
        project = resolve_project(self.session, self.principal, spec.project_id)
        network = service.find_external(self.session, self.principal, spec.network, "network", project)
        with syncing(self.session, project.tenant_id):
            holder = service.NewPort(name="floating", owner="floating_ip")  # the port holding the address
            own = service.create_port(self.session, self.principal, project, network, holder)
            fip = FloatingIP(
                id=new_id("fip"),
                project_id=project.id,
                tenant_id=project.tenant_id,
                network_id=network.id,
                own_port_id=own.id,
                ip=service.fixed_ips(self.session, own.id)[0]["ip"],
            )
            self.session.add(fip)
            self.session.flush()
            quota.charge(self.session, self.principal, project, "floating_ip", fip.id, {"floating_ips": 1})
            self._associate(fip, spec.port)
            self.session.flush()
        return fip

    def associate(self, fip: FloatingIP, port_ref: str | None) -> FloatingIP:
        """DNAT the floating IP to a port (None: to none)."""
        with syncing(self.session, fip.tenant_id):
            self._associate(fip, port_ref)
            fip.updated_at = utcnow()
            self.session.flush()
        return fip

    def delete(self, fip: FloatingIP) -> None:
        """Release the floating IP and its address."""
        with syncing(self.session, fip.tenant_id):
            own = self.session.get(Port, fip.own_port_id)
            self.session.delete(fip)
            self.session.flush()
            quota.release(self.session, "floating_ip", fip.id)
            if own is not None:
                service.delete_port(self.session, own)

    def _associate(self, fip: FloatingIP, ref: str | None) -> None:
        if ref is None:
            fip.port_id, fip.router_id = None, None
            return
        port = self._target(fip, ref)
        router_id = self.session.scalar(
            select(Router.id)
            .join(Port, Port.router_id == Router.id)
            .where(
                Router.tenant_id == fip.tenant_id,
                Router.external_network_id == fip.network_id,
                Port.network_id == port.network_id,
                Port.owner == "router_interface",
            )
            .limit(1)
        )
        if router_id is None:
            reason = (
                f"no router of yours joins port {port.id}'s network to the floating IP's external network: "
                "add a router interface on that network and set its gateway first"
            )
            raise service.refused(Conflict, "port", reason)
        fip.port_id, fip.router_id = port.id, router_id

    def _target(self, fip: FloatingIP, ref: str) -> Port:
        """The port a floating IP may go to: a VM port or a load balancer's VIP port of its tenant
        with an IPv4 address, free."""
        project = self.session.get(Project, fip.project_id)
        assert project is not None
        port = resolve(self.session, self.principal, Port, ref, project=project, named=Named("port"))
        if port.owner != "compute" and not self._is_vip(fip, port):
            raise InvalidInput(
                "port", "only a VM port or a load balancer's VIP port of your own takes a floating IP"
            )
        if internal_ipv4(self.session, port.id) is None:
            raise InvalidInput("port", f"port {port.id} has no IPv4 address to DNAT to")
        stmt = select(FloatingIP.ip).where(FloatingIP.port_id == port.id, FloatingIP.id != fip.id)
        taken = self.session.scalar(stmt)
        if taken is not None:
            raise service.refused(Conflict, "port", f"port {port.id} already has floating IP {taken}")
        return port

    def _is_vip(self, fip: FloatingIP, port: Port) -> bool:
        """Whether ``port`` is the VIP port of a load balancer of the floating IP's tenant (not one
        of its amphorae's VRRP ports: keepalived moves the VIP between them, the DNAT follows it)."""
        stmt = select(LoadBalancer.id).where(
            LoadBalancer.vip_port_id == port.id, LoadBalancer.tenant_id == fip.tenant_id
        )
        return port.owner == "lbaas" and self.session.scalar(stmt) is not None

"""Routers: routing between a tenant's subnets, and SNAT outward through a gateway.

A router's leg on a subnet is a port holding the subnet's gateway address; its gateway is a port
on an external network (SNAT source).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from novacron import events
from novacron.compute.scope import resolve_project
from novacron.db.base import new_id, utcnow
from novacron.db.listing import ListParams, paginate
from novacron.db.models import FloatingIP, Network, Port, Project, Router, Subnet
from novacron.db.resolve import Named, resolve, scoped
from novacron.errors import Conflict, InvalidInput, NameTaken, NotFound
from novacron.network import service
from novacron.network.sync import syncing
from novacron.service import Service


@dataclass(frozen=True)
class NewRouter:
    """A router to create, as the caller asked for it (already checked for shape by the API)."""

    name: str
    project_id: str | None = None
    #: the external network to set the gateway on at once
    external_network: str | None = None
    snat: bool = True


@dataclass(frozen=True)
class RouterLegs:
    """Where a router is: its gateway's address and its interfaces (port, network, subnet, ip)."""

    external_ip: str | None
    interfaces: list[dict[str, str]]


class RouterService(Service):
    """Create, read, wire and delete the caller's routers."""

    def list(self, params: ListParams, *, name: str | None = None) -> tuple[list[Router], str | None]:
        """One page of the routers the caller sees, optionally only those of this name."""
        stmt = scoped(select(Router), Router, self.principal)
        if name is not None:
            stmt = stmt.where(Router.name == name)
        return paginate(self.session, stmt, Router, params)

    def get(self, ref: str) -> Router:
        """The router of this id or name, as the caller sees it."""
        return resolve(self.session, self.principal, Router, ref)

    def legs(self, router: Router) -> RouterLegs:
        """The router's gateway address and its interfaces, oldest first."""
        interfaces: list[dict[str, str]] = []
        external_ip = None
        ports = self.session.scalars(
            select(Port).where(Port.router_id == router.id).order_by(Port.created_at)
        )
        for port in ports:
            for fixed in service.fixed_ips(self.session, port.id):
                if port.owner == "router_gateway":
                    external_ip = external_ip or fixed["ip"]
                else:
                    interfaces.append({"port_id": port.id, "network_id": port.network_id, **fixed})
        return RouterLegs(external_ip, interfaces)

    def create(self, spec: NewRouter) -> Router:
        """A new router, unique by name in its project, with its gateway when one is named."""
        project = resolve_project(self.session, self.principal, spec.project_id)
        stmt = select(Router.id).where(Router.project_id == project.id, Router.name == spec.name)
        if self.session.scalar(stmt):
            raise NameTaken("router", spec.name, "name")
        with syncing(self.session, project.tenant_id):
            router = Router(
                id=new_id("router"),
                project_id=project.id,
                tenant_id=project.tenant_id,
                name=spec.name,
                snat=spec.snat,
            )
            self.session.add(router)
            self.session.flush()
            if spec.external_network is not None:
                field = "external_network"
                network = service.find_external(
                    self.session, self.principal, spec.external_network, field, project
                )
                self._set_gateway(router, network, field)
            self._publish("router.created", router)
        return router

    def add_interface(self, router: Router, subnet_ref: str) -> Router:
        """A leg on a subnet the caller sees: a port holding the subnet's gateway address."""
        subnet = self._interface_subnet(router, subnet_ref)
        network = self.session.get(Network, subnet.network_id)
        assert network is not None
        if network.external:
            raise InvalidInput("subnet", "an external network is a router's gateway, not an interface")
        stmt = select(Port.id).where(Port.router_id == router.id, Port.network_id == network.id)
        if self.session.scalar(stmt):
            reason = f"the router already has an interface on network '{network.name}'"
            raise service.refused(Conflict, "subnet", reason)
        port = service.NewPort(
            name=f"{router.name}-{subnet.name}",
            fixed_ips=(service.FixedIPRequest(subnet.id, subnet.gateway_ip),),
            owner="router_interface",
            router_id=router.id,
        )
        with syncing(self.session, router.tenant_id):
            service.create_port(self.session, self.principal, self._project(router), network, port)
            router.updated_at = utcnow()
        return router

    def remove_interface(self, router_ref: str, subnet_ref: str) -> Router:
        """Remove the router's leg on the subnet's network."""
        router = self.get(router_ref)
        subnet = resolve(self.session, self.principal, Subnet, subnet_ref, project=self._project(router))
        port = self.session.scalar(
            select(Port).where(
                Port.router_id == router.id,
                Port.network_id == subnet.network_id,
                Port.owner == "router_interface",
            )
        )
        if port is None:
            detail = f"Router '{router.name}' has no interface on subnet '{subnet_ref}'."
            raise NotFound("interface", subnet_ref, detail=detail)
        with syncing(self.session, router.tenant_id):
            service.delete_port(self.session, port)
            router.updated_at = utcnow()
        return router

    def set_gateway(self, router: Router, network_ref: str, snat: bool) -> Router:
        """Put the router's gateway on an external network (replacing any it had)."""
        project = self._project(router)
        network = service.find_external(self.session, self.principal, network_ref, "network", project)
        with syncing(self.session, router.tenant_id):
            if router.external_network_id is not None:
                self._clear_gateway(router)
            router.snat = snat
            self._set_gateway(router, network, "")
            router.updated_at = utcnow()
        return router

    def clear_gateway(self, router_ref: str) -> Router:
        """Take the router's gateway away (and the floating IPs it carried)."""
        router = self.get(router_ref)
        with syncing(self.session, router.tenant_id):
            self._clear_gateway(router)
            router.updated_at = utcnow()
        return router

    def delete(self, router: Router) -> None:
        """Delete the router with its gateway and interfaces."""
        with syncing(self.session, router.tenant_id):
            self._clear_gateway(router)
            for port in self.session.scalars(select(Port).where(Port.router_id == router.id)):
                service.delete_port(self.session, port)
            self._publish("router.deleted", router)
            self.session.delete(router)

    def _interface_subnet(self, router: Router, ref: str) -> Subnet:
        """The subnet a new interface goes on: one the router's project may use, with a gateway address."""
        project = self._project(router)
        subnet = resolve(self.session, self.principal, Subnet, ref, project=project, named=Named("subnet"))
        if subnet.gateway_ip is None:
            raise InvalidInput("subnet", f"subnet '{subnet.name}' has no gateway address for the router")
        return subnet

    def _project(self, router: Router) -> Project:
        project = self.session.get(Project, router.project_id)
        assert project is not None
        return project

    def _set_gateway(self, router: Router, network: Network, field: str) -> None:
        project = self._project(router)
        router.external_network_id = network.id
        self.session.flush()
        port = service.NewPort(
            name=f"gw-{router.name}", owner="router_gateway", router_id=router.id, field=field
        )
        service.create_port(self.session, self.principal, project, network, port)

    def _clear_gateway(self, router: Router) -> None:
        stmt = select(Port).where(Port.router_id == router.id, Port.owner == "router_gateway")
        for port in self.session.scalars(stmt):
            service.delete_port(self.session, port)
        for fip in self.session.scalars(select(FloatingIP).where(FloatingIP.router_id == router.id)):
            fip.router_id, fip.port_id = None, None
        router.external_network_id = None

    def _publish(self, event_type: str, router: Router) -> None:
        events.publish(
            self.session,
            event_type,
            "router",
            router.id,
            tenant_id=router.tenant_id,
            project_id=router.project_id,
            name=router.name,
        )

"""Load balancers: a VIP on one of the tenant's own subnets, charged to the quota
``load_balancers``, realised on the hosts by a ``loadbalancer.apply`` task.

The VIP (and, ACTIVE_STANDBY, each amphora's own VRRP address) is a port with ``owner="lbaas"``
made at create, so the address is known at once and DHCP never hands it out; the task places the
legs on hosts later. Deleting is a ``loadbalancer.delete`` task that works whatever state the
hosts are in.
"""

from __future__ import annotations

import builtins
import ipaddress
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.compute.scope import resolve_project
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import FloatingIP, LbAmphora, LoadBalancer, Network, Port, Project, Subnet, Task
from novacron.db.resolve import Named, resolve, scoped
from novacron.errors import DomainError, InvalidInput, NameTaken, on_field
from novacron.lbaas import changes, failover, placement
from novacron.lbaas.model import assign_vrrp_id
from novacron.lbaas.resolve import amphorae_of, listeners_of, pools_of
from novacron.lbaas.tasks import ApplyLoadBalancer, DeleteLoadBalancer
from novacron.network import ipam
from novacron.network import service as ports
from novacron.network.floating import FloatingIPService, NewFloatingIP
from novacron.network.linux import names
from novacron.quota import enforce as quota
from novacron.service import Service

#: the owner of the ports holding a load balancer's addresses
OWNER = "lbaas"


@dataclass(frozen=True)
class NewLoadBalancer:
    """A load balancer to create, as the caller asked for it (already checked for shape by the API)."""

    name: str
    vip_subnet_id: str
    description: str = ""
    project_id: str | None = None
    vip_address: str | None = None
    topology: str = "SINGLE"
    admin_state_up: bool = True
    #: an external network to take a floating IP from, DNAT'ed to the VIP (a router of the
    #: tenant must join the VIP's network to it)
    floating_network_id: str | None = None


@dataclass(frozen=True)
class LoadBalancerChange:
    """What an update changes; None leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    admin_state_up: bool | None = None


@dataclass(frozen=True)
class Part:
    id: str
    name: str


@dataclass(frozen=True)
class Leg:
    """Where one side of a load balancer runs (shown to administrators)."""

    id: str
    role: str
    host_id: str | None
    address: str


@dataclass(frozen=True)
class LoadBalancerParts:
    listeners: list[Part]
    pools: list[Part]
    #: None for a caller who is not a platform administrator
    amphorae: list[Leg] | None
    #: the floating IP associated with its VIP port, if any
    floating_ip: str | None = None


class LoadBalancerService(Service):
    """Create, read, change and delete the caller's load balancers."""

    def list(
        self, params: ListParams, *, name: str | None = None, project_id: str | None = None
    ) -> tuple[builtins.list[LoadBalancer], str | None]:
        """One page of the load balancers the caller sees, filtered by the filters given."""
        stmt = scoped(select(LoadBalancer), LoadBalancer, self.principal)
        stmt = where_equal(stmt, (LoadBalancer.name, name), (LoadBalancer.project_id, project_id))
        return paginate(self.session, stmt, LoadBalancer, params)

    def get(self, ref: str) -> LoadBalancer:
        """The load balancer of this id or name, as the caller sees it."""
        return changes.find(self.session, self.principal, ref)

    def parts(self, lb: LoadBalancer) -> LoadBalancerParts:
        """Its listeners and pools (ids and names), and for administrators its amphorae."""
        legs = None
        if self.principal.is_global:
            legs = [Leg(a.id, a.role, a.host_id, a.address) for a in amphorae_of(self.session, lb.id)]
        return LoadBalancerParts(
            listeners=[Part(li.id, li.name) for li in listeners_of(self.session, lb.id)],
            pools=[Part(p.id, p.name) for p in pools_of(self.session, lb.id)],
            amphorae=legs,
            floating_ip=floating_ip_of(self.session, lb),
        )

    def create(self, spec: NewLoadBalancer) -> LoadBalancer:
        """A new load balancer with its VIP held, PENDING_CREATE until its task realised it."""
        project = resolve_project(self.session, self.principal, spec.project_id)
        self._check_name_free(project.id, spec.name)
        subnet = self._vip_subnet(project, spec.vip_subnet_id)
        placement.require_hosts(self.session, 1 if spec.topology == "SINGLE" else 2)
        network = self.session.get(Network, subnet.network_id)
        assert network is not None
        lb = LoadBalancer(
            id=new_id("lb"),
            project_id=project.id,
            tenant_id=project.tenant_id,
            name=spec.name,
            description=spec.description,
            vip_subnet_id=subnet.id,
            vip_network_id=network.id,
            vip_address="",
            topology=spec.topology,
            admin_state_up=spec.admin_state_up,
            provisioning_status="PENDING_CREATE",
            operating_status="OFFLINE",
        )
        vip = self._port(project, network, subnet, f"{spec.name}-vip", spec.vip_address, "vip_address")
        lb.vip_port_id, lb.vip_address = vip.id, ports.fixed_ips(self.session, vip.id)[0]["ip"]
        self.session.add(lb)
        self.session.flush()
        if spec.topology == "SINGLE":
            self._leg(lb, lb.id, "SINGLE", vip)
        else:
            lb.vrrp_id = assign_vrrp_id(lb.id, self._vrrp_ids_taken(network.id))
            for role in ("MASTER", "BACKUP"):
                leg_id = new_id("amp")
                port = self._port(
                    project, network, subnet, f"{spec.name}-{role.lower()}", None, "vip_subnet_id"
                )
                self._leg(lb, leg_id, role, port)
        if spec.floating_network_id is not None:
            self._floating_ip(project, spec.floating_network_id, vip)
        # after every address: the counters stay locked until commit (see network.service.charge_port)
        quota.charge(self.session, self.principal, project, "loadbalancer", lb.id, {"load_balancers": 1})
        task = changes.start_task(self.session, self._ctx, lb, ApplyLoadBalancer, "PENDING_CREATE")
        changes.publish(self.session, "created", lb, task_id=task.id, vip_address=lb.vip_address)
        return lb

    def update(self, lb: LoadBalancer, change: LoadBalancerChange) -> LoadBalancer:
        """Rename, describe, enable or disable the load balancer (a change realised by a task)."""
        changes.check_not_pending(lb)
        if change.name is not None and change.name != lb.name:
            self._check_name_free(lb.project_id, change.name)
            lb.name = change.name
        if change.description is not None:
            lb.description = change.description
        if change.admin_state_up is not None:
            lb.admin_state_up = change.admin_state_up
        changes.submit(self.session, self._ctx, lb, "updated")
        return lb

    def delete(self, lb: LoadBalancer) -> None:
        """Delete the load balancer with everything in it (PENDING_DELETE until its task ends)."""
        changes.check_not_pending(lb)
        task = changes.start_task(self.session, self._ctx, lb, DeleteLoadBalancer, "PENDING_DELETE")
        changes.publish(self.session, "deleting", lb, task_id=task.id)

    def failover(self, lb: LoadBalancer) -> Task:
        """Fail the load balancer over (Octavia's): its legs lost with a fenced host are placed on
        other hosts and every leg applied again; the failover in flight when one is."""
        return failover.request(self.session, self._ctx, lb)

    def _check_name_free(self, project_id: str, name: str) -> None:
        stmt = select(LoadBalancer.id).where(LoadBalancer.project_id == project_id, LoadBalancer.name == name)
        if self.session.scalar(stmt):
            raise NameTaken("load balancer", name, "name")

    def _vip_subnet(self, project: Project, ref: str) -> Subnet:
        """The VIP's subnet: one of the tenant's own networks (not a shared or external one)."""
        subnet = resolve(
            self.session, self.principal, Subnet, ref, project=project, named=Named("vip_subnet_id")
        )
        network = self.session.get(Network, subnet.network_id)
        if network is None or network.tenant_id != project.tenant_id or network.external:
            raise InvalidInput("vip_subnet_id", "must be a subnet of one of your own networks")
        return subnet

    def _port(
        self, project: Project, network: Network, subnet: Subnet, name: str, address: str | None, field: str
    ) -> Port:
        """A port holding an address of ``subnet`` for the load balancer; refused on ``field``."""
        if address is not None and ipam.parse_ip(address, field) not in ipaddress.ip_network(subnet.cidr):
            raise InvalidInput(field, f"{address} is not in subnet '{subnet.name}' ({subnet.cidr})")
        new = ports.NewPort(name=name, fixed_ips=(ports.FixedIPRequest(subnet.id, address),), owner=OWNER)
        try:
            return ports.create_port(self.session, self.principal, project, network, new)
        except DomainError as exc:
            reason = exc.fields[0].reason if exc.fields else exc.detail
            raise on_field(type(exc), field, reason, title=exc.title) from exc

    def _floating_ip(self, project: Project, network_ref: str, vip: Port) -> None:
        """A floating IP of ``network_ref`` DNAT'ed to the VIP, in the create's transaction: a
        refusal (no such external network, no router joining it, quota) leaves nothing."""
        fips = FloatingIPService(self.session, self.principal, self._ctx)
        try:
            fips.create(NewFloatingIP(network=network_ref, project_id=project.id, port=vip.id))
        except DomainError as exc:
            reason = exc.fields[0].reason if exc.fields else exc.detail
            raise on_field(type(exc), "floating_network_id", reason, title=exc.title) from exc

    def _leg(self, lb: LoadBalancer, leg_id: str, role: str, port: Port) -> None:
        port.device = names.lb_veth(leg_id)  # the leg's veth on the host
        address = ports.fixed_ips(self.session, port.id)[0]["ip"]
        self.session.add(
            LbAmphora(id=leg_id, loadbalancer_id=lb.id, role=role, port_id=port.id, address=address)
        )

    def _vrrp_ids_taken(self, network_id: str) -> set[int]:
        stmt = select(LoadBalancer.vrrp_id).where(
            LoadBalancer.vip_network_id == network_id, LoadBalancer.vrrp_id.is_not(None)
        )
        return {v for v in self.session.scalars(stmt) if v is not None}


def floating_ip_of(session: Session, lb: LoadBalancer) -> str | None:
    """The floating IP DNAT'ed to the load balancer's VIP, if it has one."""
    if lb.vip_port_id is None:
        return None
    return session.scalar(select(FloatingIP.ip).where(FloatingIP.port_id == lb.vip_port_id))

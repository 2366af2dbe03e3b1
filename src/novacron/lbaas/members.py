"""Members: a pool's backend servers, by address or by VM.

A member's address must be in a subnet of one of the load balancer's tenant's own networks (a
tenant balances only onto its own addresses); a member named by ``vm_id`` takes the address of
that VM's port (on ``network`` when given). Each change is checked against the whole load
balancer and realised by its ``loadbalancer.apply`` task.
"""

from __future__ import annotations

import builtins
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import VM, IPAllocation, LbMember, LbPool, LoadBalancer, Network, Port, Subnet
from novacron.db.resolve import Named, resolve
from novacron.errors import InvalidInput, NameTaken, NotFound
from novacron.lbaas import changes
from novacron.network import ipam
from novacron.service import Service

CHANGEABLE = frozenset({"name", "weight", "backup", "admin_state_up", "drain"})


@dataclass(frozen=True)
class NewMember:
    """A member to create, as the caller asked for it: ``address`` (and ``subnet_id``), or
    ``vm_id`` (and ``network``), and its ``protocol_port``."""

    protocol_port: int
    address: str | None = None
    subnet_id: str | None = None
    vm_id: str | None = None
    network: str | None = None
    name: str = ""
    weight: int = 1
    backup: bool = False
    admin_state_up: bool = True
    drain: bool = False


class MemberService(Service):
    """Create, read, change and delete the members of the caller's pools."""

    def list(self, pool: LbPool, params: ListParams) -> tuple[builtins.list[LbMember], str | None]:
        """One page of the pool's members."""
        stmt = select(LbMember).where(LbMember.pool_id == pool.id)
        return paginate(self.session, stmt, LbMember, params)

    def loadbalancer(self, ref: str) -> LoadBalancer:
        """The load balancer of this id or name, as the caller sees it."""
        return changes.find(self.session, self.principal, ref)

    def pool(self, lb: LoadBalancer, ref: str) -> LbPool:
        """The pool of this id (or name) of ``lb``."""
        return changes.child(self.session, LbPool, lb, ref, "pool")

    def get(self, lb: LoadBalancer, pool: LbPool, ref: str) -> LbMember:
        """The member of this id (or name) of ``pool``."""
        member = changes.child(self.session, LbMember, lb, ref, "member")
        if member.pool_id != pool.id:
            raise NotFound("member", ref, detail=f"Pool '{pool.name or pool.id}' has no member '{ref}'.")
        return member

    def create(self, lb: LoadBalancer, pool: LbPool, spec: NewMember) -> LbMember:
        """A new member of ``pool`` on one of the tenant's own addresses."""
        changes.check_not_pending(lb)
        address, field, vm_id = self._address(lb, spec)
        subnet = self._subnet(lb, address, spec.subnet_id, field)
        taken = select(LbMember.id).where(
            LbMember.pool_id == pool.id,
            LbMember.address == address,
            LbMember.protocol_port == spec.protocol_port,
        )
        if self.session.scalar(taken) is not None:
            raise NameTaken("member", f"{address}:{spec.protocol_port}", field, "in this pool")
        member = LbMember(
            id=new_id("mbr"),
            pool_id=pool.id,
            loadbalancer_id=lb.id,
            tenant_id=lb.tenant_id,
            name=spec.name,
            address=address,
            protocol_port=spec.protocol_port,
            subnet_id=subnet.id,
            vm_id=vm_id,
            weight=spec.weight,
            backup=spec.backup,
            admin_state_up=spec.admin_state_up,
            drain=spec.drain,
            operating_status="NO_MONITOR" if pool.healthmonitor is None else "OFFLINE",
        )
        self.session.add(member)
        changes.submit(self.session, self._ctx, lb, "member.created", pool_id=pool.id, member_id=member.id)
        return member

    def update(self, lb: LoadBalancer, member: LbMember, values: Mapping[str, Any]) -> LbMember:
        """Change the fields sent (weight, backup, drain, admin state, name)."""
        changes.check_not_pending(lb)
        changes.assign(member, values, CHANGEABLE)
        changes.submit(self.session, self._ctx, lb, "member.updated", member_id=member.id)
        return member

    def delete(self, lb: LoadBalancer, member: LbMember) -> None:
        """Take the member out of its pool."""
        changes.check_not_pending(lb)
        self.session.delete(member)
        changes.submit(self.session, self._ctx, lb, "member.deleted", member_id=member.id)

    def _address(self, lb: LoadBalancer, spec: NewMember) -> tuple[str, str, str | None]:
        """The member's address, the field it came from and the VM's id: given, or the VM's
        port's."""
        if (spec.address is None) == (spec.vm_id is None):
            raise InvalidInput("address", "give an address or a vm_id (not both)")
        if spec.address is not None:
            return str(ipam.parse_ip(spec.address, "address")), "address", None
        vm = resolve(self.session, self.principal, VM, spec.vm_id or "", named=Named("vm_id"))
        if vm.tenant_id != lb.tenant_id:
            raise InvalidInput("vm_id", "must be a VM of the load balancer's tenant")
        stmt = (
            select(IPAllocation.ip, Port.network_id, Network.name)
            .join(Port, Port.id == IPAllocation.port_id)
            .join(Network, Network.id == Port.network_id)
            .where(Port.vm_id == vm.id)
            .order_by(Port.position, IPAllocation.ip)
        )
        for ip, network_id, network_name in self.session.execute(stmt):
            if spec.network is None or spec.network in (network_id, network_name):
                return str(ip), "vm_id", vm.id
        where = f" on network '{spec.network}'" if spec.network else ""
        raise InvalidInput("network" if spec.network else "vm_id", f"VM '{vm.name}' has no address{where}")

    def _subnet(self, lb: LoadBalancer, address: str, subnet_ref: str | None, field: str) -> Subnet:
        """The tenant's own subnet holding ``address`` (the one named, when one is)."""
        addr = ipaddress.ip_address(address)
        stmt = (
            select(Subnet)
            .join(Network, Network.id == Subnet.network_id)
            .where(Network.tenant_id == lb.tenant_id, Network.external.is_(False))
            .order_by(Subnet.created_at, Subnet.id)
        )
        if subnet_ref is not None:
            stmt = stmt.where((Subnet.id == subnet_ref) | (Subnet.name == subnet_ref))
        for subnet in self.session.scalars(stmt):
            if addr in ipaddress.ip_network(subnet.cidr):
                return subnet
        if subnet_ref is not None:
            reason = f"no subnet '{subnet_ref}' of your networks holds {address}"
            raise InvalidInput("subnet_id", reason)
        raise InvalidInput(field, f"{address} is in none of your own subnets")

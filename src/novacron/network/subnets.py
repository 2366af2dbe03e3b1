"""Subnets: a network's address ranges, with their gateway, pools, DNS servers and host routes."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from sqlalchemy import func, select

from novacron import events
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import IPAllocation, Subnet
from novacron.db.resolve import resolve, scoped
from novacron.errors import Conflict, InvalidInput, NameTaken
from novacron.network import ipam, service
from novacron.network.networks import check_owner
from novacron.network.sync import syncing
from novacron.service import Service


@dataclass(frozen=True)
class NewSubnet:
    """A subnet to create, as the caller asked for it (already checked for shape by the API)."""

    network: str
    name: str
    cidr: str
    gateway_ip: str | None = None
    no_gateway: bool = False
    #: (start, end) each; None: the usable range without the gateway
    allocation_pools: list[tuple[str, str]] | None = None
    dns_servers: list[str] = field(default_factory=list)
    #: (destination, nexthop) each
    host_routes: list[tuple[str, str]] = field(default_factory=list)
    dhcp: bool = True


def _check_routes(net: ipam.IPNetwork, routes: list[tuple[str, str]]) -> list[list[str]]:
    """Each route to a network of the subnet's IP version, through an address inside the subnet."""
    out: list[list[str]] = []
    for i, (destination, nexthop) in enumerate(routes):
        prefix = f"host_routes.{i}"
        try:
            dest = ipaddress.ip_network(destination, strict=True)
        except ValueError as exc:
            raise InvalidInput(f"{prefix}.destination", f"'{destination}' is not a CIDR ({exc})") from exc
        hop = ipam.parse_ip(nexthop, f"{prefix}.nexthop")
        if dest.version != net.version:
            raise InvalidInput(
                f"{prefix}.destination", f"IPv{dest.version} route in an IPv{net.version} subnet"
            )
        if hop not in net:
            raise InvalidInput(f"{prefix}.nexthop", f"{hop} is outside the subnet {net}")
        out.append([str(dest), str(hop)])
    return out


class SubnetService(Service):
    """Create, read and delete the subnets of the networks the caller sees."""

    def list(
        self, params: ListParams, *, network_id: str | None = None, name: str | None = None
    ) -> tuple[list[Subnet], str | None]:
        """One page of the subnets of the networks the caller sees."""
        stmt = scoped(select(Subnet), Subnet, self.principal)
        stmt = where_equal(stmt, (Subnet.network_id, network_id), (Subnet.name, name))
        return paginate(self.session, stmt, Subnet, params)

    def get(self, ref: str) -> Subnet:
        """The subnet of this id or name, on a network the caller sees."""
        return resolve(self.session, self.principal, Subnet, ref)

    def get_owned(self, ref: str) -> Subnet:
        """The subnet of this id or name, for a change by its owner."""
        subnet = self.get(ref)
        check_owner(self.principal, subnet, "subnet")
        return subnet

    def used_ips(self, subnet: Subnet) -> int | None:
        """How many addresses are held in the subnet; None on another tenant's shared or external
        subnet, whose addresses are mostly other tenants' ports and floating IPs coming and going."""
        if not self.principal.sees_tenant(subnet.tenant_id):
            return None
        stmt = select(func.count()).select_from(IPAllocation).where(IPAllocation.subnet_id == subnet.id)
        return self.session.scalar(stmt) or 0

    def create(self, spec: NewSubnet) -> Subnet:
        """A new subnet of a network the caller owns; its addresses checked, named field by field."""
        network = service.find_network(self.session, self.principal, spec.network, "network")
        check_owner(self.principal, network, "network")
        if spec.no_gateway and spec.gateway_ip is not None:
            raise InvalidInput("gateway_ip", "contradicts no_gateway")
        net, gateway, pools = ipam.check_subnet(
            spec.cidr, spec.gateway_ip, spec.allocation_pools, no_gateway=spec.no_gateway
        )
        ipam.check_no_overlap(self.session, network.id, net)
        dns = [str(ipam.parse_ip(server, f"dns_servers.{i}")) for i, server in enumerate(spec.dns_servers)]
        routes = _check_routes(net, spec.host_routes)
        stmt = select(Subnet.id).where(Subnet.network_id == network.id, Subnet.name == spec.name)
        if self.session.scalar(stmt):
            raise NameTaken("subnet", spec.name, "name", "in this network")
        with syncing(self.session, network.tenant_id):
            subnet = Subnet(
                id=new_id("subnet"),
                network_id=network.id,
                project_id=network.project_id,
                tenant_id=network.tenant_id,
                name=spec.name,
                ip_version=net.version,
                cidr=str(net),
                gateway_ip=gateway,
                allocation_pools=pools,
                dns_servers=dns,
                host_routes=routes,
                dhcp=spec.dhcp,
            )
            self.session.add(subnet)
            self.session.flush()
            self._publish("subnet.created", subnet)
        return subnet

    def delete(self, subnet: Subnet) -> None:
        """Delete a subnet no port holds an address in."""
        stmt = select(IPAllocation.port_id).where(IPAllocation.subnet_id == subnet.id).limit(10)
        held = list(self.session.scalars(stmt))
        if held:
            raise Conflict(
                f"Subnet '{subnet.name}' has addresses held by ports {', '.join(held)}; delete them first."
            )
        with syncing(self.session, subnet.tenant_id):
            self._publish("subnet.deleted", subnet)
            self.session.delete(subnet)

    def _publish(self, event_type: str, subnet: Subnet) -> None:
        events.publish(
            self.session,
            event_type,
            "subnet",
            subnet.id,
            tenant_id=subnet.tenant_id,
            project_id=subnet.project_id,
            cidr=subnet.cidr,
        )

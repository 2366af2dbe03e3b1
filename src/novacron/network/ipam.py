"""IP address management: subnet checks, pools, and race-free allocation of addresses, VNIs, MACs.

Every allocator inserts a candidate inside a savepoint and lets the database's unique constraint
decide: SQLite serialises writers (BEGIN IMMEDIATE), and on PostgreSQL a concurrent insert of the
same key waits for the other transaction and then fails, so the loser moves on to the next
candidate. No candidate is ever handed out twice.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterator, Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from novacron.db.models import IPAllocation, Network, Port, Subnet
from novacron.errors import Conflict, InvalidInput, Unavailable, on_field

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

VNI_MIN, VNI_MAX = 1000, 2**24 - 1
#: OpenStack's prefix for generated MACs (locally administered would also do)
MAC_PREFIX = "fa:16:3e"
#: the title of a refused input, whatever its status (a 409 for a VNI pool run dry)
INVALID = "Invalid request"


class Exhausted(Exception):
    """No address is left in a subnet's pools."""


class Taken(Exception):
    """The requested address is held by another port."""


def parse_cidr(cidr: str, field: str) -> IPNetwork:
    """``cidr`` as a network of at least 4 addresses; refused on ``field`` otherwise."""
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        raise InvalidInput(field, f"'{cidr}' is not a network address in CIDR notation ({exc})") from exc
    if net.num_addresses < 4:
        raise InvalidInput(field, f"'{cidr}' is too small: a subnet needs at least 4 addresses")
    return net


def parse_ip(value: str, field: str) -> IPAddress:
    """``value`` as an address; refused on ``field`` otherwise."""
    try:
        return ipaddress.ip_address(value)
    except ValueError as exc:
        raise InvalidInput(field, f"'{value}' is not an IP address") from exc


def usable(net: IPNetwork) -> tuple[IPAddress, IPAddress]:
    """First and last host address: IPv4 keeps its network and broadcast addresses out."""
    if net.version == 4:
        return net.network_address + 1, net.broadcast_address - 1
    # IPv6 has no broadcast; the subnet-router anycast (the first address) stays out
    return net.network_address + 1, net.broadcast_address


def default_pool(net: IPNetwork, gateway: IPAddress | None) -> list[list[str]]:
    """The usable range without the gateway (Neutron's default)."""
    first, last = usable(net)
    if gateway is not None and gateway == first:
        first = first + 1
    elif gateway is not None and gateway == last:
        last = last - 1
    elif gateway is not None and int(first) < int(gateway) < int(last):
        return [[str(first), str(gateway - 1)], [str(gateway + 1), str(last)]]
    return [[str(first), str(last)]]


def check_subnet(
    cidr: str,
    gateway_ip: str | None,
    pools: Sequence[tuple[str, str]] | None,
    *,
    no_gateway: bool = False,
) -> tuple[IPNetwork, str | None, list[list[str]]]:
    """Validate a subnet's addresses, naming the field of the first that is wrong."""
    net = parse_cidr(cidr, "cidr")
    gateway: IPAddress | None = None
    if gateway_ip is not None:
        gateway = parse_ip(gateway_ip, "gateway_ip")
        if gateway.version != net.version or gateway not in net:
            raise InvalidInput("gateway_ip", f"{gateway} is outside the subnet {net}")
        first, last = usable(net)
        if not int(first) <= int(gateway) <= int(last):
            raise InvalidInput("gateway_ip", f"{gateway} is the network or broadcast address of {net}")
    elif not no_gateway:
        gateway = usable(net)[0]
    if pools is None:
        return net, str(gateway) if gateway else None, default_pool(net, gateway)
    out: list[list[str]] = []
    ranges: list[tuple[IPAddress, IPAddress]] = []
    first, last = usable(net)
    for i, (start_s, end_s) in enumerate(pools):
        field = f"allocation_pools.{i}"
        start, end = parse_ip(start_s, field + ".start"), parse_ip(end_s, field + ".end")
        for value in (start, end):
            if value.version != net.version or not int(first) <= int(value) <= int(last):
                raise InvalidInput(field, f"{value} is outside the usable addresses of {net}")
        if int(end) < int(start):
            raise InvalidInput(field, f"the range ends ({end}) before it starts ({start})")
        if gateway is not None and int(start) <= int(gateway) <= int(end):
            raise InvalidInput(field, f"the range {start}-{end} holds the gateway {gateway}")
        for other_start, other_end in ranges:
            if int(start) <= int(other_end) and int(other_start) <= int(end):
                raise InvalidInput(field, f"the range {start}-{end} overlaps {other_start}-{other_end}")
        ranges.append((start, end))
        out.append([str(start), str(end)])
    return net, str(gateway) if gateway else None, out


def check_no_overlap(session: Session, network_id: str, net: IPNetwork) -> None:
    """Refuse ``net`` when it overlaps a subnet of the network in the same IP version."""
    for other in session.scalars(select(Subnet).where(Subnet.network_id == network_id)):
        other_net = ipaddress.ip_network(other.cidr)
        if other_net.version == net.version and other_net.overlaps(net):
            raise InvalidInput("cidr", f"{net} overlaps subnet '{other.name}' ({other.cidr}) of this network")


def _pool_addresses(subnet: Subnet) -> Iterator[IPAddress]:
    for start_s, end_s in subnet.allocation_pools:
        addr, end = ipaddress.ip_address(start_s), ipaddress.ip_address(end_s)
        while int(addr) <= int(end):
            yield addr
            addr = addr + 1


def pool_size(subnet: Subnet) -> int:
    """How many addresses the subnet's allocation pools hold."""
    return sum(
        int(ipaddress.ip_address(e)) - int(ipaddress.ip_address(s)) + 1 for s, e in subnet.allocation_pools
    )


def _insert(session: Session, subnet: Subnet, port_id: str, ip: str) -> bool:
    try:
        with session.begin_nested():
            session.add(
                IPAllocation(subnet_id=subnet.id, ip=ip, port_id=port_id, network_id=subnet.network_id)
            )
    except IntegrityError:
        return False
    return True


def allocate(
    session: Session, subnet: Subnet, port_id: str, requested: str | None = None, *, gateway_ok: bool = False
) -> str:
    """Hold ``requested`` (anywhere in the subnet; its gateway only for a router), or the next free one."""
    if requested is not None:
        addr = ipaddress.ip_address(requested)
        net = ipaddress.ip_network(subnet.cidr)
        first, last = usable(net)
        if addr.version != net.version or not int(first) <= int(addr) <= int(last):
            raise ValueError(f"{addr} is not a usable address of subnet {subnet.cidr}")
        if (
            not gateway_ok
            and subnet.gateway_ip is not None
            and addr == ipaddress.ip_address(subnet.gateway_ip)
        ):
            raise Taken(f"{addr} is the gateway of subnet {subnet.cidr}")
        if not _insert(session, subnet, port_id, str(addr)):
            raise Taken(f"{addr} is already used in subnet {subnet.cidr}")
        return str(addr)
    used = set(session.scalars(select(IPAllocation.ip).where(IPAllocation.subnet_id == subnet.id)))
    for addr in _pool_addresses(subnet):
        ip = str(addr)
        if ip in used:
            continue
        if _insert(session, subnet, port_id, ip):
            return ip
        used.add(ip)  # a concurrent transaction took it first
    raise Exhausted(
        f"subnet '{subnet.name}' ({subnet.cidr}) has no free address left: "
        f"all {pool_size(subnet)} addresses of its allocation pools are in use"
    )


def allocate_vni(session: Session, network: Network) -> None:
    """Give ``network`` the lowest VNI above every one in use (flushed: the constraint decides)."""
    for _ in range(50):
        highest = session.scalar(select(func.max(Network.vni)))
        network.vni = max(VNI_MIN, (highest or 0) + 1)
        if network.vni > VNI_MAX:
            reason = "no VXLAN network identifier is left in the cluster"
            raise on_field(Conflict, "body", reason, part="", title=INVALID)
        try:
            with session.begin_nested():
                session.add(network)
                session.flush()
            return
        except IntegrityError as exc:
            if "vni" not in str(exc.orig).lower():
                raise
    reason = "could not allocate a VXLAN network identifier; retry"
    raise on_field(Unavailable, "body", reason, part="", title=INVALID)


def new_mac(session: Session, network_id: str) -> str:
    """A random MAC not used on the network yet (the (network, mac) constraint is the final word)."""
    while True:
        mac = MAC_PREFIX + "".join(f":{b:02x}" for b in secrets.token_bytes(3))
        if session.scalar(select(Port.id).where(Port.network_id == network_id, Port.mac == mac)) is None:
            return mac


def device_name(port_id: str) -> str:
    """``tap`` + 12 hex digits of the port id: unique per port, within Linux's 15 characters."""
    return "tap" + port_id.split("-", 1)[-1][:12]


def subnet_of(session: Session, network_id: str, ip: str) -> Subnet | None:
    """The network's subnet holding ``ip``, if any."""
    addr = ipaddress.ip_address(ip)
    for subnet in session.scalars(select(Subnet).where(Subnet.network_id == network_id)):
        if addr in ipaddress.ip_network(subnet.cidr):
            return subnet
    return None

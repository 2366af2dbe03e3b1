"""A load balancer's leg: a namespace with one interface on its tenant network's bridge, where the
agent runs the load balancer's HAProxy (and, for an ACTIVE_STANDBY amphora, keepalived).

The interface inside (``lb0``) carries the leg's port: its MAC and address (the VIP of a SINGLE
load balancer, the amphora's own VRRP address of an ACTIVE_STANDBY one) and a default route
through the subnet's gateway, so members behind a router and clients from outside are answered.
``ip_nonlocal_bind`` lets HAProxy bind the VIP before keepalived puts it on the standby's
interface. A leg no longer wanted goes as a router's namespace does (``router.remove_ns_named``);
the agent stops what ran in it (``lb_remove``).

A member new to the load balancer may have an address a deleted VM had (a scaling group's
replacement often does): the leg's neighbour entry for it still names the old VM's MAC and,
until the kernel re-probes it (reachable time: 15-45 s), HAProxy's checks and requests go to a
MAC nobody has. ``forget_neighbours`` drops those entries when such members join.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

from pyroute2 import NetlinkError, netns

from novacron.network.linux import links, names
from novacron.network.model import LoadBalancerLeg, NetworkSpec


def ensure(scope: str, leg: LoadBalancerLeg, network: NetworkSpec) -> None:
    """The leg's namespace, veth into ``network``'s bridge, MAC, MTU, addresses and route."""
    ns = names.lb_ns(scope, leg.id)
    links.ensure_ns(ns)
    # harmless where the VIP is the leg's own address (SINGLE); needed where keepalived adds it.
    # Before the addresses: the agent's lb_apply starts HAProxy once the leg's address is there
    for version in sorted({ipaddress.ip_interface(a).version for a in leg.addresses}):
        family = "ipv6" if version == 6 else "ipv4"
        links.in_ns(ns, "sysctl", "-q", "-w", f"net.{family}.ip_nonlocal_bind=1")
    outer = names.lb_veth(leg.id)
    with links.route() as ipr:
        links.ensure_veth_into(ipr, outer, names.LB_INNER, ns)
        bridge = links.index(ipr, names.bridge(network.id))
        if bridge is None:
            raise links.NetError(f"load balancer leg {leg.id}: network {network.id} has no bridge here")
        links.ensure_port_link(ipr, outer, bridge, network.mtu, link_kind="veth")
    with links.route(ns) as inner:
        _set_mac_and_mtu(inner, leg.mac, network.mtu)
        _ensure_addresses(inner, leg.addresses)
        links.ensure_default_route(inner, leg.gateway)


def _set_mac_and_mtu(ipr: Any, mac: str, mtu: int) -> None:
    link = links.link_info(ipr, names.LB_INNER)
    assert link is not None  # ensure_veth_into made it
    if link.get_attr("IFLA_ADDRESS") != mac.lower():
        # the port's MAC: the one IPAM and the other ports' anti-spoofing rules know
        ipr.link("set", index=link["index"], state="down")
        ipr.link("set", index=link["index"], address=mac)
    if link.get_attr("IFLA_MTU") != mtu:
        ipr.link("set", index=link["index"], mtu=mtu)


def _ensure_addresses(ipr: Any, wanted: tuple[str, ...]) -> None:
    """The leg's addresses, and no other but host addresses (/32, /128): those are the VIP that
    keepalived put on an amphora's leg, which a network sync must not take away."""
    idx = links.index(ipr, names.LB_INNER)
    want = {ipaddress.ip_interface(a) for a in wanted}
    for msg in ipr.get_addr(index=idx):
        have = ipaddress.ip_interface(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
        if have in want:
            want.discard(have)
        elif not have.ip.is_link_local and have.network.prefixlen != have.max_prefixlen:
            ipr.addr("del", index=idx, address=str(have.ip), prefixlen=have.network.prefixlen)
    for add in sorted(want, key=str):
        ipr.addr("add", index=idx, address=str(add.ip), prefixlen=add.network.prefixlen)
    ipr.link("set", index=idx, state="up")


def forget_neighbours(scope: str, leg_id: str, addresses: list[str]) -> None:
    """Drop the leg's neighbour (ARP/NDP) entries for ``addresses``: they are resolved afresh on
    the next packet (a missing entry or namespace is fine)."""
    ns = names.lb_ns(scope, leg_id)
    if not addresses or ns not in netns.listnetns():
        return
    with links.route(ns) as ipr:
        idx = links.index(ipr, names.LB_INNER)
        if idx is None:
            return
        for address in addresses:
            family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
            try:
                ipr.neigh("del", dst=address, ifindex=idx, family=family)
            except NetlinkError as exc:
                if exc.code not in (errno.ENOENT, errno.ESRCH):
                    raise

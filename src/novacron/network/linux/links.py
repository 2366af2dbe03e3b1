"""Netlink through pyroute2: links, bridge ports, VXLAN FDB entries, addresses, routes, namespaces.

Every helper converges: it creates what is missing, fixes what differs and leaves the rest.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
from collections.abc import Iterator
from typing import Any

from pyroute2 import IPRoute, NetlinkError, netns

ZERO_MAC = "00:00:00:00:00:00"
VXLAN_PORT = 4789


class NetError(Exception):
    """A datapath change failed; the message names the device and the reason."""


@contextlib.contextmanager
def route(ns: str | None = None) -> Iterator[Any]:
    """A netlink socket in namespace ``ns`` (None: the caller's own)."""
    # flags=0: never create a namespace by opening it (pyroute2's default would)
    sock: Any = IPRoute(netns=ns, flags=0) if ns else IPRoute()
    try:
        yield sock
    finally:
        sock.close()


def index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def link_info(ipr: Any, name: str) -> Any | None:
    idx = index(ipr, name)
    return ipr.get_links(idx)[0] if idx is not None else None


def kind(link: Any) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info else None


def master_name(ipr: Any, link: Any) -> str | None:
    master = link.get_attr("IFLA_MASTER")
    if not master:
        return None
    found = ipr.get_links(master)
    return found[0].get_attr("IFLA_IFNAME") if found else None


def names(ipr: Any, prefix: str = "") -> list[str]:
    return [n for n in (lk.get_attr("IFLA_IFNAME") for lk in ipr.get_links()) if n.startswith(prefix)]


def ensure_bridge(ipr: Any, name: str) -> int:
    idx = index(ipr, name)
    if idx is None:
        ipr.link("add", ifname=name, kind="bridge", br_stp_state=0, br_forward_delay=0)
        idx = index(ipr, name)
        assert idx is not None
    ipr.link("set", index=idx, state="up")
    return idx


def ensure_vxlan(ipr: Any, name: str, vni: int, local: str, mtu: int, bridge_idx: int) -> int:
    """A VXLAN device without learning or multicast: its forwarding entries are programmed."""
    link = link_info(ipr, name)
    if link is not None:
        data = link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
        if (
            kind(link) != "vxlan"
            or data.get_attr("IFLA_VXLAN_ID") != vni
            or data.get_attr("IFLA_VXLAN_LOCAL") != local
        ):
            ipr.link("del", index=link["index"])
            link = None
    if link is None:
        ipr.link(
            "add",
            ifname=name,
            kind="vxlan",
            vxlan_id=vni,
            vxlan_local=local,
            vxlan_port=VXLAN_PORT,
            vxlan_learning=0,
        )
    idx = index(ipr, name)
    assert idx is not None
    ipr.link("set", index=idx, mtu=mtu, master=bridge_idx, state="up")
    return idx


def sync_flood_entries(ipr: Any, vxlan_idx: int, vxlan_name: str, peers: tuple[str, ...]) -> None:
    """Head-end replication: one all-zero FDB entry per peer VTEP, stale peers removed. The entries
    are read with ``bridge fdb show dev``: pyroute2 dumps the whole table to filter it here, which
    with a thousand ports on the host's bridges is ~3,000 entries decoded in Python (~3 s)."""
    res = subprocess.run(
        ["bridge", "-json", "fdb", "show", "dev", vxlan_name], capture_output=True, text=True
    )
    if res.returncode != 0:
        raise NetError(f"bridge fdb show dev {vxlan_name} failed: {res.stderr.strip()}")
    have = {e["dst"] for e in json.loads(res.stdout or "[]") if e.get("mac") == ZERO_MAC and e.get("dst")}
    for peer in sorted(set(peers) - have):
        ipr.fdb("append", ifindex=vxlan_idx, lladdr=ZERO_MAC, dst=peer)
    for peer in sorted(have - set(peers)):
        ipr.fdb("del", ifindex=vxlan_idx, lladdr=ZERO_MAC, dst=peer)


def ensure_port_link(ipr: Any, name: str, bridge_idx: int, mtu: int, link_kind: str = "tap") -> int:
    """A persistent tap (or the host end of a veth that already exists) on ``bridge_idx``, up."""
    idx = index(ipr, name)
    if idx is None:
        if link_kind != "tap":
            raise NetError(f"device {name} does not exist")
        ipr.link("add", ifname=name, kind="tuntap", mode="tap")
        idx = index(ipr, name)
        assert idx is not None
    ipr.link("set", index=idx, master=bridge_idx, mtu=mtu, state="up")
    return idx


def delete(ipr: Any, name: str) -> None:
    idx = index(ipr, name)
    if idx is not None:
        with contextlib.suppress(NetlinkError):  # a veth's peer went with its namespace
            ipr.link("del", index=idx)


def ensure_veth_into(ipr: Any, name: str, peer: str, ns: str) -> None:
    """A veth pair ``name`` (here) / ``peer`` (in namespace ``ns``)."""
    if index(ipr, name) is not None:
        with route(ns) as inner:
            if index(inner, peer) is not None:
                return
        ipr.link("del", index=index(ipr, name))
    ipr.link("add", ifname=name, kind="veth", peer=peer)
    # a namespace's own packets (DHCP offers, routed replies) leave with a partial checksum that
    # a guest reading raw sockets (udhcpc) drops: the veth computes them in software instead
    no_tx_checksum(peer)
    no_tx_checksum(name)
    ipr.link("set", index=index(ipr, peer), net_ns_fd=ns)


def no_tx_checksum(name: str) -> None:
    from pyroute2.ethtool import Ethtool

    tool = Ethtool()
    try:
        features = tool.get_features(name)
        for feature, state in features.features.items():
            if feature.startswith("tx-checksum"):
                state.enable = False
        tool.set_features(name, features)
    finally:
        tool.close()


def sync_addresses(ipr: Any, name: str, wanted: list[str]) -> None:
    """Interface ``name`` has exactly the ``wanted`` addresses (``ip/prefix``; IPv6 link-local kept)."""
    idx = index(ipr, name)
    if idx is None:
        raise NetError(f"device {name} does not exist")
    want = {str(ipaddress.ip_interface(a)) for a in wanted}
    have: dict[str, tuple[str, int]] = {}
    for msg in ipr.get_addr(index=idx):
        addr, plen = msg.get_attr("IFA_ADDRESS"), msg["prefixlen"]
        if ipaddress.ip_address(addr).is_link_local:
            continue
        have[str(ipaddress.ip_interface(f"{addr}/{plen}"))] = (addr, plen)
    for key in sorted(set(have) - want):
        ipr.addr("del", index=idx, address=have[key][0], prefixlen=have[key][1])
    for key in sorted(want - set(have)):
        iface = ipaddress.ip_interface(key)
        ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
    ipr.link("set", index=idx, state="up")


def ensure_default_route(ipr: Any, gateway: str | None) -> None:
    family = 10 if gateway and ":" in gateway else 2
    current = [r for r in ipr.get_default_routes(family=family)]
    have = current[0].get_attr("RTA_GATEWAY") if current else None
    if have == gateway:
        return
    if current:
        ipr.route("del", dst="default", family=family)
    if gateway:
        ipr.route("add", dst="default", gateway=gateway, family=family)


def ensure_ns(name: str) -> None:
    if name not in netns.listnetns():
        ip("netns", "add", name)
    with route(name) as ns:
        ns.link("set", index=index(ns, "lo"), state="up")


def remove_ns(name: str) -> None:
    if name in netns.listnetns():
        ip("netns", "del", name)


def list_ns(prefix: str) -> list[str]:
    return [n for n in netns.listnetns() if n.startswith(prefix)]


def ip(*argv: str, stdin: str | None = None, ns: str | None = None) -> str:
    """Run ``ip [-n ns] argv`` (``stdin``: its input, e.g. ``-batch -``); NetError with its stderr."""
    cmd = ["ip", *(["-n", ns] if ns else []), *argv]
    res = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if res.returncode != 0:
        raise NetError(f"ip {' '.join(argv)} failed: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


def in_ns(ns: str, *argv: str, stdin: str | None = None) -> str:
    """Run a command in namespace ``ns`` (``ip netns exec``), raising NetError with its stderr."""
    res = subprocess.run(["ip", "netns", "exec", ns, *argv], input=stdin, capture_output=True, text=True)
    if res.returncode != 0:
        raise NetError(f"{' '.join(argv[:2])} in {ns} failed: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


def nft_apply(ruleset: str, ns: str | None = None) -> None:
    """Load ``ruleset`` with ``nft -f -``: one transaction, all or nothing."""
    argv = ["nft", "-f", "-"]
    if ns:
        in_ns(ns, *argv, stdin=ruleset)
        return
    res = subprocess.run(argv, input=ruleset, capture_output=True, text=True)
    if res.returncode != 0:
        raise NetError(f"nft failed: {res.stderr.strip()}")

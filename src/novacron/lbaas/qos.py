"""Per-listener QoS of a load balancer: a bandwidth limit and a connection-rate limit.

:class:`ListenerQoS` is part of a listener's desired state (``ListenerSpec.qos``):

- ``connection_rate``: new connections per second HAProxy accepts on the listener (its
  ``rate-limit sessions``, rendered by :mod:`novacron.lbaas.haproxy_config`). Connections beyond
  it wait in the kernel's accept queue: they are delayed, not refused.
- ``bandwidth_kbit``: each direction of the listener's traffic, all its clients together, by the
  kernel of the load balancer's namespace. What it sends to its clients is *shaped*: an HTB qdisc on
  each of its legs with one class per shaped listener (class ``1:<port>``, rate = ceil = the limit,
  so it never borrows) and a u32 filter putting the listener's packets (source VIP and port) in it;
  everything else is unclassified and goes out unshaped. :func:`apply` changes classes and filters
  in place (``class replace``, filters rebuilt), so a change does not flush the queues. What the
  clients send to it is *policed*: the table ``inet novacron_qos`` drops the listener's incoming
  packets (destination VIP and port) over the limit (an nftables ``limit rate over``, with an
  eighth of a second's worth of burst), and TCP senders slow down to it. Debian's HAProxy 2.6 has
  no bandwidth filter (``bwlim`` came with 2.7) and this kernel has neither ``tc police`` nor
  ``ifb``, hence nftables for the incoming side.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from novacron.errors import InvalidInput, Unavailable
from novacron.network.linux import nft

if TYPE_CHECKING:
    from novacron.lbaas.model import LoadBalancerSpec

MAX_KBIT = 10_000_000
#: the nftables table policing what clients send to bandwidth-limited listeners
POLICE_TABLE = "novacron_qos"
#: the policer's burst: this share of a second at the limit, and at least ten full frames
BURST_S = 0.125
MIN_BURST_BYTES = 15_000
MAX_CONNECTION_RATE = 100_000


@dataclass(frozen=True)
class ListenerQoS:
    """A listener's limits: ``bandwidth_kbit`` (kbit/s sent to its clients, all together; None:
    unlimited) and ``connection_rate`` (new connections accepted per second; None: unlimited)."""

    bandwidth_kbit: int | None = None
    connection_rate: int | None = None

    def __post_init__(self) -> None:
        if self.bandwidth_kbit is not None and not 64 <= self.bandwidth_kbit <= MAX_KBIT:
            raise InvalidInput("bandwidth_kbit", f"must be from 64 to {MAX_KBIT} kbit/s (or none)")
        if self.connection_rate is not None and not 1 <= self.connection_rate <= MAX_CONNECTION_RATE:
            raise InvalidInput(
                "connection_rate", f"must be from 1 to {MAX_CONNECTION_RATE} connections per second (or none)"
            )


@dataclass(frozen=True)
class Link:
    """An interface of the load balancer's namespace (a leg) and its MTU."""

    name: str
    mtu: int


def leg_links(netns: str) -> list[Link]:
    """The namespace's interfaces other than loopback: its leg(s) on the tenant network."""
    try:
        listing = json.loads(nft.run(netns, ["ip", "-j", "link", "show"]) or "[]")
    except nft.DatapathError as exc:
        raise Unavailable(f"load balancer namespace {netns}: {exc}") from exc
    return [Link(link["ifname"], int(link["mtu"])) for link in listing if link.get("ifname") != "lo"]


def shaped(spec: LoadBalancerSpec) -> dict[int, int]:
    """Listener port → its bandwidth limit in kbit/s, for the listeners that have one."""
    return {
        li.protocol_port: li.qos.bandwidth_kbit
        for li in spec.listeners
        if li.qos is not None and li.qos.bandwidth_kbit is not None
    }


def _class(port: int) -> str:
    return f"1:{port:x}"


def tc_batch(spec: LoadBalancerSpec, device: str) -> list[str]:
    """``tc -batch`` lines putting ``spec``'s shaped listeners in their classes on ``device``,
    under the HTB root qdisc (``1:``; HTB refuses to be replaced by itself, so it is added once)
    whose old filters are deleted first; classes are replaced in place."""
    lines = []
    vip = ipaddress.ip_address(spec.vip_address)
    for port, kbit in sorted(shaped(spec).items()):
        lines.append(
            f"class replace dev {device} parent 1: classid {_class(port)} htb rate {kbit}kbit ceil {kbit}kbit"
        )
        if vip.version == 4:
            keys = f"protocol ip prio 1 u32 match ip src {vip}/32 match ip sport {port} 0xffff"
        else:
            keys = f"protocol ipv6 prio 2 u32 match ip6 src {vip}/128 match ip6 sport {port} 0xffff"
        lines.append(f"filter add dev {device} parent 1: {keys} flowid {_class(port)}")
    return lines


def _our_root(netns: str, device: str) -> bool:
    qdiscs = json.loads(nft.run(netns, ["tc", "-j", "qdisc", "show", "dev", device, "root"]) or "[]")
    return any(q.get("kind") == "htb" and q.get("handle") == "1:" for q in qdiscs)


def _classes(netns: str, device: str) -> dict[str, int]:
    """The HTB classes on ``device`` and the bytes each has sent (``tc -s class show``: this
    iproute2 prints HTB classes as text only, ``-j`` or not)."""
    found: dict[str, int] = {}
    handle = None
    for line in nft.run(netns, ["tc", "-s", "class", "show", "dev", device]).splitlines():
        words = line.split()
        if words[:2] == ["class", "htb"]:
            handle = words[2]
            found[handle] = 0
        elif words[:1] == ["Sent"] and handle is not None:
            found[handle] = int(words[1])
    return found


def police_script(spec: LoadBalancerSpec) -> str:
    """The ``nft -f`` script that makes the namespace's policing table match ``spec``: a rule per
    bandwidth-limited listener dropping what its clients send over the limit (no table when none)."""
    lines = [f"table inet {POLICE_TABLE} {{}}", f"delete table inet {POLICE_TABLE}"]
    limits = shaped(spec)
    if not limits:
        return "\n".join(lines) + "\n"
    family = "ip" if ipaddress.ip_address(spec.vip_address).version == 4 else "ip6"
    lines += [
        f"table inet {POLICE_TABLE} {{",
        "    chain input {",
        "        type filter hook input priority filter; policy accept;",
    ]
    for port, kbit in sorted(limits.items()):
        rate = kbit * 1000 // 8
        burst = max(int(rate * BURST_S), MIN_BURST_BYTES)
        match = f"{family} daddr {spec.vip_address} tcp dport {port}"
        lines.append(f"        {match} limit rate over {rate} bytes/second burst {burst} bytes counter drop")
    return "\n".join([*lines, "    }", "}"]) + "\n"


def apply(netns: str, spec: LoadBalancerSpec, links: list[Link]) -> None:
    """Shape each leg of namespace ``netns`` and police what reaches it as ``spec``'s listeners
    ask (no class, filter or table at all when none has a bandwidth limit)."""
    wanted = {_class(port) for port in shaped(spec)}
    try:
        nft.nft_apply(netns, police_script(spec))
        for link in links:
            if not wanted:
                if _our_root(netns, link.name):
                    nft.run(netns, ["tc", "qdisc", "del", "dev", link.name, "root"])
                continue
            if _our_root(netns, link.name):
                nft.run(netns, ["tc", "filter", "del", "dev", link.name, "parent", "1:"], check=False)
                for handle in set(_classes(netns, link.name)) - wanted:
                    nft.run(netns, ["tc", "class", "del", "dev", link.name, "classid", handle])
            else:
                nft.run(netns, ["tc", "qdisc", "replace", "dev", link.name, "root", "handle", "1:", "htb"])
            nft.run(netns, ["tc", "-batch", "-"], stdin="\n".join(tc_batch(spec, link.name)) + "\n")
    except nft.DatapathError as exc:
        raise Unavailable(f"bandwidth limits not applied: {exc}") from exc


def class_bytes(netns: str, device: str) -> dict[int, int]:
    """Listener port → bytes its class has sent on ``device`` (the shaped listeners only)."""
    return {int(handle.split(":")[1], 16): sent for handle, sent in _classes(netns, device).items()}

"""Many links at once: one ``ip -json`` dump to read them, one ``ip -batch`` to change them.

A host with a thousand ports made them one netlink exchange at a time through pyroute2: ~9 ms a
tap (its synchronous calls each run an event loop; a tap is made through ``/dev/net/tun``), and
each deletion waited for the kernel's RCU grace period on its own (~35 ms). iproute2 in batch
mode makes and plugs a thousand taps in about a second, and deleting them as one device group
(``link del group``) lets the kernel unregister them together with one grace period: measured
in ``bench/bench_network.py`` (see docs/benchmarks.md).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from novacron.network.linux.links import ip


@dataclass(frozen=True)
class LinkState:
    """What a sync compares of a link: its bridge, MTU, whether it is up, and its kind."""

    name: str
    master: str | None
    mtu: int
    up: bool
    kind: str | None


@dataclass(frozen=True)
class Plug:
    """A port's device on its bridge: made first when ``create`` (a tap), then set up."""

    device: str
    bridge: str
    mtu: int
    create: bool


def link_table(ns: str | None = None) -> dict[str, LinkState]:
    """Every link of the namespace, by name, from one dump."""
    table = {}
    for link in json.loads(ip("-json", "-details", "link", "show", ns=ns) or "[]"):
        name = link["ifname"]
        table[name] = LinkState(
            name=name,
            master=link.get("master"),
            mtu=int(link.get("mtu", 0)),
            up="UP" in link.get("flags", ()),
            kind=(link.get("linkinfo") or {}).get("info_kind"),
        )
    return table


def run_batch(commands: Sequence[str], ns: str | None = None) -> None:
    """``ip -batch``: the commands in order, stopping at the first that fails (named in the error)."""
    if commands:
        ip("-batch", "-", stdin="".join(c + "\n" for c in commands), ns=ns)


def plug(plugs: Iterable[Plug], ns: str | None = None) -> None:
    """Make the missing taps and put every device on its bridge, with its MTU, up."""
    todo = list(plugs)
    run_batch([f"tuntap add dev {p.device} mode tap" for p in todo if p.create], ns)
    run_batch([f"link set dev {p.device} master {p.bridge} mtu {p.mtu} up" for p in todo], ns)


def group_of(owner: str) -> int:
    """A device group number of the owner's own (a backend's state directory): hosts sharing one
    namespace (all-in-one nodes under test) never delete each other's devices."""
    return 0x4E430000 | (zlib.crc32(owner.encode()) & 0xFFFF)


def delete(devices: Iterable[str], group: int, ns: str | None = None) -> None:
    """Delete the devices together: moved into ``group``, then the group deleted in one request."""
    todo = [f"link set dev {d} group {group}" for d in devices]
    if todo:
        run_batch([*todo, f"link del group {group}"], ns)

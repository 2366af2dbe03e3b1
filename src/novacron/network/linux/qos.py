"""Hierarchical QoS of a host's ports: tc HTB (host -> tenant -> network -> port) and DSCP marking.

A hierarchy needs one qdisc that all ports' traffic crosses, so each direction has its own ``ifb``
device: a port's tap redirects what it receives (the VM's egress) to ``ncqos-up`` and what it sends
(the VM's ingress) to ``ncqos-dn`` with ``clsact`` + ``mirred`` (``tc police`` is not in this
kernel). On the ifb, u32 filters pick the port's HTB class by the VM's MAC (source on the way up,
destination on the way down); the port class has ``rate`` = the guaranteed rate and ``ceil`` = the
limit, under its network's class, under its tenant's class, all able to borrow up to the host's
line rate. Traffic of ports without QoS (and broadcast) goes unclassified, i.e. unshaped. DSCP is
written on a port's egress packets by the ``bridge novacron_qos`` nftables table.
``apply`` rebuilds the hierarchy from scratch (tc has no transactions: a short reshaping gap).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from novacron.network.linux import nft
from novacron.network.model import AddressSet, PortSpec

UP, DOWN = "ncqos-up", "ncqos-dn"
LINE_RATE = "10gbit"
TABLE = "novacron_qos"


def _mac_match(mac: str, direction: str) -> str:
    """u32 keys for the VM's MAC; offsets count from the IP header and must be word-aligned."""
    b = bytes(int(x, 16) for x in mac.split(":"))
    w = [int.from_bytes(x, "big") for x in (b[:4], b[4:], b[:2], b[2:])]
    if direction == "egress":  # source MAC: bytes -8..-3
        return f"match u32 {w[0]:#x} 0xffffffff at -8 match u16 {w[1]:#x} 0xffff at -4"
    # destination MAC: bytes -14..-9
    return f"match u16 {w[2]:#x} 0xffff at -14 match u32 {w[3]:#x} 0xffffffff at -12"


def _kbit(v: int | None) -> str:
    return f"{v}kbit" if v else LINE_RATE


def compile_tc(ports: Sequence[PortSpec]) -> list[str]:
    """``tc -batch`` lines building both ifb hierarchies (the ifbs themselves exist already)."""
    shaped = sorted((p for p in ports if p.qos), key=lambda p: p.device)
    # class ids: 1:1 the host, then one per tenant, per (tenant, network) and per port
    ids: dict[str, int] = {}
    guaranteed: dict[str, int] = {}
    for p in shaped:
        for key in (p.tenant_id, f"{p.tenant_id}/{p.network_id}", f"port/{p.id}"):
            ids.setdefault(key, 0x10 + len(ids))
            guaranteed[key] = guaranteed.get(key, 0) + ((p.qos.guaranteed_kbps if p.qos else None) or 8)
    if len(ids) > 0xFFF0:
        raise ValueError("too many QoS classes for one host")
    lines: list[str] = []
    for dev, direction in ((UP, "egress"), (DOWN, "ingress")):
        lines.append(f"qdisc replace dev {dev} root handle 1: htb default 0xffff r2q 100")
        lines.append(f"class replace dev {dev} parent 1: classid 1:1 htb rate {LINE_RATE} quantum 60000")
        made: set[int] = set()
        for p in shaped:
            assert p.qos is not None
            limit = p.qos.egress_kbps if direction == "egress" else p.qos.ingress_kbps
            tkey, nkey = p.tenant_id, f"{p.tenant_id}/{p.network_id}"
            t, n, pc = ids[tkey], ids[nkey], ids[f"port/{p.id}"]
            for cid, parent, key in ((t, 1, tkey), (n, t, nkey)):
                if cid not in made:
                    made.add(cid)
                    lines.append(
                        f"class replace dev {dev} parent 1:{parent:x} classid 1:{cid:x} htb "
                        f"rate {guaranteed[key]}kbit ceil {LINE_RATE} quantum 1514"
                    )
            rate = p.qos.guaranteed_kbps or limit or 8
            if limit:
                rate = min(rate, limit)
            lines.append(
                f"class replace dev {dev} parent 1:{n:x} classid 1:{pc:x} htb "
                f"rate {rate}kbit ceil {_kbit(limit)} quantum 1514"
            )
            lines.append(
                f"filter add dev {dev} parent 1: prio 1 protocol all u32 {_mac_match(p.mac, direction)} "
                f"flowid 1:{pc:x}"
            )
    for p in shaped:
        lines.append(f"qdisc add dev {p.device} clsact")
        for hook, ifb in (("ingress", UP), ("egress", DOWN)):
            lines.append(
                f"filter add dev {p.device} {hook} prio 1 protocol all u32 match u32 0 0 "
                f"action mirred egress redirect dev {ifb}"
            )
    return lines


def compile_dscp(ports: Sequence[PortSpec]) -> str:
    marked = sorted((p for p in ports if p.qos and p.qos.dscp is not None), key=lambda p: p.device)
    out = [f"table bridge {TABLE} {{}}", f"delete table bridge {TABLE}"]
    if not marked:
        return "\n".join(out) + "\n"
    out.append(f"table bridge {TABLE} {{")
    out.append("chain mark_dscp { type filter hook prerouting priority -250; policy accept;")
    out.append(
        "iifname vmap { "
        + ", ".join(f"{json.dumps(p.device)} : jump dscp_{i}" for i, p in enumerate(marked))
        + " }"
    )
    out.append("}")
    for i, p in enumerate(marked):
        d = p.qos.dscp if p.qos else 0
        out.append(f"chain dscp_{i} {{\nether type ip ip dscp set {d}\nether type ip6 ip6 dscp set {d}\n}}")
    out.append("}")
    return "\n".join(out) + "\n"


class Shaper:
    """The host's QoS. ``apply`` converges to exactly ``ports``' QoS; ``clear`` removes all of it."""

    def __init__(self, netns: str | None = None, state_dir: Path | None = None) -> None:
        self.netns = netns
        self.state = (state_dir or Path("/run/novacron/qos") / (netns or "host")) / "devices.json"

    def _previous(self) -> list[str]:
        try:
            return list(json.loads(self.state.read_text()))
        except (OSError, ValueError):
            return []

    def _unshape(self, devices: Sequence[str]) -> None:
        if devices:
            batch = "".join(f"qdisc del dev {d} clsact\n" for d in devices)
            nft.run(self.netns, ["tc", "-force", "-batch", "-"], stdin=batch, check=False)

    def apply(self, ports: Sequence[PortSpec], address_sets: Mapping[str, AddressSet] | None = None) -> None:
        """Shape ``ports`` (the remote address sets play no part in QoS)."""
        shaped = [
            p for p in ports if p.qos and (p.qos.ingress_kbps or p.qos.egress_kbps or p.qos.guaranteed_kbps)
        ]
        wanted = {p.device for p in shaped}
        # the taps' redirects are rebuilt below: drop them all first (tc has no replace for u32 sets)
        self._unshape(sorted(set(self._previous()) | wanted))
        if shaped:
            for dev in (UP, DOWN):
                nft.run(self.netns, ["ip", "link", "add", dev, "type", "ifb"], check=False)
                nft.run(self.netns, ["ip", "link", "set", dev, "up"])
                nft.run(self.netns, ["tc", "qdisc", "del", "dev", dev, "root"], check=False)
            nft.run(self.netns, ["tc", "-batch", "-"], stdin="\n".join(compile_tc(shaped)) + "\n")
        else:
            self._remove_ifbs()
        nft.nft_apply(self.netns, compile_dscp(ports))
        self.state.parent.mkdir(parents=True, exist_ok=True)
        self.state.write_text(json.dumps(sorted(wanted)))

    def sets_changed(self, ports: Sequence[PortSpec], address_sets: Mapping[str, AddressSet]) -> None:
        """Nothing to do: no shaping depends on remote groups' members."""

    def _remove_ifbs(self) -> None:
        for dev in (UP, DOWN):
            nft.run(self.netns, ["ip", "link", "del", dev], check=False)

    def clear(self) -> None:
        self._unshape(self._previous())
        self._remove_ifbs()
        nft.nft_apply(self.netns, f"table bridge {TABLE} {{}}\ndelete table bridge {TABLE}\n")
        self.state.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.state.parent.rmdir()

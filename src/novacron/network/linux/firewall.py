"""Security groups as a stateful, per-port nftables firewall compiled from all of a host's ports.

The kernel here has no conntrack in the ``bridge`` family (``nf_conntrack_bridge`` is not built), so
the work is split between two tables named ``novacron``, replaced together by one ``nft -f``:

* ``bridge novacron`` sees every frame with its bridge port (tap/veth) as ``iifname``/``oifname``:
  it drops spoofed frames (MAC, ARP sender, IPv4/IPv6 source, neighbour advertisements for others'
  addresses) and writes the index of the port a packet leaves by into the packet mark, because the
  ``inet`` hooks only see the bridge device.
* ``inet novacron`` runs on bridged IP traffic through br_netfilter, where conntrack works: one
  conntrack zone per bridge (tenants may reuse addresses), ``established,related`` accepted, then
  the source port's egress chain (by source MAC, which anti-spoofing made trustworthy) and the
  destination port's ingress chain (by the mark).

Semantics (OpenStack-like): inbound to a port is denied unless a rule allows it (DHCP replies and
IPv6 neighbour discovery always pass); egress is allowed unless the port has egress allow rules,
then only what they allow (plus DHCP and neighbour discovery); ``deny`` rules are checked before
allows; ``port_security=False`` passes everything. Application protocols (http/ssh/dns/tls) are
recognised from the first payload of a flow (see ``_app_chain``); TLS with an SNI allow-list
sends the ClientHello to the user-space classifier (``classifier.py``) over NFQUEUE.

A rule naming a remote group matches the group's named interval set (``AddressSet``), declared once
per host. When only the sets' members changed since the last apply, ``Firewall.apply`` rewrites
those sets' elements in one transaction (``flush set`` + ``add element``) instead of replacing the
tables: the chains, and the flows they track, are left alone.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import shutil
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from novacron.network.linux import nft
from novacron.network.model import AddressSet, PortSpec, Rule

TABLE = "novacron"
#: packet mark bits 0-13: the index of the port a bridged packet leaves by
OUT_MASK = 0x3FFF
#: packet mark bits: send to the classifier; its verdicts (read back by the ``verdicts`` chain)
QUEUE_BIT, CLS_ALLOW_BIT, CLS_DENY_BIT = 1 << 28, 1 << 29, 1 << 30
#: conntrack mark bits: candidate application protocols of a pending flow; decided flows
APP_BITS = {"http": 0x1, "tls": 0x2, "ssh": 0x4, "dns": 0x8}
CT_ALLOWED, CT_DENIED, CT_SNI = 0x100, 0x200, 0x400
#: a rule's remote CIDRs go into a named interval set above this size (one lookup, any size)
INLINE_CIDRS = 8
MAX_PORTS = OUT_MASK
QUEUE_NUM = 7
HTTP_METHODS = ("GET ", "POST", "HEAD", "PUT ", "DELE", "OPTI", "PATC", "CONN", "TRAC")


def _quote(name: str) -> str:
    return json.dumps(name)


def eui64_link_local(mac: str) -> str:
    b = bytearray(int(x, 16) for x in mac.split(":"))
    b[0] ^= 0x02
    iid = bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:])
    return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\x00" * 6 + iid))


@functools.lru_cache(maxsize=65536)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


def zone_of(bridge: str) -> int:
    """A stable conntrack zone per bridge, so re-applying never moves live flows between zones."""
    return zlib.crc32(bridge.encode()) % 65000 + 1


def _ips(port: PortSpec, version: int) -> list[str]:
    return [f.ip for f in port.fixed_ips if ipaddress.ip_address(f.ip).version == version]


@dataclass(frozen=True)
class Ruleset:
    """A compiled ruleset: the tables with the remote sets declared empty, and the sets' elements."""

    skeleton: str
    #: remote set name -> its elements as nft writes them ("" for none)
    elements: dict[str, str] = field(default_factory=dict)
    #: remote set name -> the ethertype its rules match
    ethertypes: dict[str, str] = field(default_factory=dict)
    #: classifier table: rule id -> allowed server names
    sni: dict[int, list[str]] = field(default_factory=dict)

    def script(self) -> str:
        """The nft script replacing both ``novacron`` tables."""
        return self.skeleton + "".join(_fill(n, e) for n, e in sorted(self.elements.items()) if e)

    def delta(self, before: Ruleset) -> str | None:
        """The script turning ``before`` into this ruleset by set elements alone ("" for nothing to
        do), or None when more than the elements differ."""
        if before.skeleton != self.skeleton or before.elements.keys() != self.elements.keys():
            return None
        changed = [n for n, e in sorted(self.elements.items()) if before.elements[n] != e]
        return "".join(f"flush set inet {TABLE} {n}\n" + _fill(n, self.elements[n]) for n in changed)

    def with_sets(self, address_sets: Mapping[str, AddressSet]) -> Ruleset:
        """The same tables with the sets' elements taken from ``address_sets``."""
        elements = {n: _elements(address_sets.get(n), e) for n, e in self.ethertypes.items()}
        return Ruleset(self.skeleton, elements, self.ethertypes, self.sni)


def _elements(known: AddressSet | None, ethertype: str) -> str:
    """A set's elements as nft writes them; a set the state does not carry (or of the other
    family) is empty. Host routes are written as addresses: an interval set stores them the same."""
    cidrs = known.cidrs if known and known.ethertype == ethertype else ()
    return ", ".join(c.split("/")[0] for c in cidrs)


def _fill(name: str, elements: str) -> str:
    return f"add element inet {TABLE} {name} {{ {elements} }}\n" if elements else ""


class _Compiler:
    def __init__(
        self, ports: Sequence[PortSpec], bridges: dict[str, str], address_sets: Mapping[str, AddressSet]
    ) -> None:
        if len(ports) > MAX_PORTS:
            raise ValueError(f"at most {MAX_PORTS} ports per host, got {len(ports)}")
        self.ports = sorted(ports, key=lambda p: p.device)
        self.idx = {p.device: i + 1 for i, p in enumerate(self.ports)}
        self.bridges = bridges
        self.address_sets = address_sets
        #: the remote sets referred to, with their elements (declared empty in the tables)
        self.elements: dict[str, str] = {}
        self.ethertypes: dict[str, str] = {}
        self.sets: list[str] = []
        self.set_names: set[str] = set()
        self.chains: list[str] = []
        #: classifier table: rule id -> allowed server names
        self.sni: dict[int, list[str]] = {}

    # ---- bridge family: anti-spoofing and port tagging -------------------------------------------
    def bridge_table(self) -> str:
        pre, fwd, chains = [], [], []
        for p in self.ports:
            i = self.idx[p.device]
            fwd.append(f"{_quote(p.device)} : {i:#x}")
            if not p.port_security:
                continue
            pre.append(f"{_quote(p.device)} : jump from_{i}")
            chains.append(f"chain from_{i} {{\n" + "\n".join(self._antispoof(p)) + "\n}")
        out = [f"table bridge {TABLE} {{"]
        out.append("chain tag_in { type filter hook prerouting priority -300; policy accept;")
        if pre:
            out.append(f"iifname vmap {{ {', '.join(pre)} }}")
        out.append("}")
        out.append("chain tag_out { type filter hook forward priority -200; policy accept;")
        if fwd:
            out.append(f"meta mark set oifname map {{ {', '.join(fwd)} }}")
        out.append("}")
        out += chains
        out.append("}")
        return "\n".join(out)

    def _antispoof(self, p: PortSpec) -> list[str]:
        mac = p.mac.lower()
        v4, v6 = _ips(p, 4), _ips(p, 6) + [eui64_link_local(mac)]
        r = [f"ether saddr != {mac} drop"]
        r.append(f"ether type arp arp saddr ether != {mac} drop")
        r.append(f"ether type arp arp saddr ip != {{ {', '.join(v4 + ['0.0.0.0'])} }} drop")
        r.append("ether type arp return")
        r.append("ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 return")
        r.append(f"ip saddr != {{ {', '.join(v4)} }} drop" if v4 else "ether type ip drop")
        # duplicate address detection sends from :: ; advertisements only for the port's own addresses
        r.append("ip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report } return")
        r.append(f"ip6 saddr != {{ {', '.join(v6)} }} drop")
        targets = ", ".join(f"{int(ipaddress.IPv6Address(a)):#x}" for a in v6)
        r.append(f"icmpv6 type nd-neighbor-advert @th,64,128 != {{ {targets} }} drop")
        # no DHCP servers and no IPv6 routers among the VMs
        r.append("ip protocol udp udp sport 67 drop")
        r.append("ip6 nexthdr udp udp sport 547 drop")
        r.append("icmpv6 type nd-router-advert drop")
        r.append("ether type != { ip, ip6, arp } drop")
        return r

    # ---- inet family: stateful rules ----------------------------------------------------------------
    def inet_table(self) -> str:
        egress_map, ingress_map = [], []
        for p in self.ports:
            if not p.port_security:
                continue
            i = self.idx[p.device]
            eg = [r for r in p.rules if r.direction == "egress"]
            if eg:
                egress_map.append(f"{p.mac.lower()} : jump eg_{i}")
                self.chains.append(self._egress_chain(p, i, eg))
            ingress_map.append(f"{i:#x} : jump in_{i}")
            self.chains.append(self._ingress_chain(p, i, [r for r in p.rules if r.direction == "ingress"]))
        zones = sorted({(b, zone_of(b)) for b in self.bridges.values()})
        out = [f"table inet {TABLE} {{"]
        out += self.sets
        out.append("chain zones { type filter hook prerouting priority -300; policy accept;")
        if zones:
            out.append(f"ct zone set iifname map {{ {', '.join(f'{_quote(b)} : {z}' for b, z in zones)} }}")
        out.append("}")
        out.append("chain portfilter { type filter hook forward priority -10; policy accept;")
        out.append(f"ct mark & {CT_DENIED:#x} == {CT_DENIED:#x} drop")
        out.append(f"ct mark & {CT_ALLOWED | CT_DENIED | 0xFF:#x} 0x1-0xff jump app")
        out.append("ct state established,related accept")
        out.append("ct state invalid drop")
        if egress_map:
            # the source MAC names the sending port: the bridge table dropped every other one
            out.append(f"ether saddr vmap {{ {', '.join(egress_map)} }}")
        if ingress_map:
            out.append(f"meta mark & {OUT_MASK:#x} vmap {{ {', '.join(ingress_map)} }}")
        out.append("}")
        # after the classifier (iptables' filter FORWARD, priority 0) gave its verdict as a packet mark
        out.append("chain verdicts { type filter hook forward priority 10; policy accept;")
        out.append(f"meta mark & {CLS_ALLOW_BIT:#x} != 0 ct mark set ct mark | {CT_ALLOWED:#x}")
        out.append(f"meta mark & {CLS_DENY_BIT:#x} != 0 ct mark set ct mark | {CT_DENIED:#x} drop")
        out.append("}")
        out.append(self._app_chain())
        out += self.chains
        out.append("}")
        return "\n".join(out)

    def _ingress_chain(self, p: PortSpec, i: int, rules: list[Rule]) -> str:
        body = [
            "udp sport 67 udp dport 68 accept",
            "udp sport 547 udp dport 546 accept",
            "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, "
            "mld-listener-query } accept",
        ]
        body += self._rules(p, i, rules, "accept")
        body.append("drop")
        return f"chain in_{i} {{\n" + "\n".join(body) + "\n}"

    def _egress_chain(self, p: PortSpec, i: int, rules: list[Rule]) -> str:
        body = [
            "udp sport 68 udp dport 67 return",
            "udp sport 546 udp dport 547 return",
            "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, "
            "mld2-listener-report } return",
        ]
        body += self._rules(p, i, rules, "return")
        if any(r.action == "allow" for r in rules):
            body.append("drop")
        return f"chain eg_{i} {{\n" + "\n".join(body) + "\n}"

    def _rules(self, p: PortSpec, i: int, rules: list[Rule], verdict: str) -> list[str]:
        out, app = [], False
        ordered = [r for r in rules if r.action == "deny"] + [r for r in rules if r.action == "allow"]
        for r in ordered:
            match = self._match(r)
            if match is None:
                continue
            if r.action == "deny":
                out.append(f"{match} drop")
            elif r.protocol == "dns":
                # a UDP query is judged on its only packet: QR=0, one question, no answers
                out.append(f"{match} meta l4proto udp @ih,16,1 0 @ih,32,16 1 @ih,48,32 0 {verdict}")
                out.append(f"{match} meta l4proto tcp ct state new ct mark set ct mark | 0x8")
                app = True
            elif r.protocol in APP_BITS:
                # no verdict yet: every application rule that matches adds its protocol as a candidate
                out.append(f"{match} {self._app_start(r)}")
                app = True
            else:
                out.append(f"{match} {verdict}")
        if app:
            out.append(f"ct state new ct mark & 0xff != 0 {verdict}")
        return out

    def _match(self, r: Rule) -> str | None:
        fam, addr = ("ip", "ip") if r.ethertype == "IPv4" else ("ip6", "ip6")
        m = [f"meta nfproto {'ipv4' if fam == 'ip' else 'ipv6'}"]
        if r.remote_set:
            m.append(f"{addr} {'saddr' if r.direction == 'ingress' else 'daddr'} @{self._remote_set(r)}")
        elif r.remote_cidrs:
            nets = [x for x in map(_network, r.remote_cidrs) if (x.version == 4) == (fam == "ip")]
            if not nets:
                return None  # a remote group with no member of this family matches nothing
            key = "saddr" if r.direction == "ingress" else "daddr"
            if len(nets) > INLINE_CIDRS:
                m.append(f"{addr} {key} @{self._named_set(fam, nets)}")
            else:
                m.append(f"{addr} {key} {{ {', '.join(str(x) for x in nets)} }}")
        proto = r.protocol
        ports = ""
        if r.port_min is not None:
            hi = r.port_max if r.port_max is not None else r.port_min
            ports = str(r.port_min) if hi == r.port_min else f"{r.port_min}-{hi}"
        if proto in ("tcp", "udp"):
            m.append(f"{proto} dport {ports}" if ports else f"meta l4proto {proto}")
        elif proto in ("icmp", "icmpv6"):
            m.append(f"meta l4proto {'icmp' if fam == 'ip' else 'ipv6-icmp'}")
            if r.port_min is not None:
                m.append(f"{proto} type {r.port_min}")
        elif proto == "dns":
            if ports:
                m.append(f"meta l4proto {{ tcp, udp }} th dport {ports}")
        elif proto in APP_BITS:
            m.append(f"tcp dport {ports}" if ports else "meta l4proto tcp")
        return " ".join(m)

    def _named_set(self, fam: str, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
        """One interval set per distinct remote group: ports sharing a group share its set."""
        elems = ", ".join(sorted({str(x) for x in nets}))
        name = "g" + hashlib.sha1(f"{fam} {elems}".encode()).hexdigest()[:12]
        if name not in self.set_names:
            self.set_names.add(name)
            kind = "ipv4_addr" if fam == "ip" else "ipv6_addr"
            self.sets.append(
                f"set {name} {{ type {kind}; flags interval; auto-merge; elements = {{ {elems} }} }}"
            )
        return name

    def _remote_set(self, r: Rule) -> str:
        """Declare a remote group's set (once); a set the state does not carry is empty."""
        name = r.remote_set or ""
        if name not in self.elements:
            self.elements[name] = _elements(self.address_sets.get(name), r.ethertype)
            self.ethertypes[name] = r.ethertype
            kind = "ipv4_addr" if r.ethertype == "IPv4" else "ipv6_addr"
            self.sets.append(f"set {name} {{ type {kind}; flags interval; auto-merge; }}")
        return name

    def _app_start(self, r: Rule) -> str:
        """The first packet of a flow that may become ``r.protocol``: remember the candidates."""
        bits = APP_BITS[r.protocol or ""]
        if r.protocol == "tls" and r.sni_allow:
            # one SNI list per flow: the first matching tls rule's (its id rides in bits 16-27)
            rid = len(self.sni) + 1
            self.sni[rid] = list(r.sni_allow)
            bits |= CT_SNI | rid << 16
            return f"ct state new ct mark & {CT_SNI:#x} == 0 ct mark set ct mark | {bits:#x}"
        return f"ct state new ct mark set ct mark | {bits:#x}"

    def _app_chain(self) -> str:
        """Pending flows: decide on the first payload; pure handshake/ACK packets pass meanwhile."""
        methods = ", ".join(f"{int.from_bytes(m.encode(), 'big'):#x}" for m in HTTP_METHODS)
        ssh = int.from_bytes(b"SSH-", "big")
        allow = f"ct mark set ct mark | {CT_ALLOWED:#x} accept"
        hello = "@ih,0,8 0x16 @ih,40,8 0x01"
        body = [
            "meta l4proto != tcp accept",
            f"ct direction original ct mark & 0x1 == 0x1 @ih,0,32 {{ {methods} }} {allow}",
            f"ct mark & 0x4 == 0x4 @ih,0,32 {ssh:#x} {allow}",
            f"ct direction original ct mark & {0x2 | CT_SNI:#x} == 0x2 {hello} {allow}",
            f"ct direction original ct mark & {0x2 | CT_SNI:#x} == {0x2 | CT_SNI:#x} {hello} "
            f"meta mark set ct mark & 0xfff0000 | {QUEUE_BIT:#x} accept",
            f"ct direction original ct mark & 0x8 == 0x8 @ih,48,1 0 @ih,64,16 1 {allow}",
            # any other first payload from the client: not an allowed protocol, the flow is denied
            f"ct direction original @ih,0,8 0-255 ct mark set ct mark | {CT_DENIED:#x} drop",
            # the server spoke first (an SSH banner behind an http rule): hold it until the client does
            "ct direction reply @ih,0,8 0-255 drop",
            "accept",
        ]
        return "chain app {\n" + "\n".join(body) + "\n}"


def _masters(netns: str | None, devices: Sequence[str]) -> dict[str, str]:
    """Each port device's bridge (the conntrack zone follows the bridge, so the network)."""
    out = nft.run(netns, ["ip", "-j", "link", "show"], check=False)
    try:
        links = json.loads(out or "[]")
    except json.JSONDecodeError:
        return {}
    wanted = set(devices)
    return {ln["ifname"]: ln["master"] for ln in links if ln.get("ifname") in wanted and ln.get("master")}


def compile_ruleset(
    ports: Sequence[PortSpec], bridges: dict[str, str], address_sets: Mapping[str, AddressSet] | None = None
) -> Ruleset:
    """Both ``novacron`` tables for ``ports``, their remote sets' elements, and the SNI lists."""
    c = _Compiler(ports, bridges, address_sets or {})
    bridge, inet = c.bridge_table(), c.inet_table()
    # each table's delete right before its new body: nft evaluates this order several times faster
    reset = "table {0} {1} {{}}\ndelete table {0} {1}\n"
    skeleton = reset.format("bridge", TABLE) + bridge + "\n" + reset.format("inet", TABLE) + inet + "\n"
    return Ruleset(skeleton, c.elements, c.ethertypes, c.sni)


class Firewall:
    """The host's port firewall. ``apply`` makes it exactly the ports' rules, atomically (idempotent):
    by replacing both tables, or, when only remote sets' members changed, by rewriting those sets."""

    def __init__(self, netns: str | None = None, state_dir: Path | None = None) -> None:
        self.netns = netns
        self.state_dir = state_dir or Path("/run/novacron/firewall") / (netns or "host")
        #: what this process applied last (a restarted agent replaces the tables once)
        self._applied: Ruleset | None = None

    def apply(self, ports: Sequence[PortSpec], address_sets: Mapping[str, AddressSet] | None = None) -> None:
        """Make the host's firewall exactly ``ports``' (all of them, every call). Call it after the
        devices are enslaved: each bridge's conntrack zone is read from the devices' masters."""
        ruleset = compile_ruleset(ports, _masters(self.netns, [p.device for p in ports]), address_sets)
        delta = ruleset.delta(self._applied) if self._applied is not None else None
        if delta is not None:
            if delta:
                nft.nft_apply(self.netns, delta)
            self._applied = ruleset
            return
        # bridged IP packets must traverse the inet hooks (per namespace since Linux 5.3)
        nft.sysctl(self.netns, "net.bridge.bridge-nf-call-iptables", "1")
        nft.sysctl(self.netns, "net.bridge.bridge-nf-call-ip6tables", "1")
        from novacron.network.linux import classifier

        if ruleset.sni:
            classifier.ensure(self.netns, self.state_dir, QUEUE_NUM, ruleset.sni)
        self._applied = None  # unknown until the replacement succeeded
        nft.nft_apply(self.netns, ruleset.script())
        self._applied = ruleset
        if not ruleset.sni:
            classifier.stop(self.netns, self.state_dir)

    def sets_changed(self, ports: Sequence[PortSpec], address_sets: Mapping[str, AddressSet]) -> None:
        """Only remote groups' members changed: rewrite the sets applied last, without compiling the
        ports' chains again (a first call in this process compiles and applies everything)."""
        if self._applied is None:
            self.apply(ports, address_sets)
            return
        ruleset = self._applied.with_sets(address_sets)
        delta = ruleset.delta(self._applied)
        if delta:
            nft.nft_apply(self.netns, delta)
        self._applied = ruleset

    def clear(self) -> None:
        from novacron.network.linux import classifier

        self._applied = None
        script = "".join(
            f"table {fam} {TABLE} {{}}\ndelete table {fam} {TABLE}\n" for fam in ("bridge", "inet")
        )
        nft.nft_apply(self.netns, script)
        classifier.stop(self.netns, self.state_dir)
        shutil.rmtree(self.state_dir, ignore_errors=True)

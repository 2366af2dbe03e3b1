"""SYN-flood protection of a load balancer's VIP: an nftables synproxy in its namespace.

A SYN flood fills a listener's queue of half-open connections with handshakes nobody completes.
For each listener whose :class:`~novacron.lbaas.protection.ListenerProtection` asks for
``syn_flood``, the kernel of the load balancer's namespace answers the SYNs to VIP:port itself,
with a SYN cookie: the SYN is not tracked (``notrack`` in the raw prerouting hook, so a flood
costs no conntrack entry), and only a client that sends the cookie back gets a connection, which
the synproxy then opens to HAProxy's socket on the client's behalf and tracks from then on.
Packets to the port that belong to no known connection (``ct state invalid``) are dropped.
HAProxy never sees the flood.

The ruleset is one table, ``inet novacron_synproxy``, loaded with ``nft -f`` after declaring and
deleting it in the same script, so the kernel replaces it whole or not at all; without protected
listeners the script only removes it. The table's comment holds a digest of the script, so an
unchanged ruleset is not loaded again (its counters keep counting across HAProxy reloads).

The synproxy offers clients the leg's MSS (its MTU less the IP and TCP headers) and no other
option: not timestamps, and so not window scaling or SACK either (the synproxy can only carry
those in the timestamp). With timestamps, about one connection in a hundred waited 1.6 s in
trials on this kernel (6.18): the synproxy's window update to the client carries a timestamp one
clock tick newer than HAProxy's socket has sent, the client echoes it, and the socket, which
refuses echoed timestamps it never sent (``TcpExtTSEcrRejected``: every connection counted one),
drops the handshake's last ACK and the request until its SYN-ACK is retransmitted a second later.
Without them: no rejection, no stall in 1,600 connections. The price: a connection through the
synproxy has a window of at most 64 KiB (about 5 Mbit/s at 100 ms round trip, far more on a LAN),
so the protection is a listener's choice.

Conntrack must not pick up connections it did not see start
(``net.netfilter.nf_conntrack_tcp_loose=0`` in the namespace), else the client's ACK carrying the
cookie would pass as a known connection; so switching the protection on cuts, once, the
connections already open to that port (their handshakes were never tracked). Conntrack must
also forget a closed connection at once (``nf_conntrack_tcp_timeout_time_wait`` and ``_close``
1 s, from 120 s and 10 s): the SYN of a client reusing its source port is not tracked, so its
cookie ACK met the old connection's entry and was lost; a client loop of 85 s (8,500
connections; Linux clients reuse a port once their own 60 s TIME_WAIT is over) hung from then on
with the defaults and had no failure with 1 s.

:func:`counters` reads the namespace's synproxy statistics (``/proc/net/stat/synproxy``) and the
table's counters.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from novacron.errors import Unavailable
from novacron.lbaas.model import LoadBalancerSpec
from novacron.network.linux import nft

TABLE = "novacron_synproxy"
_HEADERS = {4: 40, 6: 60}
#: the namespace's conntrack as the synproxy needs it (module docstring)
CONNTRACK_SYSCTLS = {
    "net.netfilter.nf_conntrack_tcp_loose": "0",
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait": "1",
    "net.netfilter.nf_conntrack_tcp_timeout_close": "1",
}


@dataclass(frozen=True)
class SynproxyCounters:
    """What the namespace's synproxy has done since its table was loaded (``syn_seen``,
    ``synproxied``, ``dropped``: the table's rule counters) and since the namespace exists (the
    kernel's statistics: SYNs answered with a cookie, ACKs whose cookie was valid or not,
    retransmitted SYNs to HAProxy, connections reopened)."""

    syn_seen: int
    synproxied: int
    dropped: int
    syn_received: int
    cookie_valid: int
    cookie_invalid: int
    cookie_retrans: int
    conn_reopened: int


def protected_ports(spec: LoadBalancerSpec) -> list[int]:
    """The ports of the listeners that ask for SYN-flood protection."""
    return sorted(
        li.protocol_port for li in spec.listeners if li.protection is not None and li.protection.syn_flood
    )


def ruleset(spec: LoadBalancerSpec, mtu: int) -> str:
    """The ``nft -f`` script that makes the namespace's synproxy table match ``spec``."""
    lines = [f"table inet {TABLE} {{}}", f"delete table inet {TABLE}"]
    ports = protected_ports(spec)
    if not ports:
        return "\n".join(lines) + "\n"
    version = ipaddress.ip_address(spec.vip_address).version
    family = "ip" if version == 4 else "ip6"
    match = f"{family} daddr {spec.vip_address} tcp dport {{ {', '.join(map(str, ports))} }}"
    options = f"mss {mtu - _HEADERS[version]}"
    body = [
        "    chain raw {",
        "        type filter hook prerouting priority raw; policy accept;",
        f"        {match} tcp flags & (fin|syn|rst|ack) == syn counter notrack",
        "    }",
        "    chain input {",
        "        type filter hook input priority filter; policy accept;",
        f"        {match} ct state invalid,untracked counter synproxy {options}",
        f"        {match} ct state invalid counter drop",
        "    }",
    ]
    digest = hashlib.sha256("\n".join(body).encode()).hexdigest()[:16]
    return "\n".join([*lines, f"table inet {TABLE} {{", f'    comment "{digest}"', *body, "}"]) + "\n"


def _loaded_digest(netns: str) -> str | None:
    """The comment of the namespace's synproxy table (None: no table). Read from the text
    listing: nft 1.0.6 leaves comments out of its JSON."""
    if not nft.nft_table_exists(netns, "inet", TABLE):
        return None
    return _digest_of(nft.run(netns, ["nft", "list", "table", "inet", TABLE])) or ""


def _digest_of(script: str) -> str | None:
    for line in script.splitlines():
        if line.strip().startswith("comment "):
            return line.split('"')[1]
    return None


def apply(netns: str, spec: LoadBalancerSpec, mtu: int) -> None:
    """Make the synproxy of namespace ``netns`` protect exactly ``spec``'s protected listeners."""
    try:
        script = ruleset(spec, mtu)
        loaded = _loaded_digest(netns)
        wanted = _digest_of(script)
        if loaded != wanted:
            nft.nft_apply(netns, script)
        if wanted is not None:  # also when the table stayed: an earlier apply may have stopped here
            for key, value in CONNTRACK_SYSCTLS.items():
                nft.sysctl(netns, key, value)
    except nft.DatapathError as exc:
        raise Unavailable(f"SYN-flood protection not applied: {exc}") from exc


def parse_stat(text: str) -> dict[str, int]:
    """``/proc/net/stat/synproxy``: a header, then one row of hexadecimal counters per CPU."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not rows:
        return {}
    header = rows[0]
    totals = dict.fromkeys(header, 0)
    for row in rows[1:]:
        for key, value in zip(header, row, strict=False):
            totals[key] += int(value, 16)
    return totals


def _rule_counters(netns: str) -> dict[str, int]:
    listing = nft.run(netns, ["nft", "-j", "list", "table", "inet", TABLE], check=False)
    found = {"syn_seen": 0, "synproxied": 0, "dropped": 0}
    for item in json.loads(listing or "{}").get("nftables", []):
        rule = item.get("rule")
        if rule is None:
            continue
        exprs: list[dict[str, Any]] = rule.get("expr", [])
        packets = next((e["counter"]["packets"] for e in exprs if "counter" in e), 0)
        kinds = {key for e in exprs for key in e}
        key = "syn_seen" if "notrack" in kinds else "synproxied" if "synproxy" in kinds else "dropped"
        found[key] += packets
    return found


def counters(netns: str) -> SynproxyCounters:
    """The synproxy's counters in namespace ``netns`` (zeros where nothing is loaded)."""
    stat = parse_stat(nft.run(netns, ["cat", "/proc/net/stat/synproxy"], check=False))
    rules = _rule_counters(netns)
    return SynproxyCounters(
        **rules,
        syn_received=stat.get("syn_received", 0),
        cookie_valid=stat.get("cookie_valid", 0),
        cookie_invalid=stat.get("cookie_invalid", 0),
        cookie_retrans=stat.get("cookie_retrans", 0),
        conn_reopened=stat.get("conn_reopened", 0),
    )

"""Detection of abusive sources from a listener's own traffic, and the ban list's wire format.

HAProxy's stick table of a protected listener (:mod:`novacron.lbaas.protection`) holds, per
source, its request rate, error rate and connection rate over the listener's period and its
current connections. :func:`parse_table` reads ``show table <frontend>`` into :class:`SourceRow`s
and :func:`decide` is a pure function from those rows to the sources to ban, each with the
numbers that explain it:

- a request rate at ``ban_factor`` × ``rate_limit`` or more: the source kept flooding although
  it already got 429s above the limit;
- as many concurrent connections as ``connection_limit`` while fewer requests than that in the
  period were answered without error (``http_req_rate - http_err_rate``; a request that timed
  out with 408 is an error): it holds its connections open without finishing requests
  (slowloris). A client that is merely slow or buggy has errors but not its whole connection
  allowance, so errors alone never ban under this rule;
- with ``ban_error_ratio``: at least ``ban_error_min_requests`` requests in the period of which
  that share or more failed (a scanner probing paths gets 4xx answers by the hundred).

Each :class:`BanDecision` carries the source's figures from the table (requests, errors and their
ratio, open connections, connection rate) besides the rule, what it saw and its threshold, so an
event can say why; :meth:`BanDecision.explain` gives them as a dict. :func:`guard_samples` gives
the counters the agent reports with the load balancer's statistics: bans by listener and rule, the
sources banned now, and the namespace's synproxy counters (:mod:`novacron.lbaas.synproxy`).

Sources already banned are skipped, so the agent can call the seam's ``guard()`` every second
without extending bans. Bans themselves are entries of the listener's ban table whose ``gpt0`` is
the end of the ban (Unix seconds): :func:`table_key` is the key HAProxy's IPv6 table expects and
:func:`parse_bans` reads ``show table`` of the ban table back.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

from novacron.lbaas.exporter import LbSample
from novacron.lbaas.protection import ListenerProtection
from novacron.lbaas.synproxy import SynproxyCounters

#: what a ban was for: the flood of requests, connections held open, failed requests
BanKind = Literal["request_rate", "slow_connections", "error_ratio"]

_ENTRY = re.compile(r"^0x[0-9a-f]+: key=(\S+) (.*)$")
_FIELD = re.compile(r"(\w+)(?:\(\d+\))?=(-?\d+)")


@dataclass(frozen=True)
class SourceRow:
    """One source in a listener's stick table: rates are per ``rate_period_s``."""

    source: str
    conn_cur: int
    conn_rate: int
    http_req_rate: int
    http_err_rate: int

    @property
    def error_ratio(self) -> float:
        """The share of the source's requests in the period that failed (0 without requests)."""
        return min(1.0, self.http_err_rate / self.http_req_rate) if self.http_req_rate else 0.0


@dataclass(frozen=True)
class BanDecision:
    """Why a source is banned: the rule (``kind`` names it for metrics), what was seen, the
    threshold it reached, for how long, and all the source's figures over ``rate_period_s``."""

    listener_id: str
    source: str
    rule: str
    seen: float
    threshold: float
    ban_seconds: int
    kind: BanKind
    figures: SourceRow
    rate_period_s: int

    @property
    def reason(self) -> str:
        f = self.figures
        return (
            f"{self.rule}: {self.seen:g} reached {self.threshold:g} ({f.http_req_rate} requests, "
            f"{f.error_ratio:.0%} failed, {f.conn_cur} open connections, {f.conn_rate} connections "
            f"per {self.rate_period_s} s)"
        )

    def explain(self) -> dict[str, object]:
        """The decision as an event's payload: the rule, its numbers and the source's figures."""
        figures = asdict(self.figures)
        figures.pop("source")
        return {
            "listener_id": self.listener_id,
            "source": self.source,
            "rule": self.kind,
            "seen": self.seen,
            "threshold": self.threshold,
            "ban_seconds": self.ban_seconds,
            "period_s": self.rate_period_s,
            "error_ratio": round(self.figures.error_ratio, 4),
            **figures,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Ban:
    """A source on a listener's ban list, the seconds left of its ban and its end (Unix s)."""

    listener_id: str
    source: str
    seconds_left: int
    until: int
    reason: str = ""


def display_address(key: str) -> str:
    """A table key as users write the address: IPv4-mapped keys back to plain IPv4."""
    address = ipaddress.ip_address(key)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def table_key(source: str) -> str:
    """The key of ``source`` (an IPv4 or IPv6 address) in an IPv6 stick table."""
    address = ipaddress.ip_address(source)
    if isinstance(address, ipaddress.IPv4Address):
        return f"::ffff:{address}"
    return str(address)


def _entries(answer: str) -> list[tuple[str, dict[str, int]]]:
    entries = []
    for line in answer.splitlines():
        match = _ENTRY.match(line.strip())
        if match:
            fields = {k: int(v) for k, v in _FIELD.findall(match.group(2))}
            entries.append((display_address(match.group(1)), fields))
    return entries


def parse_table(answer: str) -> list[SourceRow]:
    """``show table <frontend>`` as rows (a TCP listener's rows have request rates of 0)."""
    return [
        SourceRow(
            source=source,
            conn_cur=fields.get("conn_cur", 0),
            conn_rate=fields.get("conn_rate", 0),
            http_req_rate=fields.get("http_req_rate", 0),
            http_err_rate=fields.get("http_err_rate", 0),
        )
        for source, fields in _entries(answer)
    ]


def parse_bans(listener_id: str, answer: str, now: float) -> list[Ban]:
    """``show table`` of a ban table: the bans still running at ``now`` (Unix seconds)."""
    bans = []
    for source, fields in _entries(answer):
        until = fields.get("gpt0", 0)
        if until - int(now) > 0:
            bans.append(Ban(listener_id, source, until - int(now), until))
    return bans


def decide(
    listener_id: str, protection: ListenerProtection, rows: list[SourceRow], banned: set[str]
) -> list[BanDecision]:
    """The sources of ``rows`` to ban under ``protection``'s limits (none in ``banned``)."""
    decisions = []
    for row in rows:
        if row.source in banned:
            continue
        decision = _judge(listener_id, protection, row)
        if decision is not None:
            decisions.append(decision)
    return decisions


def _judge(listener_id: str, protection: ListenerProtection, row: SourceRow) -> BanDecision | None:
    found = _rule_broken(protection, row)
    if found is None:
        return None
    kind, rule, seen, threshold = found
    return BanDecision(
        listener_id,
        row.source,
        rule,
        seen,
        threshold,
        protection.ban_seconds,
        kind,
        row,
        protection.rate_period_s,
    )


def _rule_broken(protection: ListenerProtection, row: SourceRow) -> tuple[BanKind, str, float, float] | None:
    """The first rule ``row`` breaks: its kind, its words, what was seen and the threshold."""
    period = protection.rate_period_s
    if protection.rate_limit is not None:
        threshold = protection.ban_factor * protection.rate_limit
        if row.http_req_rate >= threshold:
            return "request_rate", f"requests per {period} s", row.http_req_rate, threshold
    limit = protection.connection_limit
    answered = row.http_req_rate - row.http_err_rate
    if limit is not None and row.conn_cur >= limit and answered < row.conn_cur:
        return "slow_connections", "open connections without requests", row.conn_cur, limit
    ratio = protection.ban_error_ratio
    if (
        ratio is not None
        and row.http_req_rate >= protection.ban_error_min_requests
        and row.error_ratio >= ratio
    ):
        return "error_ratio", f"failed share of requests per {period} s", round(row.error_ratio, 4), ratio
    return None


def guard_samples(
    loadbalancer_id: str,
    ban_counts: Counter[tuple[str, BanKind]],
    bans: Iterable[Ban],
    syn: SynproxyCounters | None,
) -> list[LbSample]:
    """The guard's counters as statistics samples (``lbaas/exporter.py``'s form): ``ban_counts``
    (bans made since the instance started, by listener and rule), the sources banned now by
    listener, and the namespace's synproxy counters (None: no synproxy)."""
    lb = {"loadbalancer_id": loadbalancer_id}
    out: list[LbSample] = [
        ("novacron_lb_guard_bans_total", {**lb, "listener_id": listener_id, "rule": kind}, float(count))
        for (listener_id, kind), count in sorted(ban_counts.items())
    ]
    for listener_id, count in sorted(Counter(ban.listener_id for ban in bans).items()):
        out.append(("novacron_lb_guard_banned_sources", {**lb, "listener_id": listener_id}, float(count)))
    if syn is not None:
        out += [
            (f"novacron_lb_synproxy_{field}_total", dict(lb), float(value))
            for field, value in asdict(syn).items()
        ]
    return out

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
  allowance, so errors alone never ban.

Sources already banned are skipped, so the agent can call the seam's ``guard()`` every second
without extending bans. Bans themselves are entries of the listener's ban table whose ``gpt0`` is
the end of the ban (Unix seconds): :func:`table_key` is the key HAProxy's IPv6 table expects and
:func:`parse_bans` reads ``show table`` of the ban table back.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from novacron.lbaas.protection import ListenerProtection

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


@dataclass(frozen=True)
class BanDecision:
    """Why a source is banned: the rule, what was seen, the threshold it reached, for how long."""

    listener_id: str
    source: str
    rule: str
    seen: int
    threshold: float
    ban_seconds: int

    @property
    def reason(self) -> str:
        return f"{self.rule}: {self.seen} reached {self.threshold:g}"


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
    seconds = protection.ban_seconds
    if protection.rate_limit is not None:
        threshold = protection.ban_factor * protection.rate_limit
        if row.http_req_rate >= threshold:
            rule = f"requests per {protection.rate_period_s} s"
            return BanDecision(listener_id, row.source, rule, row.http_req_rate, threshold, seconds)
    limit = protection.connection_limit
    answered = row.http_req_rate - row.http_err_rate
    if limit is not None and row.conn_cur >= limit and answered < row.conn_cur:
        rule = "open connections without requests"
        return BanDecision(listener_id, row.source, rule, row.conn_cur, limit, seconds)
    return None

"""A listener's abuse protection: its settings and the HAProxy lines that enforce them.

:class:`ListenerProtection` is part of a listener's desired state. HAProxy does all the
enforcing, per source address, on every connection and request:

- a stick table in the listener's frontend tracks each source (``track-sc0 src`` at connection
  time) and stores its request rate, error rate, connection rate over ``rate_period_s`` and its
  current connections; a source over ``rate_limit`` requests in the period gets 429 Too Many
  Requests, one over ``connection_limit`` concurrent connections is refused at connection time;
- ``request_timeout_ms`` (HAProxy's ``timeout http-request``) closes a connection whose request
  headers have not all arrived in time (slowloris), with 408;
- ``deny_cidrs`` are refused at connection time, before anything else; ``allow_cidrs`` are then
  accepted without tracking, so no limit and no ban applies to them;
- banned sources are refused at connection time. Bans live in a second stick table per listener
  (the backend :func:`ban_table`): one entry per banned source whose ``gpt0`` holds the end of the
  ban (Unix seconds). Each connection looks its source up (``table_gpt0``, which neither creates
  nor refreshes an entry) and is refused while that end is in the future, so a ban ends by
  HAProxy's clock without anyone removing it; the table's own expiry reclaims the entry later.
  The seam adds and removes bans through the runtime API (``set table`` / ``clear table``): no
  reload.

Request limits, the slow-request timeout and 429s need an HTTP listener; connection limits,
lists and bans work on TCP listeners too.

``syn_flood`` is enforced below HAProxy, by the kernel of the load balancer's namespace: an
nftables synproxy answers the listener port's SYNs with SYN cookies and hands HAProxy only the
connections whose handshake completed (:mod:`novacron.lbaas.synproxy`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from novacron.errors import InvalidInput

#: the longest ban; also how long a ban entry stays in its table before HAProxy reclaims it
MAX_BAN_S = 24 * 3600
#: the variable the end of the source's ban is read into at connection time
BAN_VAR = "sess.nc_ban_until"
#: most addresses a table tracks (HAProxy evicts the oldest beyond)
TABLE_SIZE = "100k"
MAX_LIST = 1000


def _check_cidrs(field: str, cidrs: tuple[str, ...]) -> None:
    if len(cidrs) > MAX_LIST:
        raise InvalidInput(field, f"at most {MAX_LIST} networks")
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise InvalidInput(field, f"{cidr!r} is not an address or network (CIDR)") from None


@dataclass(frozen=True)
class ListenerProtection:
    """Per-source limits of one listener. ``rate_limit``: requests per source in
    ``rate_period_s`` seconds (None: no limit; over it, 429); ``connection_limit``: concurrent
    connections per source (None: no limit; over it, refused); ``request_timeout_ms``: time for a
    request's headers to arrive (None: HAProxy's default, the client timeout). ``ban_factor`` and
    ``ban_seconds`` steer the guard (:mod:`novacron.lbaas.guard`): a source at ``ban_factor`` ×
    a limit is banned for ``ban_seconds``; with ``ban_error_ratio``, so is a source that made at
    least ``ban_error_min_requests`` requests in the period of which that share or more failed
    (a scanner walking through paths; fewer requests are a buggy client). ``syn_flood``: the
    kernel's synproxy completes the listener's TCP handshakes before HAProxy sees them
    (:mod:`novacron.lbaas.synproxy`)."""

    rate_limit: int | None = None
    rate_period_s: int = 10
    connection_limit: int | None = None
    request_timeout_ms: int | None = None
    allow_cidrs: tuple[str, ...] = ()
    deny_cidrs: tuple[str, ...] = ()
    ban_factor: float = 2.0
    ban_seconds: int = 300
    ban_error_ratio: float | None = None
    ban_error_min_requests: int = 100
    syn_flood: bool = False

    def __post_init__(self) -> None:
        if self.rate_limit is not None and not 1 <= self.rate_limit <= 1_000_000:
            raise InvalidInput("rate_limit", "must be from 1 to 1000000 requests (or none)")
        if not 1 <= self.rate_period_s <= 3600:
            raise InvalidInput("rate_period_s", "must be from 1 to 3600 seconds")
        if self.connection_limit is not None and not 1 <= self.connection_limit <= 100_000:
            raise InvalidInput("connection_limit", "must be from 1 to 100000 connections (or none)")
        if self.request_timeout_ms is not None and not 100 <= self.request_timeout_ms <= 600_000:
            raise InvalidInput("request_timeout_ms", "must be from 100 ms to 10 minutes")
        _check_cidrs("allow_cidrs", self.allow_cidrs)
        _check_cidrs("deny_cidrs", self.deny_cidrs)
        if not 1.0 <= self.ban_factor <= 100.0:
            raise InvalidInput("ban_factor", "must be from 1 to 100")
        if not 1 <= self.ban_seconds <= MAX_BAN_S:
            raise InvalidInput("ban_seconds", f"must be from 1 to {MAX_BAN_S} seconds")
        if self.ban_error_ratio is not None and not 0.0 < self.ban_error_ratio <= 1.0:
            raise InvalidInput("ban_error_ratio", "must be a share of requests above 0 and up to 1 (or none)")
        if not 1 <= self.ban_error_min_requests <= 1_000_000:
            raise InvalidInput("ban_error_min_requests", "must be from 1 to 1000000 requests")

    def check_for(self, http: bool) -> None:
        """Refuse the HTTP-only settings on a TCP listener."""
        requests = (self.rate_limit, self.request_timeout_ms, self.ban_error_ratio)
        if not http and any(setting is not None for setting in requests):
            raise InvalidInput("protection", "request limits and timeouts need an HTTP listener")


def ban_table(frontend: str) -> str:
    """The backend holding the bans of the listener whose frontend is ``frontend`` (ids never
    start with ``_``, so it cannot clash with a pool's backend)."""
    return f"_bans_{frontend}"


def frontend_lines(frontend: str, protection: ListenerProtection, http: bool) -> list[str]:
    """The lines of the listener's frontend that enforce ``protection``, in the order HAProxy
    must evaluate them: deny list, allow list, bans, tracking, limits."""
    period = protection.rate_period_s
    store = f"conn_cur,conn_rate({period}s)"
    if http:
        store += f",http_req_rate({period}s),http_err_rate({period}s)"
    lines = [f"    stick-table type ipv6 size {TABLE_SIZE} expire {2 * period}s store {store}"]
    if protection.deny_cidrs:
        lines += [f"    acl nc_denied src {' '.join(protection.deny_cidrs)}"]
        lines += ["    tcp-request connection reject if nc_denied"]
    if protection.allow_cidrs:
        lines += [f"    acl nc_allowed src {' '.join(protection.allow_cidrs)}"]
        lines += ["    tcp-request connection accept if nc_allowed"]
    lines += [
        f"    tcp-request connection set-var({BAN_VAR}) src,table_gpt0({ban_table(frontend)})",
        f"    tcp-request connection reject if {{ date,neg,add({BAN_VAR}) gt 0 }}",
        "    tcp-request connection track-sc0 src",
    ]
    if protection.connection_limit is not None:
        lines.append(
            f"    tcp-request connection reject if {{ sc0_conn_cur gt {protection.connection_limit} }}"
        )
    if protection.rate_limit is not None:
        lines.append(
            f"    http-request deny deny_status 429 if {{ sc0_http_req_rate gt {protection.rate_limit} }}"
        )
    if protection.request_timeout_ms is not None:
        lines.append(f"    timeout http-request {protection.request_timeout_ms}ms")
    return lines


def ban_backend(frontend: str) -> list[str]:
    """The table of the listener's bans: source → end of its ban (``gpt0``, Unix seconds)."""
    return [
        f"backend {ban_table(frontend)}",
        f"    stick-table type ipv6 size {TABLE_SIZE} expire {MAX_BAN_S}s store gpt0",
    ]

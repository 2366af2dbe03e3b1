"""The client address: forwarded headers count only from a configured proxy (issue 11, finding 11)."""

from __future__ import annotations

import pytest

from novacron.identity.audit_limit import RefusalLimiter
from novacron.identity.clientaddr import parse_networks, resolve_client

PROXIES = parse_networks(["10.0.0.0/24", "fd00::/64"])


def _h(name: str, *values: str) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), v.encode()) for v in values]


@pytest.mark.parametrize(
    ("peer", "headers", "header", "expected"),
    [
        # no proxies configured, or a peer that is not one: the header is the client's own words
        ("192.0.2.5", _h("x-forwarded-for", "203.0.113.9"), "x-forwarded-for", "192.0.2.5"),
        ("127.0.0.1", _h("x-forwarded-for", "203.0.113.9"), "x-forwarded-for", "127.0.0.1"),
        # from a proxy: the rightmost address that is not a proxy; what the client wrote is ignored
        ("10.0.0.2", _h("x-forwarded-for", "6.6.6.6, 203.0.113.9"), "x-forwarded-for", "203.0.113.9"),
        (
            "10.0.0.2",
            _h("x-forwarded-for", "6.6.6.6", "203.0.113.9, 10.0.0.7"),
            "x-forwarded-for",
            "203.0.113.9",
        ),
        ("10.0.0.2", _h("x-forwarded-for", "203.0.113.9:5555"), "x-forwarded-for", "203.0.113.9"),
        ("10.0.0.2", [], "x-forwarded-for", "10.0.0.2"),  # the proxy itself
        ("10.0.0.2", _h("x-forwarded-for", "garbage"), "x-forwarded-for", "10.0.0.2"),
        ("10.0.0.2", _h("x-forwarded-for", "10.0.0.9"), "x-forwarded-for", "10.0.0.9"),  # all proxies
        # RFC 7239, IPv6, quoted, with a port; the header not configured is not read at all
        (
            "fd00::1",
            _h("forwarded", 'for=6.6.6.6, for="[2001:db8::17]:4711";proto=https'),
            "forwarded",
            "2001:db8::17",
        ),
        ("10.0.0.2", _h("forwarded", "for=203.0.113.9"), "x-forwarded-for", "10.0.0.2"),
        ("10.0.0.2", _h("forwarded", "for=unknown"), "forwarded", "10.0.0.2"),
        ("::ffff:10.0.0.2", _h("x-forwarded-for", "203.0.113.9"), "x-forwarded-for", "203.0.113.9"),
    ],
)
def test_resolve_client(peer: str, headers: list[tuple[bytes, bytes]], header: str, expected: str) -> None:
    proxies = PROXIES if peer != "192.0.2.5" else ()
    assert resolve_client(peer, headers, proxies, header) == expected


def test_refusal_limiter_bounds_and_reports_what_it_dropped() -> None:
    limiter = RefusalLimiter(per_key=3, anonymous=5, window_s=0.2)
    assert [limiter.admit("source:a", anonymous=True) for _ in range(5)] == [0, 0, 0, None, None]
    assert [limiter.admit(f"source:{i}", anonymous=True) for i in range(4)] == [0, 0, None, None]
    assert limiter.admit("user-1", anonymous=False) == 0  # a known user is not held by the anonymous cap
    import time

    time.sleep(0.25)
    # the next record of a key says how many were not written (its own, and the anonymous overflow)
    assert limiter.admit("source:a", anonymous=True) == 2 + 0
    assert limiter.admit("source:2", anonymous=True) == 1

"""A listener's abuse protection: its settings validated and round-tripped, rendered to lines
HAProxy accepts in the order it must apply them, and the guard's decisions over stick-table rows
(with the numbers that explain them)."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from novacron.errors import InvalidInput
from novacron.lbaas.guard import (
    Ban,
    SourceRow,
    decide,
    display_address,
    guard_samples,
    parse_bans,
    parse_table,
    table_key,
)
from novacron.lbaas.haproxy_config import ACME_MAP, Paths, render
from novacron.lbaas.model import ListenerSpec, LoadBalancerSpec, MemberSpec, PoolSpec
from novacron.lbaas.protection import ListenerProtection
from novacron.lbaas.synproxy import SynproxyCounters
from novacron.network.wire import from_dict, to_dict
from tests.conftest import require
from tests.unit.test_lb_config import haproxy_accepts

FULL = ListenerProtection(
    rate_limit=100,
    rate_period_s=10,
    connection_limit=20,
    request_timeout_ms=5000,
    allow_cidrs=("10.9.0.0/16", "2001:db8::/32"),
    deny_cidrs=("192.0.2.7",),
    ban_factor=2.0,
    ban_seconds=60,
)


def protected_spec(protection: ListenerProtection = FULL) -> LoadBalancerSpec:
    return LoadBalancerSpec(
        id="lb-1",
        vip_address="10.77.0.100",
        listeners=(
            ListenerSpec("web", "HTTP", 80, default_pool_id="http", protection=protection),
            ListenerSpec(
                "db", "TCP", 5432, default_pool_id="tcp", protection=ListenerProtection(connection_limit=4)
            ),
            ListenerSpec("open", "HTTP", 8080, default_pool_id="http"),
        ),
        pools=(
            PoolSpec("http", members=(MemberSpec("m1", "10.77.0.1", 80),)),
            PoolSpec("tcp", protocol="TCP", members=(MemberSpec("m2", "10.77.0.2", 5432),)),
        ),
    )


def frontend(config: str, name: str) -> list[str]:
    block = config.split(f"frontend {name}\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()]


def test_protection_renders_in_order_and_haproxy_accepts_it(tmp_path: Path) -> None:
    require(shutil.which("haproxy") is not None, "needs haproxy (scripts/setup.sh installs it)")
    config = render(protected_spec(), Paths(tmp_path, tmp_path / "certs"))
    (tmp_path / ACME_MAP).write_text("")
    checked = haproxy_accepts(config, tmp_path)
    assert checked.returncode == 0, checked.stderr + config
    web = frontend(config, "web")
    expected = [
        "stick-table type ipv6 size 100k expire 20s store conn_cur,conn_rate(10s),"
        "http_req_rate(10s),http_err_rate(10s)",
        "acl nc_denied src 192.0.2.7",
        "tcp-request connection reject if nc_denied",
        "acl nc_allowed src 10.9.0.0/16 2001:db8::/32",
        "tcp-request connection accept if nc_allowed",
        "tcp-request connection set-var(sess.nc_ban_until) src,table_gpt0(_bans_web)",
        "tcp-request connection reject if { date,neg,add(sess.nc_ban_until) gt 0 }",
        "tcp-request connection track-sc0 src",
        "tcp-request connection reject if { sc0_conn_cur gt 20 }",
        "http-request deny deny_status 429 if { sc0_http_req_rate gt 100 }",
        "timeout http-request 5000ms",
    ]
    positions = [web.index(line) for line in expected]
    assert positions == sorted(positions), web
    assert "backend _bans_web" in config and "backend _bans_db" in config
    assert "expire 86400s store gpt0" in config
    db = frontend(config, "db")
    assert "tcp-request connection reject if { sc0_conn_cur gt 4 }" in db
    assert not any("http" in line for line in db if not line.startswith("bind"))
    assert not any("track-sc0" in line for line in frontend(config, "open"))
    assert "_bans_open" not in config


def test_protection_round_trips_through_json() -> None:
    spec = protected_spec()
    assert from_dict(LoadBalancerSpec, to_dict(spec)) == spec


INVALID: list[tuple[str, Callable[[], object]]] = [
    ("rate_limit", lambda: ListenerProtection(rate_limit=0)),
    ("rate_period_s", lambda: ListenerProtection(rate_period_s=0)),
    ("connection_limit", lambda: ListenerProtection(connection_limit=0)),
    ("request_timeout_ms", lambda: ListenerProtection(request_timeout_ms=10)),
    ("allow_cidrs", lambda: ListenerProtection(allow_cidrs=("10.0.0.0/8 #",))),
    ("deny_cidrs", lambda: ListenerProtection(deny_cidrs=("not-an-address",))),
    ("ban_factor", lambda: ListenerProtection(ban_factor=0.5)),
    ("ban_seconds", lambda: ListenerProtection(ban_seconds=0)),
    ("ban_error_ratio", lambda: ListenerProtection(ban_error_ratio=1.5)),
    ("ban_error_min_requests", lambda: ListenerProtection(ban_error_min_requests=0)),
    (
        "protection",
        lambda: ListenerSpec("db", "TCP", 5432, protection=ListenerProtection(ban_error_ratio=0.5)),
    ),
    (
        "protection",
        lambda: ListenerSpec("db", "TCP", 5432, protection=ListenerProtection(rate_limit=10)),
    ),
]


@pytest.mark.parametrize(("field", "build"), INVALID, ids=[f for f, _ in INVALID])
def test_invalid_protection_is_refused_naming_the_field(field: str, build: Callable[[], object]) -> None:
    with pytest.raises(InvalidInput) as refused:
        build()
    assert refused.value.fields[0].field == field


SHOW_TABLE = """# table: web, type: ipv6, size:102400, used:3
0x55ee5d835258: key=::ffff:10.77.0.20 use=12 exp=19995 conn_rate(10000)=2400 conn_cur=12 http_req_rate(10000)=2390 http_err_rate(10000)=2100
0x55ee5d835259: key=::ffff:10.77.0.10 use=1 exp=19995 conn_rate(10000)=150 conn_cur=1 http_req_rate(10000)=150 http_err_rate(10000)=0
0x55ee5d83525a: key=2001:db8::5 use=20 exp=19995 conn_rate(10000)=40 conn_cur=20 http_req_rate(10000)=20 http_err_rate(10000)=20

"""  # noqa: E501


def test_show_table_parses_into_rows_with_plain_ipv4() -> None:
    rows = parse_table(SHOW_TABLE)
    assert rows[0] == SourceRow("10.77.0.20", 12, 2400, 2390, 2100)
    assert [r.source for r in rows] == ["10.77.0.20", "10.77.0.10", "2001:db8::5"]
    assert table_key("10.77.0.20") == "::ffff:10.77.0.20"
    assert table_key("2001:db8::5") == "2001:db8::5"
    assert display_address("::ffff:10.77.0.20") == "10.77.0.20"


def test_guard_bans_the_flood_and_the_slow_holder_with_their_numbers() -> None:
    decisions = decide("web", FULL, parse_table(SHOW_TABLE), banned=set())
    by_source = {d.source: d for d in decisions}
    assert set(by_source) == {"10.77.0.20", "2001:db8::5"}, decisions
    flood = by_source["10.77.0.20"]
    assert (flood.rule, flood.seen, flood.threshold, flood.ban_seconds) == (
        "requests per 10 s",
        2390,
        200.0,
        60,
    )
    assert flood.reason == (
        "requests per 10 s: 2390 reached 200 (2390 requests, 88% failed, 12 open connections, "
        "2400 connections per 10 s)"
    )
    assert flood.explain() == {
        "listener_id": "web",
        "source": "10.77.0.20",
        "rule": "request_rate",
        "seen": 2390,
        "threshold": 200.0,
        "ban_seconds": 60,
        "period_s": 10,
        "error_ratio": 0.8787,
        "conn_cur": 12,
        "conn_rate": 2400,
        "http_req_rate": 2390,
        "http_err_rate": 2100,
        "reason": flood.reason,
    }
    slow = by_source["2001:db8::5"]
    assert (slow.rule, slow.seen, slow.threshold) == ("open connections without requests", 20, 20)
    assert (slow.kind, slow.figures.conn_cur, slow.figures.error_ratio) == ("slow_connections", 20, 1.0)


def test_a_scanner_is_banned_by_its_error_ratio_a_buggy_client_is_not() -> None:
    protection = ListenerProtection(rate_limit=1000, ban_error_ratio=0.5, ban_error_min_requests=100)
    scanner = SourceRow("10.0.0.3", conn_cur=1, conn_rate=300, http_req_rate=300, http_err_rate=240)
    buggy = SourceRow("10.0.0.2", conn_cur=2, conn_rate=50, http_req_rate=50, http_err_rate=50)
    mostly_fine = SourceRow("10.0.0.4", conn_cur=1, conn_rate=400, http_req_rate=400, http_err_rate=100)
    [decision] = decide("web", protection, [scanner, buggy, mostly_fine], banned=set())
    assert (decision.source, decision.kind, decision.seen, decision.threshold) == (
        "10.0.0.3",
        "error_ratio",
        0.8,
        0.5,
    )
    assert decision.reason.startswith(
        "failed share of requests per 10 s: 0.8 reached 0.5 (300 requests, 80% failed"
    )


def test_the_guard_counters_are_samples_for_the_monitoring_store() -> None:
    [flood, slow] = decide("web", FULL, parse_table(SHOW_TABLE), banned=set())
    counts = Counter({("web", flood.kind): 2, ("db", slow.kind): 1})
    running = [Ban("web", "10.77.0.20", 5, 1000005), Ban("web", "10.77.0.21", 5, 1000005)]
    syn = SynproxyCounters(
        syn_seen=10, synproxied=8, dropped=1, syn_received=5, cookie_valid=3,
        cookie_invalid=2, cookie_retrans=0, conn_reopened=0,
    )  # fmt: skip
    samples = guard_samples("lb-1", counts, running, syn)
    lb = {"loadbalancer_id": "lb-1"}
    for sample in (
        ("novacron_lb_guard_bans_total", {**lb, "listener_id": "web", "rule": "request_rate"}, 2.0),
        ("novacron_lb_guard_bans_total", {**lb, "listener_id": "db", "rule": "slow_connections"}, 1.0),
        ("novacron_lb_guard_banned_sources", {**lb, "listener_id": "web"}, 2.0),
        ("novacron_lb_synproxy_syn_received_total", lb, 5.0),
        ("novacron_lb_synproxy_cookie_invalid_total", lb, 2.0),
    ):
        assert sample in samples, samples
    assert not [s for s in guard_samples("lb-1", Counter(), [], None) if "synproxy" in s[0]]


def test_guard_spares_the_legitimate_the_banned_and_the_merely_erroring() -> None:
    rows = parse_table(SHOW_TABLE)
    assert [d.source for d in decide("web", FULL, rows, banned={"10.77.0.20"})] == ["2001:db8::5"]
    # just under the factor: limited with 429s, not banned
    under = SourceRow("10.0.0.1", conn_cur=1, conn_rate=199, http_req_rate=199, http_err_rate=99)
    # every request fails, but few and with few connections: a buggy client, not an attack
    erring = SourceRow("10.0.0.2", conn_cur=2, conn_rate=50, http_req_rate=50, http_err_rate=50)
    assert decide("web", FULL, [under, erring], banned=set()) == []
    assert decide("web", ListenerProtection(), rows, banned=set()) == []


def test_ban_table_lists_only_running_bans_with_time_left() -> None:
    answer = (
        "# table: _bans_web, type: ipv6, size:102400, used:2\n"
        "0x7fd6f80465b8: key=::ffff:10.77.0.20 use=0 exp=86399995 gpt0=1000005\n"
        "0x7fd6f80465b9: key=::ffff:10.77.0.21 use=0 exp=86399995 gpt0=999990\n"
    )
    bans = parse_bans("web", answer, now=1000000.4)
    assert [(b.source, b.seconds_left, b.until) for b in bans] == [("10.77.0.20", 5, 1000005)]

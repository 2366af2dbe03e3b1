"""Global load balancing on a real PowerDNS: nearest healthy site by client address or EDNS
client subnet, failover when a site's listener goes away, weights, HTTP checks, and LUA
injection refused before anything reaches the server."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from novacron.errors import InvalidInput
from novacron.gslb import lua
from novacron.gslb.model import GlobalName, RegionRule, Site, ZoneSpec, name_in_zone
from tests.conftest import free_port
from tests.integration.gslblab import HEALTH_INTERVAL_S, HttpSite, TcpSite, dig, pdns, wait_for

ZONE = "gslb.example."
NAME = "app.gslb.example."
#: clients: 10/8 are in eu, 20/8 in us; this host's own queries come from 127.0.0.1 (eu)
REGIONS = (
    RegionRule("10.0.0.0/8", "eu"),
    RegionRule("20.0.0.0/8", "us"),
    RegionRule("127.0.0.0/8", "eu"),
    RegionRule("20.9.0.0/16", "eu"),  # a more specific rule wins
)


def zone(*sites: Site, serial: int = 1) -> ZoneSpec:
    return ZoneSpec(ZONE, (GlobalName(NAME, 5, tuple(sites)),), REGIONS, serial)


def test_nearest_healthy_site_and_failover() -> None:
    port = free_port()
    eu, us = TcpSite("127.0.0.21", port).up(), TcpSite("127.0.0.22", port).up()
    with pdns() as server:
        server.publish(zone(Site(eu.address, port, "eu"), Site(us.address, port, "us")))
        server.start()
        # the first answer starts the checks; both sites are up within a check interval
        dig(server, NAME)
        wait_for(lambda: dig(server, NAME, subnet="20.1.0.0/16") == [us.address], 5 * HEALTH_INTERVAL_S)
        assert dig(server, NAME, subnet="10.1.2.0/24", count=5) == [eu.address] * 5
        assert dig(server, NAME, subnet="20.1.2.0/24", count=5) == [us.address] * 5
        assert dig(server, NAME, subnet="20.9.1.0/24") == [eu.address]  # longest prefix
        assert dig(server, NAME, count=5) == [eu.address] * 5  # no ECS: the client's own address

        eu.down()
        took = wait_for(
            lambda: dig(server, NAME, subnet="10.1.2.0/24") == [us.address], 5 * HEALTH_INTERVAL_S
        )
        assert dig(server, NAME, count=5) == [us.address] * 5
        assert took <= 3 * HEALTH_INTERVAL_S + 1, took

        eu.up()
        wait_for(lambda: dig(server, NAME, subnet="10.1.2.0/24") == [eu.address], 5 * HEALTH_INTERVAL_S)
        # every site down: all of them are answered (rather than nothing)
        eu.down()
        us.down()
        wait_for(
            lambda: sorted(dig(server, NAME, subnet="10.1.2.0/24")) == [eu.address, us.address],
            5 * HEALTH_INTERVAL_S,
        )


def test_weights_and_a_republished_zone_without_restart() -> None:
    port = free_port()
    sites = [TcpSite(f"127.0.0.{n}", port).up() for n in (31, 32, 33)]
    heavy, light, other = sites
    try:
        with pdns() as server:
            server.publish(
                zone(
                    Site(heavy.address, port, "eu", 3),
                    Site(light.address, port, "eu", 1),
                    Site(other.address, port, "us", 9),
                )
            )
            server.start()
            dig(server, NAME)
            wait_for(
                lambda: len(set(dig(server, NAME, subnet="10.0.0.0/24", count=20))) == 2,
                5 * HEALTH_INTERVAL_S,
            )
            counts = Counter(dig(server, NAME, subnet="10.0.0.0/24", count=400))
            assert set(counts) == {heavy.address, light.address}  # the us site is never an eu answer
            share = counts[heavy.address] / 400
            assert 0.65 <= share <= 0.85, counts  # 3:1, expected 0.75

            # a publication is served at once, by the running server
            server.publish(zone(Site(light.address, port, "eu", 1), serial=2))
            wait_for(lambda: dig(server, NAME, subnet="10.0.0.0/24", count=10) == [light.address] * 10, 5.0)
    finally:
        for site in sites:
            site.down()


def test_http_check_and_ipv6() -> None:
    port = free_port()
    ok, failing = HttpSite("127.0.0.41", port), HttpSite("127.0.0.42", port)
    failing.status = 503
    v6 = TcpSite("::1", port).up()
    name_sites = (
        Site(failing.address, port, "eu", 1, "/health"),
        Site(ok.address, port, "us", 1, "/health"),
        Site("::1", port, "eu", 1),
    )
    try:
        with pdns() as server:
            server.publish(zone(*name_sites))
            server.start()
            dig(server, NAME)
            dig(server, NAME, "AAAA")
            # the eu site answers 503: eu clients get the us site
            wait_for(lambda: dig(server, NAME, subnet="10.0.0.0/24") == [ok.address], 5 * HEALTH_INTERVAL_S)
            failing.status = 200
            wait_for(
                lambda: dig(server, NAME, subnet="10.0.0.0/24") == [failing.address], 5 * HEALTH_INTERVAL_S
            )
            wait_for(lambda: dig(server, NAME, "AAAA") == ["::1"], 5 * HEALTH_INTERVAL_S)
    finally:
        ok.close()
        failing.close()
        v6.down()


@pytest.mark.parametrize(
    ("field", "build"),
    [
        (
            "sites.0.region",
            lambda: Site.checked("sites.0", "192.0.2.1", 80, "eu',os.execute('id')--", 1, None),
        ),
        (
            "sites.0.monitor_path",
            lambda: Site.checked("sites.0", "192.0.2.1", 80, "eu", 1, "/x'..os.exit()..'"),
        ),
        ("sites.0.monitor_path", lambda: Site.checked("sites.0", "192.0.2.1", 80, "eu", 1, '/a" A "1.2.3.4')),
        ("sites.0.address", lambda: Site.checked("sites.0", "192.0.2.1'}", 80, "eu", 1, None)),
        ("sites.0.address", lambda: Site.checked("sites.0", "224.0.0.1", 80, "eu", 1, None)),
        ("sites.0.port", lambda: Site.checked("sites.0", "192.0.2.1", 70000, "eu", 1, None)),
        ("sites.0.weight", lambda: Site.checked("sites.0", "192.0.2.1", 80, "eu", 0, None)),
        ("name", lambda: name_in_zone("name", "a'.gslb.example", ZONE)),
        ("name", lambda: name_in_zone("name", "app.other.example", ZONE)),
        ("name", lambda: name_in_zone("name", "x\n.gslb.example", ZONE)),
    ],
)
def test_injection_and_bad_values_are_refused(field: str, build: object) -> None:
    with pytest.raises(InvalidInput) as err:
        build()  # type: ignore[operator]
    assert err.value.fields[0].field == field


def test_the_renderer_refuses_what_validation_would_have() -> None:
    """Defence in depth: a site built without validation still cannot put code into the program."""
    evil = Site("192.0.2.1", 80, "eu' or os.execute('id') or '", 1)
    with pytest.raises(ValueError, match="refusing"):
        lua.records(GlobalName(NAME, 5, (evil,)), REGIONS)
    program = lua.program(GlobalName(NAME, 5, (Site("192.0.2.1", 80, "eu", 2, "/h"),)), 4, REGIONS) or ""
    assert '"' not in program and "\\" not in program
    assert "'http://app.gslb.example:80/h'" in program


def test_server_is_supervised_and_restarts_with_what_was_published() -> None:
    port = free_port()
    site = TcpSite("127.0.0.51", port).up()
    try:
        with pdns() as server:
            server.publish(zone(Site(site.address, port, "eu")))
            server.start()
            server.start()  # running: nothing happens
            engine = server._engine
            assert engine is not None and engine.pid is not None
            os.kill(engine.pid, signal.SIGKILL)  # the supervisor starts it again
            wait_for(lambda: engine.pid is not None and server.running(), 15.0)
            server.stop()
            assert not server.running()
            started = time.monotonic()
            server.start()
            assert time.monotonic() - started < 10
            wait_for(lambda: dig(server, NAME) == [site.address], 5 * HEALTH_INTERVAL_S)
            assert (server.directory.stat().st_mode & 0o777) == 0o700
            assert (server.database.stat().st_mode & 0o777) == 0o600
    finally:
        site.down()


def test_a_trailing_newline_does_not_slip_past_the_whitelists() -> None:
    with pytest.raises(ValueError):
        lua.lua_string("eu\n")
    with pytest.raises(InvalidInput):
        Site.checked("s", "192.0.2.1", 80, "eu\n", 1, None)
    with pytest.raises(InvalidInput):
        Site.checked("s", "192.0.2.1", 80, "eu", 1, "/h\n")


def test_a_platform_without_a_zone_says_so() -> None:
    from pathlib import Path

    from novacron.config import Settings
    from novacron.errors import Unavailable
    from novacron.gslb.service import zone_of

    with pytest.raises(Unavailable, match="NOVACRON_GSLB_ZONE"):
        zone_of(Settings(state_dir=Path("/nonexistent"), database_url="sqlite://"))
    assert zone_of(
        Settings(state_dir=Path("/x"), database_url="sqlite://", gslb_zone="GSLB.Example.com")
    ) == ("gslb.example.com.")

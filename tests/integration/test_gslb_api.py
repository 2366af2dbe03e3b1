"""/v1/gslb on a real PowerDNS: a tenant's global names are its own (another tenant gets 404 and
cannot change them), creates are idempotent, changes check If-Match and are audited, the region
table is the platform administrators', a change is answered by DNS at once, and input that would
reach a LUA record is refused with a 422 naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from novacron.db.models import GslbName
from novacron.gslb.powerdns import PowerDNSServer
from novacron.gslb.service import provider
from novacron.netguard import parse_networks
from tests.conftest import TENANT_PASSWORD, free_port, in_process_app
from tests.integration.gslblab import HEALTH_INTERVAL_S, TcpSite, dig, require_pdns, wait_for
from tests.integration.metrics_engines import login

ZONE = "gslb.example"
EGRESS_ALLOW = "127.0.0.0/8,192.0.2.0/24,198.51.100.0/24"


@dataclass
class World:
    client: TestClient
    dns: PowerDNSServer
    admin: dict[str, str]
    alpha: dict[str, str]
    alpha_viewer: dict[str, str]
    beta: dict[str, str]


def _user(client: TestClient, admin: dict[str, str], tenant_id: str, role: str) -> None:
    user = {"username": role, "password": TENANT_PASSWORD, "role": role, "tenant_id": tenant_id}
    assert client.post("/v1/users", json=user, headers=admin).status_code == 201


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require_pdns()
    state = tmp_path_factory.mktemp("gslb") / "state"
    overrides = {
        "gslb_zone": ZONE,
        "gslb_dns_port": free_port(),
        "gslb_health_interval_s": HEALTH_INTERVAL_S,
        # the tests' sites listen on loopback addresses and use documentation space
        "egress_allow": parse_networks(EGRESS_ALLOW),
    }
    with in_process_app(state, **overrides) as (client, password, _db):
        dns = cast(PowerDNSServer, provider(cast(FastAPI, client.app).state.ctx.settings))
        dns.start()  # what the node does at its start (gslb/sync.py)
        try:
            admin = login(client, "admin", password)
            heads = {}
            for tenant in ("alpha", "beta"):
                tenant_id = client.post("/v1/tenants", json={"name": tenant}, headers=admin).json()["id"]
                for role in ("member", "viewer"):
                    _user(client, admin, tenant_id, role)
                    heads[f"{tenant}-{role}"] = login(client, f"{role}@{tenant}", TENANT_PASSWORD)
            yield World(
                client, dns, admin, heads["alpha-member"], heads["alpha-viewer"], heads["beta-member"]
            )
        finally:
            dns.stop()


def _name(name: str, *sites: dict[str, Any], ttl: int = 5) -> dict[str, Any]:
    return {"name": name, "ttl": ttl, "sites": list(sites)}


def _site(address: str, port: int, region: str, **more: Any) -> dict[str, Any]:
    return {"address": address, "port": port, "region": region, **more}


def test_names_are_served_and_follow_changes(world: World) -> None:
    c, port = world.client, free_port()
    eu, us = TcpSite("127.0.0.61", port).up(), TcpSite("127.0.0.62", port).up()
    try:
        for cidr, region in (("10.0.0.0/8", "eu"), ("20.0.0.0/8", "us")):
            r = c.post("/v1/gslb/regions", json={"cidr": cidr, "region": region}, headers=world.admin)
            assert r.status_code == 201, r.text
        body = _name(
            "www.gslb.example", _site(eu.address, port, "eu"), _site(us.address, port, "us", weight=2)
        )
        r = c.post("/v1/gslb/names", json=body, headers={**world.alpha, "Idempotency-Key": "www-1"})
        assert r.status_code == 201, r.text
        made = r.json()
        assert made["name"] == "www.gslb.example."
        again = c.post("/v1/gslb/names", json=body, headers={**world.alpha, "Idempotency-Key": "www-1"})
        assert (again.status_code, again.json()["id"]) == (201, made["id"])

        fqdn = made["name"]
        dig(world.dns, fqdn)  # starts the checks
        wait_for(lambda: dig(world.dns, fqdn, subnet="20.1.0.0/16") == [us.address], 5 * HEALTH_INTERVAL_S)
        assert dig(world.dns, fqdn, subnet="10.1.0.0/16", count=3) == [eu.address] * 3

        # the eu site goes: its clients get us
        eu.down()
        wait_for(lambda: dig(world.dns, fqdn, subnet="10.1.0.0/16") == [us.address], 5 * HEALTH_INTERVAL_S)

        # replace the sites (a stale If-Match is refused), then DNS answers the new set at once
        body = _name("www.gslb.example", _site("127.0.0.63", port, "eu"))
        stale = c.put(f"/v1/gslb/names/{made['id']}", json=body, headers={**world.alpha, "If-Match": '"9"'})
        assert stale.status_code == 412
        etag = c.get(f"/v1/gslb/names/{made['id']}", headers=world.alpha).headers["etag"]
        r = c.put(f"/v1/gslb/names/{made['id']}", json=body, headers={**world.alpha, "If-Match": etag})
        assert r.status_code == 200, r.text
        wait_for(lambda: dig(world.dns, fqdn) == ["127.0.0.63"], 5.0)  # the only site, down: still answered

        r = c.delete(f"/v1/gslb/names/{made['id']}", headers={**world.alpha, "If-Match": r.headers["etag"]})
        assert r.status_code == 204
        assert dig(world.dns, fqdn) == []
        actions = {a["action"] for a in c.get("/v1/audit", headers=world.admin).json()["items"]}
        # (the audit's naming of two-level collections, as /v1/dr/runbooks: create is "gslb.names")
        assert {"gslb.names", "name.update", "name.delete"} <= actions, actions
    finally:
        eu.down()
        us.down()


def test_a_tenant_neither_sees_nor_changes_another_tenants_names(world: World) -> None:
    c = world.client
    r = c.post(
        "/v1/gslb/names", json=_name("api.gslb.example", _site("192.0.2.10", 443, "eu")), headers=world.alpha
    )
    assert r.status_code == 201, r.text
    made = r.json()
    for ref in (made["id"], "api.gslb.example."):
        assert c.get(f"/v1/gslb/names/{ref}", headers=world.beta).status_code == 404
    assert c.get("/v1/gslb/names", headers=world.beta).json()["items"] == []
    body = _name("api.gslb.example", _site("198.51.100.1", 443, "eu"))
    put = c.put(
        f"/v1/gslb/names/{made['id']}", json=body, headers={**world.beta, "If-Match": f'"{made["id"]}.v1"'}
    )
    assert put.status_code == 404
    assert (
        c.delete(
            f"/v1/gslb/names/{made['id']}", headers={**world.beta, "If-Match": f'"{made["id"]}.v1"'}
        ).status_code
        == 404
    )
    # the name is one DNS name: another tenant cannot take it
    assert c.post("/v1/gslb/names", json=body, headers=world.beta).status_code == 409
    # its own tenant: a viewer reads, only a member writes
    assert (
        c.get(f"/v1/gslb/names/{made['id']}", headers=world.alpha_viewer).json()["sites"][0]["address"]
        == "192.0.2.10"
    )
    assert (
        c.post(
            "/v1/gslb/names",
            json=_name("v.gslb.example", _site("192.0.2.1", 80, "eu")),
            headers=world.alpha_viewer,
        ).status_code
        == 403
    )
    assert [n["id"] for n in c.get("/v1/gslb/names", headers=world.admin).json()["items"]] == [made["id"]]


def test_the_region_table_is_the_administrators(world: World) -> None:
    c = world.client
    assert (
        c.post(
            "/v1/gslb/regions", json={"cidr": "30.0.0.0/8", "region": "ap"}, headers=world.alpha
        ).status_code
        == 403
    )
    assert c.get("/v1/gslb/regions", headers=world.beta).status_code == 200
    r = c.post("/v1/gslb/regions", json={"cidr": "30.0.0.1/8", "region": "ap"}, headers=world.admin)
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "body.cidr")
    r = c.post(
        "/v1/gslb/regions", json={"cidr": "30.0.0.0/8", "region": "ap'..os.exit()"}, headers=world.admin
    )
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "body.region")
    r = c.post("/v1/gslb/regions", json={"cidr": "30.0.0.0/8", "region": "ap"}, headers=world.admin)
    assert r.status_code == 201
    assert c.delete(f"/v1/gslb/regions/{r.json()['id']}", headers=world.alpha).status_code == 403
    assert c.delete(f"/v1/gslb/regions/{r.json()['id']}", headers=world.admin).status_code == 204


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            _name("x.gslb.example", _site("192.0.2.1", 80, "eu'); os.execute('reboot') --")),
            "body.sites.0.region",
        ),
        (
            _name(
                "x.gslb.example",
                _site("192.0.2.1", 80, "eu", monitor_path="/'..io.open('/etc/shadow'):read()..'"),
            ),
            "body.sites.0.monitor_path",
        ),
        (
            _name("x.gslb.example", _site("192.0.2.1", 80, "eu", monitor_path='/h" A "6.6.6.6')),
            "body.sites.0.monitor_path",
        ),
        (_name("x.gslb.example", _site("192.0.2.1'}", 80, "eu")), "body.sites.0.address"),
        # PowerDNS would connect there: the egress guard's refusals (a port-scan oracle otherwise)
        (_name("x.gslb.example", _site("10.0.0.5", 5432, "eu")), "body.sites.0.address"),
        (
            _name("x.gslb.example", _site("9.9.9.9", 80, "eu"), _site("169.254.169.254", 80, "eu")),
            "body.sites.1.address",
        ),
        (_name("x.gslb.example", _site("127.0.0.1", 8080, "eu")), "body.sites.0.address"),
        (
            _name("x.gslb.example", _site("192.0.2.1", 80, "eu", loadbalancer_id="lb-x'")),
            "body.sites.0.loadbalancer_id",
        ),
        (_name("x'.gslb.example", _site("192.0.2.1", 80, "eu")), "body.name"),
        (_name("x.gslb.example\n", _site("192.0.2.1", 80, "eu\n")), "body.sites.0.region"),
        (_name("www.elsewhere.example", _site("192.0.2.1", 80, "eu")), "body.name"),
        (_name("gslb.example", _site("192.0.2.1", 80, "eu")), "body.name"),
        (
            _name("x.gslb.example", _site("192.0.2.1", 80, "eu"), _site("192.0.2.1", 80, "us")),
            "body.sites.1.address",
        ),
    ],
)
def test_input_that_would_reach_lua_is_refused(world: World, body: dict[str, Any], field: str) -> None:
    r = world.client.post("/v1/gslb/names", json=body, headers=world.alpha)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == field


def test_the_sync_loop_serves_the_tables(world: World) -> None:
    from novacron.gslb.sync import DnsSync

    c = world.client
    body = _name("sync.gslb.example", _site("192.0.2.77", 80, "eu"))
    assert c.post("/v1/gslb/names", json=body, headers=world.alpha).status_code == 201
    ctx = cast(FastAPI, c.app).state.ctx
    world.dns.stop()
    assert world.dns.running() is False
    world.dns.database.unlink()  # even the zone database is gone: it is all in the tables
    sync = DnsSync(ctx.db, ctx.settings, interval_s=0.5).start()
    try:
        assert dig(world.dns, "sync.gslb.example.") == ["192.0.2.77"]  # only site, unchecked: answered
        # a change this node did not publish (another replica's): served within the interval
        with ctx.db.session() as session:
            row = session.scalars(select(GslbName).where(GslbName.name == "sync.gslb.example.")).one()
            row.sites = [{**row.sites[0], "address": "192.0.2.78"}]
        wait_for(lambda: dig(world.dns, "sync.gslb.example.") == ["192.0.2.78"], 5.0)
    finally:
        sync.stop()
    assert not world.dns.running()
    world.dns.start()  # for the module's other tests


def test_a_node_serves_its_names_and_stops_its_dns_with_it() -> None:
    """The wiring of server.py: a node with NOVACRON_GSLB_ZONE runs PowerDNS beside the API, serves
    what its tables held before it started, and stops PowerDNS when it stops."""
    from tests.conftest import destroy_server, make_server, tenant_user

    require_pdns()
    dns_port = free_port()
    env = {
        "NOVACRON_GSLB_ZONE": ZONE,
        "NOVACRON_GSLB_DNS_PORT": str(dns_port),
        "NOVACRON_EMBEDDED_AGENT": "0",
        "NOVACRON_EGRESS_ALLOW": EGRESS_ALLOW,
    }
    node = make_server(**env)
    node.start(timeout_s=90)
    try:
        admin = node.client()
        member, _project = tenant_user(admin, node, "gamma")
        r = member.post("/v1/gslb/names", json=_name("node.gslb.example", _site("192.0.2.99", 443, "eu")))
        assert r.status_code == 201, r.text
        dns = PowerDNSServer(node.state_dir / "gslb", "127.0.0.1", dns_port)
        assert dig(dns, "node.gslb.example.") == ["192.0.2.99"]
        node.stop()  # SIGTERM: PowerDNS goes with it
        wait_for(lambda: not dns.running(), 15.0)
        node.start(timeout_s=90)
        assert dig(dns, "node.gslb.example.") == ["192.0.2.99"]
    finally:
        destroy_server(node)
    assert not dns.running()

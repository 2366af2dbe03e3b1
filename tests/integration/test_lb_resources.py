"""/v1/loadbalancers in process: Octavia's resources, their status machine and their task.

A tenant creates a load balancer on its own subnet (idempotently), adds pools, listeners and
members; refusals are problem+json naming the field with nothing written; another tenant sees
404 both ways; the quota refuses the 6th; a change while one is in flight is a 409 naming the
task. The ``loadbalancer.apply`` and ``.delete`` tasks run with a stand-in agent that takes the
host operations from the real queue (``hostops.claim``/``complete``) and answers as the real one
does: applied with its member health, or refused with HAProxy's words, which rolls the change back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from novacron.compute import hostops
from novacron.compute.agentcalls import record_report
from novacron.context import Context
from novacron.db.base import Database
from novacron.db.models import VM, Event, Host, HostOperation, LbCertificate, Port
from novacron.lbaas import certstore
from novacron.lbaas.certificates import parse_bundle
from novacron.lbaas.challenges import reapply_serving
from novacron.lbaas.tasks import HANDLERS
from novacron.quota.defaults import ensure_tenant_defaults
from novacron.tasks.runner import TaskRunner
from tests.conftest import TENANT_PASSWORD, in_process_app
from tests.integration.metrics_engines import login
from tests.tlsca import TestCA

HOSTS = ("h-1", "h-2")
Answer = Callable[[dict[str, Any]], tuple[dict[str, Any] | None, str | None]]


@dataclass
class Tenant:
    headers: dict[str, str]
    project_id: str
    network_id: str
    subnet_id: str


@dataclass
class World:
    client: TestClient
    db: Database
    ctx: Context
    admin: dict[str, str]
    alpha: Tenant
    beta: Tenant
    ops: list[str] = field(default_factory=list)


def _tenant(client: TestClient, admin: dict[str, str], name: str, cidr: str) -> Tenant:
    tenant_id = client.post("/v1/tenants", json={"name": name}, headers=admin).json()["id"]
    project = client.post("/v1/projects", json={"name": "main", "tenant_id": tenant_id}, headers=admin)
    assert project.status_code == 201, project.text
    user = {"username": "ops", "password": TENANT_PASSWORD, "role": "member", "tenant_id": tenant_id}
    assert client.post("/v1/users", json=user, headers=admin).status_code == 201
    headers = login(client, f"ops@{name}", TENANT_PASSWORD)
    net = client.post("/v1/networks", json={"name": "web"}, headers=headers)
    assert net.status_code == 201, net.text
    sub = client.post("/v1/subnets", json={"network": "web", "name": "web4", "cidr": cidr}, headers=headers)
    assert sub.status_code == 201, sub.text
    return Tenant(headers, project.json()["id"], net.json()["id"], sub.json()["id"])


@contextmanager
def lb_world(tmp: Path, *, hosts: tuple[str, ...] = HOSTS, **overrides: Any) -> Iterator[World]:
    """An in-process control plane (``overrides``: Settings fields) with ``hosts`` and two
    tenants, each with a network and subnet."""
    with ExitStack() as stack:
        client, password, db = stack.enter_context(in_process_app(tmp / "state", **overrides))
        ensure_tenant_defaults(db, "")
        with db.session() as s:
            for n, host in enumerate(hosts, 1):
                s.add(
                    Host(
                        id=host, name=f"node-{n}", driver="simulated", accelerator="tcg", cpus=2, ram_mb=4096
                    )
                )
        admin = login(client, "admin", password)
        alpha = _tenant(client, admin, "alpha", "10.0.0.0/24")
        beta = _tenant(client, admin, "beta", "10.1.0.0/24")
        yield World(client, db, cast(FastAPI, client.app).state.ctx, admin, alpha, beta)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with lb_world(tmp_path_factory.mktemp("lbapi")) as made:
        yield made


def healthy(op: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """What an agent answers: an applied load balancer reports each member UP."""
    if op["op"] == "lb_apply":
        spec = op["payload"]["spec"]
        members = {f"{p['id']}/{m['id']}": "UP" for p in spec["pools"] for m in p["members"]}
        return {"applied": True, "members": members, "vrrp_state": None}, None
    return ({"removed": True} if op["op"] == "lb_remove" else {}), None


def refusing(op: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """An agent whose HAProxy refuses the configuration (``haproxy -c``'s words)."""
    if op["op"] == "lb_apply":
        return None, "haproxy -c: [ALERT] config : parsing [haproxy.cfg:12] : unknown keyword"
    return healthy(op)


def run_tasks(world: World, answer: Answer = healthy) -> None:
    """Run the load-balancer tasks to their end, the hosts' operations answered by ``answer``."""

    async def agent() -> None:
        while True:
            for host in HOSTS:
                for op in await asyncio.to_thread(hostops.claim, world.ctx, host):
                    world.ops.append(f"{host}:{op['op']}")
                    result, error = answer(op)
                    await asyncio.to_thread(hostops.complete, world.ctx, host, op["id"], result, error)
            await asyncio.sleep(0.02)

    async def main() -> None:
        runner = TaskRunner(world.ctx, HANDLERS)
        runner.bind_loop(asyncio.get_running_loop())
        loops = [asyncio.create_task(runner.run_forever(0.05)), asyncio.create_task(agent())]
        try:
            await runner.drain(60)
        finally:
            await runner.stop()
            for loop in loops:
                loop.cancel()

    asyncio.run(main())


def create_lb(world: World, who: Tenant, name: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "vip_subnet_id": who.subnet_id, **extra}
    r = world.client.post("/v1/loadbalancers", json=body, headers=who.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def get_lb(world: World, who: Tenant, lb_id: str) -> dict[str, Any]:
    r = world.client.get(f"/v1/loadbalancers/{lb_id}", headers=who.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def problem_fields(r: Any) -> list[str]:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return [e["field"] for e in r.json().get("errors", [])]


def test_create_is_idempotent_and_pending_until_its_task_ran(world: World) -> None:
    c, alpha = world.client, world.alpha
    key = {**alpha.headers, "Idempotency-Key": "lb-web"}
    body = {"name": "web", "vip_subnet_id": alpha.subnet_id, "vip_address": "10.0.0.50"}
    r = c.post("/v1/loadbalancers", json=body, headers=key)
    assert r.status_code == 201, r.text
    lb = r.json()
    assert (lb["provisioning_status"], lb["vip_address"], lb["amphorae"]) == (
        "PENDING_CREATE",
        "10.0.0.50",
        None,
    )
    again = c.post("/v1/loadbalancers", json=body, headers=key)
    assert (again.status_code, again.json()["id"]) == (201, lb["id"])
    assert [x["id"] for x in c.get("/v1/loadbalancers", headers=alpha.headers).json()["items"]] == [lb["id"]]
    # a change while the create is in flight names the task to wait for
    r = c.post(f"/v1/loadbalancers/{lb['id']}/pools", json={"protocol": "HTTP"}, headers=alpha.headers)
    assert r.status_code == 409 and lb["task_id"] in r.json()["detail"], r.text
    run_tasks(world)
    done = get_lb(world, alpha, lb["id"])
    assert (done["provisioning_status"], done["operating_status"]) == ("ACTIVE", "ONLINE")
    assert any(op.endswith(":lb_apply") for op in world.ops)
    legs = c.get(f"/v1/loadbalancers/{lb['id']}", headers=world.admin).json()["amphorae"]
    assert [(a["role"], a["address"]) for a in legs] == [("SINGLE", "10.0.0.50")]
    with world.db.session() as s:
        vip = s.get(Port, done["vip_port_id"])
        assert vip is not None and (vip.owner, vip.host_id) == ("lbaas", legs[0]["host_id"])
        sync = s.scalar(
            select(HostOperation)
            .where(HostOperation.op == "network_sync", HostOperation.host_id == legs[0]["host_id"])
            .order_by(HostOperation.created_at.desc())
            .limit(1)
        )
        assert sync is not None
        state = sync.payload["state"]
    # the leg's host gets the leg (the VIP on its network) and the network it needs
    assert [(leg["id"], leg["addresses"], leg["gateway"]) for leg in state["loadbalancers"]] == [
        (lb["id"], ["10.0.0.50/24"], "10.0.0.1")
    ]
    assert world.alpha.network_id in [n["network"]["id"] for n in state["networks"]]
    assert state["ports"] == []  # the VIP's port is no tap


def test_a_change_that_moves_no_leg_pushes_no_network_state(world: World) -> None:
    lb = create_lb(world, world.alpha, "quiet")
    world.ops.clear()
    run_tasks(world)
    assert [op.split(":")[1] for op in world.ops].count("network_sync") >= 1  # the new leg is plumbed
    world.ops.clear()
    base = f"/v1/loadbalancers/{lb['id']}"
    pool = world.client.post(base + "/pools", json={"protocol": "HTTP"}, headers=world.alpha.headers)
    assert pool.status_code == 201, pool.text
    run_tasks(world)
    member = {"address": "10.0.0.77", "protocol_port": 80}
    r = world.client.post(
        f"{base}/pools/{pool.json()['id']}/members", json=member, headers=world.alpha.headers
    )
    assert r.status_code == 201, r.text
    run_tasks(world)
    # listeners, pools and members live in HAProxy: the hosts' network state is left alone
    assert [op.split(":")[1] for op in world.ops] == ["lb_apply", "lb_apply"]
    assert get_lb(world, world.alpha, lb["id"])["provisioning_status"] == "ACTIVE"
    assert world.client.delete(base, headers=world.alpha.headers).status_code == 204
    run_tasks(world)


def test_refusals_name_the_field_and_write_nothing(world: World) -> None:
    c, alpha = world.client, world.alpha
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"name": "x"}, 422, "body.vip_subnet_id"),
        ({"name": "x", "vip_subnet_id": alpha.subnet_id, "topology": "TRIPLE"}, 422, "body.topology"),
        ({"name": "x", "vip_subnet_id": alpha.subnet_id, "vip_address": "10.9.0.1"}, 422, "body.vip_address"),
        (
            {"name": "x", "vip_subnet_id": alpha.subnet_id, "vip_address": "10.0.0.50"},
            409,
            "body.vip_address",
        ),
        ({"name": "x", "vip_subnet_id": world.beta.subnet_id}, 422, "body.vip_subnet_id"),
        ({"name": "web", "vip_subnet_id": alpha.subnet_id}, 409, "body.name"),
    ]
    before = len(c.get("/v1/loadbalancers", headers=alpha.headers).json()["items"])
    for body, status, field_name in cases:
        r = c.post("/v1/loadbalancers", json=body, headers=alpha.headers)
        assert r.status_code == status, (body, r.text)
        assert field_name in problem_fields(r), (body, r.text)
    assert len(c.get("/v1/loadbalancers", headers=alpha.headers).json()["items"]) == before


def test_the_tree_is_checked_whole_before_anything_is_written(world: World) -> None:
    c, alpha = world.client, world.alpha
    lb = create_lb(world, alpha, "api")
    run_tasks(world)
    base = f"/v1/loadbalancers/{lb['id']}"
    r = c.post(base + "/pools", json={"name": "tcp", "protocol": "TCP"}, headers=alpha.headers)
    assert r.status_code == 201, r.text
    pool = r.json()
    run_tasks(world)
    # an HTTP listener cannot send to a TCP pool: refused by the load balancer's own checks
    listener = {"protocol": "HTTP", "protocol_port": 80, "default_pool_id": pool["id"]}
    r = c.post(base + "/listeners", json=listener, headers=alpha.headers)
    assert r.status_code == 422 and "body.default_pool_id" in problem_fields(r), r.text
    r = c.post(
        base + "/listeners",
        json={**listener, "protocol": "TCP", "insert_headers": ["X-Forwarded-For"]},
        headers=alpha.headers,
    )
    assert r.status_code == 422 and "body.insert_headers" in problem_fields(r), r.text
    r = c.post(
        base + "/listeners",
        json={**listener, "protocol": "TCP", "connection_limit": 2**70},
        headers=alpha.headers,
    )
    assert r.status_code == 422 and "body.connection_limit" in problem_fields(r), r.text
    hm = {"type": "HTTP", "delay": 2, "timeout": 5}
    r = c.put(f"{base}/pools/{pool['id']}/healthmonitor", json=hm, headers=alpha.headers)
    assert r.status_code == 422 and "body.timeout" in problem_fields(r), r.text
    members = f"{base}/pools/{pool['id']}/members"
    for body, field_name in (
        ({"address": "10.1.0.7", "protocol_port": 80}, "body.address"),  # beta's subnet
        ({"address": "192.0.2.1", "protocol_port": 80}, "body.address"),
        ({"address": "10.0.0.7", "protocol_port": 80, "weight": 999}, "body.weight"),
        ({"protocol_port": 80}, "body.address"),
    ):
        r = c.post(members, json=body, headers=alpha.headers)
        assert r.status_code == 422 and field_name in problem_fields(r), (body, r.text)
    assert c.get(base + "/listeners", headers=alpha.headers).json()["items"] == []
    assert c.get(members, headers=alpha.headers).json()["items"] == []
    assert get_lb(world, alpha, lb["id"])["provisioning_status"] == "ACTIVE"
    # a valid tree goes through, realised by its task
    r = c.post(members, json={"address": "10.0.0.7", "protocol_port": 80}, headers=alpha.headers)
    assert r.status_code == 201, r.text
    run_tasks(world)
    r = c.post(base + "/listeners", json={**listener, "protocol": "TCP"}, headers=alpha.headers)
    assert r.status_code == 201, r.text
    run_tasks(world)
    got = get_lb(world, alpha, lb["id"])
    assert (got["provisioning_status"], [p["id"] for p in got["pools"]]) == ("ACTIVE", [pool["id"]])
    member = c.get(members, headers=alpha.headers).json()["items"][0]
    assert member["operating_status"] == "ONLINE"


def test_listener_limits_and_syn_flood_protection_reach_the_agent(world: World) -> None:
    c, alpha = world.client, world.alpha
    base = "/v1/loadbalancers/api"
    tcp = {"protocol": "TCP", "protocol_port": 2222}
    for body, field_name in (
        ({**tcp, "qos": {"bandwidth_kbit": 10}}, "body.qos.bandwidth_kbit"),
        ({**tcp, "qos": {"connection_rate": 0}}, "body.qos.connection_rate"),
        ({**tcp, "qos": {"burst": 1}}, "body.qos.burst"),
        ({**tcp, "protection": {"syn_flood": "sometimes"}}, "body.protection.syn_flood"),
    ):
        r = c.post(base + "/listeners", json=body, headers=alpha.headers)
        assert r.status_code == 422 and field_name in problem_fields(r), (body, r.text)
    shielded = {
        **tcp,
        "qos": {"bandwidth_kbit": 1000, "connection_rate": 20},
        "protection": {"syn_flood": True},
    }
    r = c.post(base + "/listeners", json=shielded, headers=alpha.headers)
    assert r.status_code == 201, r.text
    assert r.json()["qos"] == {"bandwidth_kbit": 1000, "connection_rate": 20}
    applied: list[dict[str, Any]] = []

    def keeping_specs(op: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        if op["op"] == "lb_apply":
            applied.append(op["payload"]["spec"])
        return healthy(op)

    run_tasks(world, keeping_specs)
    [listener] = [li for li in applied[-1]["listeners"] if li["protocol_port"] == 2222]
    assert listener["qos"] == {"bandwidth_kbit": 1000, "connection_rate": 20}
    assert listener["protection"]["syn_flood"] is True
    assert c.delete(f"{base}/listeners/{r.json()['id']}", headers=alpha.headers).status_code == 204
    run_tasks(world)


def test_another_tenant_sees_nothing(world: World) -> None:
    c, alpha, beta = world.client, world.alpha, world.beta
    lb_id = c.get("/v1/loadbalancers", params={"name": "web"}, headers=alpha.headers).json()["items"][0]["id"]
    assert c.get("/v1/loadbalancers", headers=beta.headers).json()["items"] == []
    for method, path, body in (
        ("GET", f"/v1/loadbalancers/{lb_id}", None),
        ("GET", "/v1/loadbalancers/web", None),
        ("PATCH", f"/v1/loadbalancers/{lb_id}", {"name": "mine"}),
        ("DELETE", f"/v1/loadbalancers/{lb_id}", None),
        ("GET", f"/v1/loadbalancers/{lb_id}/listeners", None),
        ("POST", f"/v1/loadbalancers/{lb_id}/pools", {"protocol": "TCP"}),
    ):
        r = c.request(method, path, json=body, headers=beta.headers)
        assert r.status_code == 404, (method, path, r.text)
    # nor can alpha use beta's things: beta's load balancer, subnet and addresses
    theirs = create_lb(world, beta, "theirs")
    assert c.get(f"/v1/loadbalancers/{theirs['id']}", headers=alpha.headers).status_code == 404
    run_tasks(world)


def test_patch_needs_the_current_etag(world: World) -> None:
    c, alpha = world.client, world.alpha
    lb = c.get("/v1/loadbalancers/web", headers=alpha.headers)
    etag = lb.headers["ETag"]
    r = c.patch(
        "/v1/loadbalancers/web", json={"description": "x"}, headers={**alpha.headers, "If-Match": '"stale"'}
    )
    assert r.status_code == 412, r.text
    r = c.patch(
        "/v1/loadbalancers/web", json={"description": "front"}, headers={**alpha.headers, "If-Match": etag}
    )
    assert r.status_code == 200 and r.json()["provisioning_status"] == "PENDING_UPDATE", r.text
    run_tasks(world)
    assert get_lb(world, alpha, "web")["description"] == "front"


def test_a_refused_change_rolls_back_to_the_applied_tree(world: World) -> None:
    c, alpha = world.client, world.alpha
    base = "/v1/loadbalancers/api"
    pool_id = c.get(base + "/pools", headers=alpha.headers).json()["items"][0]["id"]
    members = f"{base}/pools/{pool_id}/members"
    before = c.get(members, headers=alpha.headers).json()["items"]
    r = c.post(members, json={"address": "10.0.0.8", "protocol_port": 80, "weight": 5}, headers=alpha.headers)
    assert r.status_code == 201, r.text
    task_id = get_lb(world, alpha, "api")["task_id"]
    run_tasks(world, refusing)
    task = c.get(f"/v1/tasks/{task_id}", headers=alpha.headers).json()
    assert task["state"] == "failed" and "unknown keyword" in task["error"], task
    after = get_lb(world, alpha, "api")
    assert after["provisioning_status"] == "ACTIVE"
    assert [m["id"] for m in c.get(members, headers=alpha.headers).json()["items"]] == [
        m["id"] for m in before
    ]
    with world.db.session() as s:
        types = set(s.scalars(select(Event.type).where(Event.resource_id == after["id"])))
    assert "loadbalancer.update_failed" in types
    # a changed member gets its applied values back, under a new ETag
    one = f"{members}/{before[0]['id']}"
    etag = c.get(one, headers=alpha.headers).headers["ETag"]
    r = c.patch(one, json={"weight": 9, "drain": True}, headers={**alpha.headers, "If-Match": etag})
    assert r.status_code == 200, r.text
    run_tasks(world, refusing)
    restored = c.get(one, headers=alpha.headers)
    assert (restored.json()["weight"], restored.json()["drain"]) == (before[0]["weight"], False)
    assert restored.headers["ETag"] != etag
    r = c.patch(one, json={"weight": 2}, headers={**alpha.headers, "If-Match": etag})
    assert r.status_code == 412, r.text
    # a create that cannot be realised ends in ERROR, and its delete still works
    broken = create_lb(world, alpha, "broken")
    run_tasks(world, refusing)
    assert get_lb(world, alpha, broken["id"])["provisioning_status"] == "ERROR"
    assert c.delete(f"/v1/loadbalancers/{broken['id']}", headers=alpha.headers).status_code == 204
    run_tasks(world, refusing)
    assert c.get(f"/v1/loadbalancers/{broken['id']}", headers=alpha.headers).status_code == 404
    with world.db.session() as s:
        assert s.get(Port, broken["vip_port_id"]) is None


def test_delete_works_with_its_host_down(world: World) -> None:
    c, alpha = world.client, world.alpha
    lb = create_lb(world, alpha, "doomed")
    run_tasks(world)
    host_id = c.get(f"/v1/loadbalancers/{lb['id']}", headers=world.admin).json()["amphorae"][0]["host_id"]
    with world.db.session() as s:
        host = s.get(Host, host_id)
        assert host is not None
        host.state = "down"
    try:
        world.ops.clear()
        assert c.delete(f"/v1/loadbalancers/{lb['id']}", headers=alpha.headers).status_code == 204
        run_tasks(world)
        assert c.get(f"/v1/loadbalancers/{lb['id']}", headers=alpha.headers).status_code == 404
        assert f"{host_id}:lb_remove" not in world.ops
        # ACTIVE_STANDBY needs two hosts up: one is down now
        body = {"name": "pair", "vip_subnet_id": alpha.subnet_id, "topology": "ACTIVE_STANDBY"}
        r = c.post("/v1/loadbalancers", json=body, headers=alpha.headers)
        assert r.status_code == 409 and "2 distinct hosts" in r.json()["detail"], r.text
    finally:
        with world.db.session() as s:
            host = s.get(Host, host_id)
            assert host is not None
            host.state = "up"


def test_active_standby_runs_on_two_hosts(world: World) -> None:
    lb = create_lb(world, world.alpha, "pair", topology="ACTIVE_STANDBY")
    run_tasks(world)
    legs = world.client.get(f"/v1/loadbalancers/{lb['id']}", headers=world.admin).json()["amphorae"]
    assert sorted(a["role"] for a in legs) == ["BACKUP", "MASTER"]
    assert {a["host_id"] for a in legs} == set(HOSTS)
    assert get_lb(world, world.alpha, lb["id"])["provisioning_status"] == "ACTIVE"


def test_quota_refuses_the_sixth(world: World) -> None:
    c = world.client
    gamma = _tenant(c, world.admin, "gamma", "10.2.0.0/24")
    for n in range(5):
        create_lb(world, gamma, f"lb{n}")
    r = c.post(
        "/v1/loadbalancers", json={"name": "lb5", "vip_subnet_id": gamma.subnet_id}, headers=gamma.headers
    )
    assert r.status_code in (403, 409) and "load_balancers" in r.text, r.text
    run_tasks(world)


def test_member_health_from_the_agents_reports_rolls_up(world: World) -> None:
    c, alpha = world.client, world.alpha
    pool_id = c.get("/v1/loadbalancers/api/pools", headers=alpha.headers).json()["items"][0]["id"]
    members = c.get(f"/v1/loadbalancers/api/pools/{pool_id}/members", headers=alpha.headers).json()
    key = f"{pool_id}/{members['items'][0]['id']}"
    lb_id = get_lb(world, alpha, "api")["id"]
    host = c.get(f"/v1/loadbalancers/{lb_id}", headers=world.admin).json()["amphorae"][0]["host_id"]

    def report(host_id: str, state: str) -> None:
        """An agent's periodic report, as the agents router hands it over."""
        record_report(world.ctx, host_id, {}, {}, 0.0, None, {"lb_health": {lb_id: {key: state}}})

    report(next(h for h in HOSTS if h != host), "DOWN")  # a host without a leg of it: ignored
    assert get_lb(world, alpha, "api")["operating_status"] == "ONLINE"
    report(host, "DOWN")
    pool = c.get(f"/v1/loadbalancers/api/pools/{pool_id}", headers=alpha.headers).json()
    assert (get_lb(world, alpha, "api")["operating_status"], pool["operating_status"]) == (
        "DEGRADED",
        "ERROR",
    )
    report(host, "UP")
    assert get_lb(world, alpha, "api")["operating_status"] == "ONLINE"
    with world.db.session() as s:
        types = list(s.scalars(select(Event.type).where(Event.resource_id == lb_id).order_by(Event.seq)))
    assert types.count("loadbalancer.member.down") == 1 and types[-1] == "loadbalancer.member.up"


def test_the_guards_bans_are_explained_events_of_the_owner_only(world: World) -> None:
    c, alpha = world.client, world.alpha
    lb_id = get_lb(world, alpha, "api")["id"]
    host = c.get(f"/v1/loadbalancers/{lb_id}", headers=world.admin).json()["amphorae"][0]["host_id"]
    ban = {
        "listener_id": "l1",
        "source": "10.0.0.66",
        "rule": "http_req_rate",
        "seen": 400,
        "threshold": 200.0,
        "ban_seconds": 30,
    }
    bans = {"lb_bans": {lb_id: [ban, {"source": "not-an-address"}]}}
    record_report(world.ctx, next(h for h in HOSTS if h != host), {}, {}, 0.0, None, bans)  # no leg there
    record_report(world.ctx, host, {}, {}, 0.0, None, bans)
    seen = c.get("/v1/events", params={"types": "loadbalancer.source.banned"}, headers=alpha.headers).json()
    assert [(e["resource_id"], e["data"]["source"]) for e in seen["items"]] == [(lb_id, "10.0.0.66")]
    assert seen["items"][0]["data"]["reason"] == "http_req_rate: 400 reached 200"
    theirs = c.get("/v1/events", params={"types": "loadbalancer.source.banned"}, headers=world.beta.headers)
    assert theirs.json()["items"] == []


def test_l7_policies_are_resources_of_their_listener(world: World) -> None:
    c, alpha = world.client, world.alpha
    base = "/v1/loadbalancers/web"
    pool = c.post(base + "/pools", json={"name": "api", "protocol": "HTTP"}, headers=alpha.headers)
    assert pool.status_code == 201, pool.text
    run_tasks(world)
    listener = {"protocol": "HTTP", "protocol_port": 80, "default_pool_id": pool.json()["id"]}
    r = c.post(base + "/listeners", json=listener, headers=alpha.headers)
    assert r.status_code == 201, r.text
    run_tasks(world)
    policies = f"{base}/listeners/{r.json()['id']}/l7policies"
    rule = {"type": "PATH", "compare_type": "STARTS_WITH", "value": "/old"}
    r = c.post(policies, json={"action": "REDIRECT_TO_URL", "rules": [rule]}, headers=alpha.headers)
    assert r.status_code == 422 and "body.redirect_url" in problem_fields(r), r.text
    body = {"action": "REDIRECT_TO_URL", "redirect_url": "https://example.com/new", "rules": [rule]}
    r = c.post(policies, json=body, headers={**alpha.headers, "Idempotency-Key": "l7-1"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["rules"][0]["id"] and made["position"] == 1
    run_tasks(world)
    one = c.get(f"{policies}/{made['id']}", headers=alpha.headers)
    r = c.patch(
        f"{policies}/{made['id']}",
        json={"redirect_http_code": 301},
        headers={**alpha.headers, "If-Match": one.headers["ETag"]},
    )
    assert r.status_code == 200 and r.json()["redirect_http_code"] == 301, r.text
    run_tasks(world)
    r = c.patch(f"{policies}/{made['id']}", json={"position": None}, headers=alpha.headers)
    assert r.status_code == 422 and "body.position" in problem_fields(r), r.text
    assert [p["id"] for p in c.get(policies, headers=alpha.headers).json()["items"]] == [made["id"]]
    assert c.delete(f"{policies}/{made['id']}", headers=alpha.headers).status_code == 204
    run_tasks(world)
    assert c.get(policies, headers=alpha.headers).json()["items"] == []
    assert c.get(f"{policies}/{made['id']}", headers=alpha.headers).status_code == 404
    assert c.get(policies, headers=world.beta.headers).status_code == 404


def test_a_member_named_by_vm_takes_its_port_address(world: World) -> None:
    c, alpha, beta = world.client, world.alpha, world.beta
    for who, name, ip in ((alpha, "app", "10.0.0.30"), (beta, "spy", "10.1.0.30")):
        body = {"network": who.network_id, "project_id": who.project_id, "fixed_ips": [{"ip": ip}]}
        port = c.post("/v1/ports", json=body, headers=who.headers)
        assert port.status_code == 201, port.text
        with world.db.session() as s:
            tenant_id = c.get(f"/v1/projects/{who.project_id}", headers=who.headers).json()["tenant_id"]
            s.add(VM(id=f"vm-{name}", name=name, project_id=who.project_id, tenant_id=tenant_id,
                     host_id=HOSTS[0], vcpus=1, ram_mb=128, disk_gb=1))  # fmt: skip
            s.flush()
            row = s.get(Port, port.json()["id"])
            assert row is not None
            row.vm_id = f"vm-{name}"
    pool_id = c.get("/v1/loadbalancers/api/pools", headers=alpha.headers).json()["items"][0]["id"]
    members = f"/v1/loadbalancers/api/pools/{pool_id}/members"
    r = c.post(members, json={"vm_id": "vm-spy", "protocol_port": 80}, headers=alpha.headers)
    assert r.status_code == 422 and "body.vm_id" in problem_fields(r), r.text
    r = c.post(
        members, json={"vm_id": "app", "network": "nowhere", "protocol_port": 80}, headers=alpha.headers
    )
    assert r.status_code == 422 and "body.network" in problem_fields(r), r.text
    r = c.post(members, json={"vm_id": "app", "network": "web", "protocol_port": 80}, headers=alpha.headers)
    assert r.status_code == 201, r.text
    assert (r.json()["address"], r.json()["vm_id"], r.json()["subnet_id"]) == (
        "10.0.0.30",
        "vm-app",
        alpha.subnet_id,
    )
    run_tasks(world)


def test_tls_listeners_serve_only_their_tenants_certificates(world: World) -> None:
    c, alpha, beta = world.client, world.alpha, world.beta
    ca = TestCA.create()
    for who, name in ((alpha, "shop"), (beta, "theirs")):
        body = {"name": name, "certificate": ca.bundle([f"{name}.example.com"])}
        assert c.post("/v1/certificates", json=body, headers=who.headers).status_code == 201
    pool_id = c.get("/v1/loadbalancers/web/pools", params={"name": "api"}, headers=alpha.headers).json()
    tls = {"protocol": "TERMINATED_HTTPS", "protocol_port": 443, "default_pool_id": pool_id["items"][0]["id"]}
    for body, field_name in (
        ({**tls, "default_tls_container_ref": "theirs"}, "body.default_tls_container_ref"),
        (
            {**tls, "default_tls_container_ref": "shop", "sni_container_refs": ["theirs"]},
            "body.sni_container_refs.0",
        ),
        (tls, "body.default_tls_container_ref"),  # TERMINATED_HTTPS needs one
    ):
        r = c.post("/v1/loadbalancers/web/listeners", json=body, headers=alpha.headers)
        assert r.status_code == 422 and field_name in problem_fields(r), (body, r.text)
    r = c.post(
        "/v1/loadbalancers/web/listeners",
        json={**tls, "default_tls_container_ref": "shop"},
        headers=alpha.headers,
    )
    assert r.status_code == 201, r.text
    cert_id = c.get("/v1/certificates/shop", headers=alpha.headers).json()["id"]
    assert r.json()["default_tls_container_ref"] == cert_id
    handed: list[dict[str, Any]] = []

    def keeping_secrets(op: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        if op["op"] == "lb_apply":
            handed.append(op["payload"]["secrets"])
        return healthy(op)

    run_tasks(world, keeping_secrets)
    assert get_lb(world, alpha, "web")["provisioning_status"] == "ACTIVE"
    assert handed and "BEGIN CERTIFICATE" in handed[-1]["certificates"][cert_id]
    assert "PRIVATE KEY" in handed[-1]["certificates"][cert_id]
    with world.db.session() as s:  # the key never waits in the database in clear
        payloads = [
            str(op.payload) for op in s.scalars(select(HostOperation).where(HostOperation.op == "lb_apply"))
        ]
    assert not any("PRIVATE KEY" in p for p in payloads)
    r = c.delete("/v1/certificates/shop", headers=alpha.headers)
    assert r.status_code == 409 and "load balancer web" in r.json()["detail"], r.text

    # a renewed certificate is re-applied where it serves: the agent is handed the new bundle
    renewed = ca.bundle(["shop.example.com"])
    with world.db.session() as s:
        row = s.get(LbCertificate, cert_id)
        assert row is not None
        certstore.install(row, parse_bundle(renewed), world.ctx.settings)
        reapply_serving(s, row)
    assert get_lb(world, alpha, "web")["provisioning_status"] == "PENDING_UPDATE"
    run_tasks(world, keeping_secrets)
    assert get_lb(world, alpha, "web")["provisioning_status"] == "ACTIVE"
    assert handed[-1]["certificates"][cert_id].split("-----BEGIN")[1] == renewed.split("-----BEGIN")[1]


def test_a_viewer_reads_but_does_not_write(world: World) -> None:
    c = world.client
    tenant_id = c.get("/v1/loadbalancers/web", headers=world.alpha.headers).json()["tenant_id"]
    user = {"username": "looker", "password": TENANT_PASSWORD, "role": "viewer", "tenant_id": tenant_id}
    assert c.post("/v1/users", json=user, headers=world.admin).status_code == 201
    viewer = login(c, "looker@alpha", TENANT_PASSWORD)
    assert c.get("/v1/loadbalancers/web", headers=viewer).status_code == 200
    body = {"name": "nope", "vip_subnet_id": world.alpha.subnet_id}
    assert c.post("/v1/loadbalancers", json=body, headers=viewer).status_code == 403
    assert c.delete("/v1/loadbalancers/web", headers=viewer).status_code == 403

"""Quotas, reservations, budgets and the policy engine through a real ``novacron-server``.

Real parts: the server process, its API, task runner, placement claims, the SQLite database (and
PostgreSQL for the concurrent creates), the quota controller. SCALE SIMULATION: the embedded agent
runs the simulated compute driver (``NOVACRON_COMPUTE_DRIVER=simulated``): quotas, reservations and
budgets are control-plane logic, and booting dozens of real guests under TCG on this 2-core machine
would take many minutes and measure QEMU instead. VM creates, placement and deletes go through the
same code as with QEMU; only the hypervisor calls are simulated.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import Guest, Server, destroy_server, import_guest_image, make_server, wait_task

PASSWORD = "correct-horse-battery-9"
SIM = {"NOVACRON_COMPUTE_DRIVER": "simulated", "NOVACRON_RESERVATION_TICK_S": "1"}


def _server(**env: str) -> Iterator[Server]:
    srv = make_server(**{**SIM, **env})
    srv.start(timeout_s=60)
    try:
        yield srv
    finally:
        destroy_server(srv)


@pytest.fixture
def sim_server() -> Iterator[Server]:
    yield from _server()


def _tenant(
    admin: httpx.Client, server: Server, name: str, projects: tuple[str, ...] = ("main",)
) -> dict[str, Any]:
    tenant = admin.post("/v1/tenants", json={"name": name}).json()
    ids = {}
    for p in projects:
        r = admin.post("/v1/projects", json={"name": p, "tenant_id": tenant["id"]})
        assert r.status_code == 201, r.text
        ids[p] = r.json()["id"]
    users = {}
    for role in ("member", "tenant-admin"):
        username = f"{name}-{role}"
        r = admin.post(
            "/v1/users",
            json={"username": username, "password": PASSWORD, "role": role, "tenant_id": tenant["id"]},
        )
        assert r.status_code == 201, r.text
        users[role] = server.client(server.token(username, PASSWORD, name))
    return {"id": tenant["id"], "projects": ids, **users}


def _set_limits(
    client: httpx.Client, params: dict[str, str], limits: dict[str, int | None]
) -> dict[str, Any]:
    r = client.get("/v1/quota", params=params)
    assert r.status_code == 200, r.text
    node = r.json()
    r = client.patch(
        f"/v1/quota/nodes/{node['id']}", json={"limits": limits}, headers={"If-Match": r.headers["ETag"]}
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _used(client: httpx.Client, params: dict[str, str], resource: str) -> int:
    node = client.get("/v1/quota", params=params).json()
    return next((r["used"] for r in node["resources"] if r["resource"] == resource), 0)


def _vm(client: httpx.Client, name: str, project: str, flavor: str = "tiny", **extra: Any) -> httpx.Response:
    body = {"name": name, "image": "test-guest", "flavor": flavor, "project_id": project, **extra}
    return client.post("/v1/vms", json=body, timeout=120)


@pytest.fixture(params=["sqlite", "postgres"])
def creates_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    env = {}
    if request.param == "postgres":
        pg = request.getfixturevalue("postgres")
        env["NOVACRON_DATABASE_URL"] = pg.create_database(f"quota_{secrets.token_hex(4)}")
    yield from _server(**env)


def test_hundred_concurrent_creates_against_a_quota_of_ten(creates_server: Server, guest: Guest) -> None:
    server = creates_server
    with server.client() as admin:
        import_guest_image(admin, guest)
        t = _tenant(admin, server, "acme")
        project = t["projects"]["main"]
        # the tenant admin sets its project's limit (the tenant node itself is the platform's)
        node = _set_limits(t["tenant-admin"], {"project_id": project}, {"vms": 10})
        assert node["id"] == f"project:{project}"
        r = t["tenant-admin"].patch(f"/v1/quota/nodes/tenant:{t['id']}", json={"limits": {"vms": 100}})
        assert r.status_code == 403, r.text
        _set_limits(admin, {"tenant_id": t["id"]}, {"vms": 50})
        token = server.token("acme-member", PASSWORD, "acme")

        def create(i: int) -> httpx.Response:
            with server.client(token) as own:
                return _vm(own, f"vm-{i:03d}", project)

        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(create, range(100)))
        codes = Counter(r.status_code for r in answers)
        assert codes == {202: 10, 403: 90}, codes
        refusal = next(r for r in answers if r.status_code == 403)
        assert refusal.headers["content-type"].startswith("application/problem+json")
        policy = refusal.json()["policy"]
        assert policy["resource"] == "vms" and policy["limit"] == 10 and policy["used"] == 10, policy
        assert policy["node"] == f"project:{project}" and "Quota exceeded" in refusal.json()["detail"]

        accepted = [r.json() for r in answers if r.status_code == 202]
        for a in accepted:
            assert wait_task(admin, a["task_id"], timeout_s=300)["state"] == "succeeded"
        member = t["member"]
        assert _used(member, {"project_id": project}, "vms") == 10
        assert _used(admin, {"tenant_id": t["id"]}, "vms") == 10
        assert _used(member, {"project_id": project}, "vcpus") == 10  # tiny: 1 vCPU each
        assert len(member.get("/v1/vms", params={"project_id": project}).json()["items"]) == 10

        # delete releases at once (before its task has even run), so the next create fits
        r = member.delete(f"/v1/vms/{accepted[0]['vm']['id']}")
        assert r.status_code == 202, r.text
        assert _used(member, {"project_id": project}, "vms") == 9
        assert _vm(member, "after-delete", project).status_code == 202
        assert _vm(member, "one-too-many", project).status_code == 403
        # the user node of the member counts the same VMs: parent = sum of children
        bars = member.get("/v1/quota/nodes", params={"parent_id": f"project:{project}"}).json()["items"]
        assert sum(next(x["used"] for x in b["resources"] if x["resource"] == "vms") for b in bars) == 10
        wait_task(admin, r.json()["task_id"], timeout_s=120)
        found = admin.post("/v1/quota/reconcile", json={"repair": False}).json()
        assert not found["drift"], found


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


def _host(admin: httpx.Client) -> dict[str, Any]:
    [host] = admin.get("/v1/hosts").json()["items"]
    return dict(host)


def _placed(admin: httpx.Client, accepted: httpx.Response) -> dict[str, Any]:
    assert accepted.status_code == 202, accepted.text
    task = wait_task(admin, accepted.json()["task_id"], timeout_s=120)
    vm = admin.get(f"/v1/vms/{accepted.json()['vm']['id']}").json()
    return {"task": task, "vm": vm}


def test_reservation_blocks_other_projects_during_its_window_only(sim_server: Server, guest: Guest) -> None:
    server = sim_server
    with server.client() as admin:
        import_guest_image(admin, guest)
        a = _tenant(admin, server, "alpha")
        b = _tenant(admin, server, "beta")
        pa, pb = a["projects"]["main"], b["projects"]["main"]
        host = _host(admin)
        # the simulated host has 64 CPUs: a ratio of 4/64 leaves room for exactly four 1-vCPU VMs
        r = admin.patch(f"/v1/hosts/{host['id']}", json={"cpu_allocation_ratio": 4 / 64})
        assert r.status_code == 200, r.text
        now = datetime.now(UTC)

        # a booking for later does not block anyone now
        later = a["member"].post(
            "/v1/reservations",
            json={
                "name": "later",
                "vcpus": 3,
                "ram_mb": 512,
                "starts_at": _iso(now + timedelta(hours=1)),
                "ends_at": _iso(now + timedelta(hours=2)),
                "project_id": pa,
            },
        )
        assert later.status_code == 201 and later.json()["status"] == "pending", later.text
        early = [_placed(admin, _vm(b["member"], f"early-{i}", pb)) for i in range(2)]
        assert all(p["task"]["state"] == "succeeded" for p in early), early
        for p in early:
            wait_task(admin, b["member"].delete(f"/v1/vms/{p['vm']['id']}").json()["task_id"])

        # a booking whose window is open now: 3 of the 4 vCPU are kept for alpha
        window = a["member"].post(
            "/v1/reservations",
            json={
                "name": "now",
                "vcpus": 3,
                "ram_mb": 512,
                "starts_at": _iso(now - timedelta(seconds=1)),
                "ends_at": _iso(datetime.now(UTC) + timedelta(seconds=45)),
                "project_id": pa,
            },
            headers={"Idempotency-Key": "book-now"},
        )
        assert window.status_code == 201 and window.json()["status"] == "active", window.text
        rid = window.json()["id"]
        assert admin.get(f"/v1/hosts/{host['id']}").json()["vcpus_used"] == 0
        # beta gets the one free vCPU, then nothing
        assert _placed(admin, _vm(b["member"], "b-1", pb))["task"]["state"] == "succeeded"
        blocked = _placed(admin, _vm(b["member"], "b-2", pb))
        assert blocked["task"]["state"] == "failed" and "No host can take this VM" in blocked["vm"]["error"]
        # alpha's VMs land in its reservation although the host is otherwise full
        mine = [_placed(admin, _vm(a["member"], f"a-{i}", pa)) for i in range(2)]
        assert all(p["task"]["state"] == "succeeded" for p in mine), mine
        res = a["member"].get(f"/v1/reservations/{rid}").json()
        assert res["vcpus_used"] == 2, res
        # beta cannot see alpha's booking; a conflicting booking is refused with the reason
        assert b["member"].get(f"/v1/reservations/{rid}").status_code == 404
        clash = b["member"].post(
            "/v1/reservations",
            json={
                "name": "clash",
                "vcpus": 2,
                "ram_mb": 256,
                "starts_at": _iso(datetime.now(UTC)),
                "ends_at": _iso(datetime.now(UTC) + timedelta(minutes=30)),
                "project_id": pb,
            },
        )
        assert clash.status_code == 409 and "booked up in that window" in clash.json()["detail"], clash.text
        # ... without alpha's booking in it (issue 11 finding 16's sibling): only admins get amounts
        assert "booking(s)" not in clash.text and "3 vCPU" not in clash.text
        r = admin.post("/v1/reservations", json={**json.loads(clash.request.content), "name": "clash-admin"})
        assert r.status_code == 409 and "1 booking(s) hold 3 vCPU" in r.json()["detail"], r.text

        # the window closes: the unused vCPU is everyone's again, alpha's VMs keep running
        deadline = time.monotonic() + 90
        while a["member"].get(f"/v1/reservations/{rid}").json()["status"] != "expired":
            assert time.monotonic() < deadline, "the reservation did not expire"
            time.sleep(1)
        assert _placed(admin, _vm(b["member"], "b-3", pb))["task"]["state"] == "succeeded"
        for p in mine:
            assert admin.get(f"/v1/vms/{p['vm']['id']}").json()["state"] == "running"
        assert admin.get(f"/v1/hosts/{host['id']}").json()["vcpus_used"] == 4
        listed = a["member"].get("/v1/reservations").json()["items"]
        assert {r["name"]: r["status"] for r in listed} == {"later": "pending", "now": "expired"}
        cancelled = a["member"].delete(f"/v1/reservations/{later.json()['id']}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def _audit(admin: httpx.Client, actor: str) -> list[dict[str, Any]]:
    items = admin.get("/v1/audit", params={"actor": actor, "action": "vm.create"}).json()["items"]
    return [dict(i) for i in items]


def test_budget_refusal_override_and_policy_decisions_in_the_audit_log(
    sim_server: Server, guest: Guest
) -> None:
    server = sim_server
    with server.client() as admin:
        import_guest_image(admin, guest)
        t = _tenant(admin, server, "gamma")
        project = t["projects"]["main"]
        member, tadmin = t["member"], t["tenant-admin"]
        assert admin.put("/v1/prices/vcpus", json={"per_hour": 3600}).status_code == 200  # 1 per vCPU-second
        assert member.put("/v1/prices/vcpus", json={"per_hour": 0}).status_code == 403
        admin.post("/v1/usage/meter")  # starts the metering clock
        first = _placed(admin, _vm(member, "first", project))
        assert first["task"]["state"] == "succeeded"
        time.sleep(3)
        metered = admin.post("/v1/usage/meter").json()
        assert metered["rows"] >= 1, metered
        month = datetime.now(UTC).strftime("%Y-%m")
        report = member.get("/v1/usage", params={"month": month}).json()
        spent = sum(i["cost"] for i in report["items"] if i["resource"] == "vcpus")
        assert spent >= 3, report  # at least 3 s of one running vCPU

        r = tadmin.put("/v1/budgets", json={"project_id": project, "month": month, "amount": 2.0})
        assert r.status_code == 200 and r.json()["spent"] >= 3, r.text
        refused = _vm(member, "second", project)
        assert refused.status_code == 403, refused.text
        p = refused.json()["policy"]
        assert p["rule"] == "budget" and p["budget"] == 2.0 and p["spent"] >= 3 and p["cost_per_hour"] == 3600
        denied = _vm(member, "second", project, budget_override=True)
        assert denied.status_code == 403 and "budget:override" in denied.json()["detail"], denied.text
        allowed = _vm(tadmin, "second", project, budget_override=True)
        assert allowed.status_code == 202, allowed.text
        assert any("Overridden by gamma-tenant-admin" in w for w in allowed.json()["warnings"])

        # policy rules: members may create VMs of at most 1 vCPU here; warn above 50 % of vms
        r = admin.post(
            "/v1/policy-rules",
            json={
                "name": "members-max-1",
                "kind": "max_size",
                "resource": "vcpus",
                "role": "member",
                "params": {"max": 1},
            },
        )
        assert r.status_code == 201, r.text
        admin.post(
            "/v1/policy-rules", json={"name": "warn-50", "kind": "threshold", "params": {"warn_pct": 50}}
        )
        admin.put("/v1/budgets", json={"project_id": project, "month": month, "amount": 1e9})
        _set_limits(tadmin, {"project_id": project}, {"vms": 4})
        big = _vm(member, "big", project, flavor="medium")
        assert big.status_code == 403, big.text
        assert big.json()["policy"] == {
            "rule": "members-max-1",
            "resource": "vcpus",
            "requested": 2,
            "max": 1,
        }
        warned = _vm(member, "third", project)
        assert warned.status_code == 202 and "warn-50" in warned.json()["warnings"][0], warned.text

        # the audit record is written just after the response: wait for the last one
        deadline = time.monotonic() + 30
        while True:
            member_log = _audit(admin, "gamma-member")
            decisions = [json.loads(r["detail"]) for r in member_log if r["detail"]]
            outcomes = {(d["rule"], d["outcome"]) for ds in decisions for d in ds}
            if ("warn-50", "warn") in outcomes or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert {("budget", "deny"), ("members-max-1", "deny"), ("warn-50", "warn")} <= outcomes, outcomes
        denied_big = next(r for r in member_log if r["detail"] and "members-max-1" in r["detail"])
        assert denied_big["outcome"] == "denied" and denied_big["status_code"] == 403
        assert '"requested": 2' in denied_big["detail"] and '"max": 1' in denied_big["detail"]
        override = [json.loads(r["detail"]) for r in _audit(admin, "gamma-tenant-admin") if r["detail"]]
        assert any(d["outcome"] == "override" and d["rule"] == "budget" for ds in override for d in ds)


def test_reconciliation_finds_a_vm_removed_behind_the_platforms_back(
    sim_server: Server, guest: Guest
) -> None:
    server = sim_server
    with server.client() as admin:
        import_guest_image(admin, guest)
        t = _tenant(admin, server, "delta")
        project = t["projects"]["main"]
        vm = _placed(admin, _vm(t["member"], "ghost", project))["vm"]
        assert _used(t["member"], {"project_id": project}, "vcpus") == 1
        assert not admin.post("/v1/quota/reconcile", json={}).json()["drift"]
        with sqlite3.connect(server.state_dir / "novacron.db", timeout=30) as db:
            db.execute("DELETE FROM allocations WHERE vm_id = ?", (vm["id"],))
            db.execute("DELETE FROM vms WHERE id = ?", (vm["id"],))
        found = admin.post("/v1/quota/reconcile", json={"repair": False}).json()
        assert found["drift"] and [c["id"] for c in found["orphan_charges"]] == [vm["id"]], found
        assert _used(t["member"], {"project_id": project}, "vcpus") == 1  # reported, not repaired
        assert t["tenant-admin"].post("/v1/quota/reconcile", json={"repair": True}).status_code == 403
        repaired = admin.post("/v1/quota/reconcile", json={"repair": True}).json()
        assert repaired["repaired"] and repaired["drift"]
        assert _used(t["member"], {"project_id": project}, "vcpus") == 0
        assert _used(admin, {"tenant_id": t["id"]}, "vcpus") == 0
        assert not admin.post("/v1/quota/reconcile", json={}).json()["drift"]


def test_a_new_tenant_gets_default_limits_that_an_admin_can_raise(sim_server: Server, guest: Guest) -> None:
    """Issue 11 finding 15: a new tenant is not unlimited: every registered resource has a default
    limit, shown by the quota API before anything exists, and enforced."""
    server = sim_server
    with server.client() as admin:
        import_guest_image(admin, guest)
        t = _tenant(admin, server, "fresh")
        project, member = t["projects"]["main"], t["member"]
        node = member.get("/v1/quota").json()
        limits = {r["resource"]: r["limit"] for r in node["resources"]}
        registered = {r["name"] for r in member.get("/v1/quota/resources").json()}
        assert node["id"] == f"tenant:{t['id']}" and set(limits) == registered, node
        assert limits["vms"] == 10 and limits["vcpus"] == 20 and limits["ram_mb"] == 51200, limits
        templates = admin.get("/v1/quota/templates").json()["items"]
        assert [(x["name"], x["applies_to"], x["is_default"]) for x in templates] == [
            ("default-tenant", "tenant", True)
        ]
        # a request over a default is refused before anything is made, naming the resource
        wide = {"name": "wide", "vcpus": 32, "ram_mb": 512, "disk_gb": 1}
        assert admin.post("/v1/flavors", json=wide).status_code == 201
        r = _vm(member, "too-wide", project, flavor="wide")
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
        assert (r.json()["policy"]["resource"], r.json()["policy"]["limit"]) == ("vcpus", 20), r.json()
        # ten VMs fit; the eleventh is refused
        for i in range(10):
            assert _vm(member, f"vm-{i}", project).status_code == 202
        r = _vm(member, "vm-10", project)
        assert r.status_code == 403, r.text
        policy = r.json()["policy"]
        assert (policy["resource"], policy["limit"], policy["node"]) == ("vms", 10, f"tenant:{t['id']}")
        assert "vms" in r.json()["detail"]
        # the tenant's admin cannot raise its own tenant's limit; the platform admin can
        r = t["tenant-admin"].patch(f"/v1/quota/nodes/tenant:{t['id']}", json={"limits": {"vms": 50}})
        assert r.status_code == 403
        _set_limits(admin, {"tenant_id": t["id"]}, {"vms": 11})
        assert _vm(member, "vm-10", project).status_code == 202
        # the operator's own tenant (made at first start) has no default limit
        [own] = [x["id"] for x in admin.get("/v1/tenants").json()["items"] if x["name"] == "default"]
        own_node = admin.get("/v1/quota", params={"tenant_id": own}).json()
        assert all(r["effective_limit"] is None for r in own_node["resources"]), own_node


def test_a_platform_wide_limit_refuses_without_telling_other_tenants_usage(
    sim_server: Server, guest: Guest
) -> None:
    """Issue 11 finding 16's sibling: the system node's usage is all tenants' together; a refusal
    there names the limit, never that usage (nor do warnings)."""
    server = sim_server
    with server.client() as admin:
        import_guest_image(admin, guest)
        a, b = _tenant(admin, server, "alpha"), _tenant(admin, server, "beta")
        _set_limits(admin, {"node_id": "system"}, {"vms": 10})
        for i in range(7):
            assert _vm(a["member"], f"a-{i}", a["projects"]["main"]).status_code == 202
        for i in range(3):
            assert _vm(b["member"], f"b-{i}", b["projects"]["main"]).status_code == 202
        r = _vm(b["member"], "b-3", b["projects"]["main"])
        assert r.status_code == 403, r.text
        assert r.json()["policy"]["node"] == "system" and "used" not in r.json()["policy"], r.json()
        assert "platform-wide vms limit (10)" in r.json()["detail"]
        assert "uses 10" not in r.text and " 7 " not in r.text
        # beta's own bars show its own usage only; the system node is not visible to it
        assert _used(b["member"], {}, "vms") == 3
        assert b["member"].get("/v1/quota", params={"node_id": "system"}).status_code == 404

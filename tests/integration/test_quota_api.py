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


def _tenant(admin: httpx.Client, server: Server, name: str, projects: tuple[str, ...] = ("main",)) -> dict[str, Any]:
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
            "/v1/users", json={"username": username, "password": PASSWORD, "role": role, "tenant_id": tenant["id"]}
        )
        assert r.status_code == 201, r.text
        users[role] = server.client(server.token(username, PASSWORD))
    return {"id": tenant["id"], "projects": ids, **users}


def _set_limits(client: httpx.Client, params: dict[str, str], limits: dict[str, int | None]) -> dict[str, Any]:
    r = client.get("/v1/quota", params=params)
    assert r.status_code == 200, r.text
    node = r.json()
    r = client.patch(f"/v1/quota/nodes/{node['id']}", json={"limits": limits}, headers={"If-Match": r.headers["ETag"]})
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
        token = server.token("acme-member", PASSWORD)

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

"""Quotas on networks, ports, floating IPs and snapshots through a real ``novacron-server``.

Real parts: the server process, its API, the SQLite database (PostgreSQL for the concurrent
creates too), the quota reconciliation. The embedded agent runs the simulated compute driver (see
tests/integration/test_quota_api.py for why): what is checked is the control plane's counting, and
the network API needs no datapath (as in test_network_api.py). Snapshots that really succeed are
charged in test_vm_resize_snapshot.py, backup storage in test_backups.py (both on real QEMU).
"""

from __future__ import annotations

import secrets
import sqlite3
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    Guest,
    Server,
    default_project,
    destroy_server,
    import_guest_image,
    make_server,
    wait_task,
)
from tests.integration.test_cli import Cli
from tests.integration.test_quota_api import PASSWORD, SIM, _set_limits, _tenant, _used


@pytest.fixture(scope="module")
def server(guest: Guest) -> Iterator[Server]:
    srv = make_server(**SIM)
    srv.start(timeout_s=120)
    try:
        with srv.client() as admin:
            import_guest_image(admin, guest)
        yield srv
    finally:
        destroy_server(srv)


def _refused(r: httpx.Response, resource: str, limit: int, used: int, node: str) -> None:
    """The 403 problem+json a VM refusal gives, naming the resource, limit, usage and tree node."""
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    policy = body["policy"]
    assert (policy["resource"], policy["limit"], policy["used"], policy["node"]) == (
        resource,
        limit,
        used,
        node,
    ), policy
    assert f"quota.{resource}" in [e["field"] for e in body["errors"]]
    assert "Quota exceeded" in body["detail"] and resource in body["detail"], body


def _usage_chain(
    admin: httpx.Client, t: dict[str, Any], project: str, user_id: str, resource: str
) -> list[int]:
    """Usage of ``resource`` at the user node, the project, the tenant and the system."""
    return [
        _used(admin, params, resource)
        for params in (
            {"project_id": project, "user_id": user_id},
            {"project_id": project},
            {"tenant_id": t["id"]},
            {},
        )
    ]


def test_networks_ports_and_floating_ips_are_charged_up_the_tree(server: Server, tmp_path: Path) -> None:
    with server.client() as admin:
        t = _tenant(admin, server, "netq")
        project = t["projects"]["main"]
        member = t["member"]
        me = member.get("/v1/tokens/current").json()["user_id"]
        node = f"project:{project}"
        _set_limits(
            t["tenant-admin"], {"project_id": project}, {"networks": 2, "ports": 3, "floating_ips": 1}
        )
        system_before = _used(admin, {}, "networks")

        # networks: the third is refused; deleting one lets a new one in
        nets = []
        for name in ("a", "b"):
            r = member.post("/v1/networks", json={"name": name, "project_id": project})
            assert r.status_code == 201, r.text
            nets.append(r.json()["id"])
        _refused(
            member.post("/v1/networks", json={"name": "c", "project_id": project}), "networks", 2, 2, node
        )
        assert [n["name"] for n in member.get("/v1/networks").json()["items"]] == ["a", "b"]  # none half-made
        assert _usage_chain(admin, t, project, me, "networks") == [2, 2, 2, system_before + 2]
        assert member.delete(f"/v1/networks/{nets[1]}").status_code == 204
        assert _used(member, {"project_id": project}, "networks") == 1
        assert member.post("/v1/networks", json={"name": "c", "project_id": project}).status_code == 201

        # ports: API ports and a VM's NICs count alike; a VM create that would pass the limit leaves
        # neither VM nor port, and holds nothing
        r = member.post("/v1/subnets", json={"network": "a", "name": "a4", "cidr": "10.61.0.0/24"})
        assert r.status_code == 201, r.text
        ports = [member.post("/v1/ports", json={"network": "a"}).json()["id"] for _ in range(2)]
        vm = {"image": "test-guest", "flavor": "tiny", "project_id": project}
        r = member.post("/v1/vms", json={**vm, "name": "two-nics", "networks": [{"network": "a"}] * 2})
        _refused(r, "ports", 3, 2, node)
        assert member.get("/v1/vms").json()["items"] == []
        assert _usage_chain(admin, t, project, me, "ports")[:3] == [2, 2, 2]
        assert _used(member, {"project_id": project}, "vms") == 0
        r = member.post("/v1/vms", json={**vm, "name": "one-nic", "networks": [{"network": "a"}]})
        assert r.status_code == 202, r.text
        assert _used(member, {"project_id": project}, "ports") == 3
        _refused(member.post("/v1/ports", json={"network": "a"}), "ports", 3, 3, node)
        assert member.delete(f"/v1/ports/{ports[0]}").status_code == 204
        assert _used(member, {"project_id": project}, "ports") == 2
        assert member.post("/v1/ports", json={"network": "a"}).status_code == 201

        # floating IPs (their own port on the external network is not one of the project's ports)
        r = admin.post(
            "/v1/networks", json={"name": "public-q", "external": True, "project_id": default_project(admin)}
        )
        assert r.status_code == 201, r.text
        r = admin.post("/v1/subnets", json={"network": "public-q", "name": "pq4", "cidr": "198.51.100.0/24"})
        assert r.status_code == 201, r.text
        r = member.post("/v1/floating-ips", json={"network": "public-q", "project_id": project})
        assert r.status_code == 201, r.text
        fip = r.json()["id"]
        r = member.post("/v1/floating-ips", json={"network": "public-q", "project_id": project})
        _refused(r, "floating_ips", 1, 1, node)
        assert _usage_chain(admin, t, project, me, "floating_ips")[:3] == [1, 1, 1]
        assert _used(member, {"project_id": project}, "ports") == 3
        assert member.delete(f"/v1/floating-ips/{fip}").status_code == 204
        assert (
            member.post("/v1/floating-ips", json={"network": "public-q", "project_id": project}).status_code
            == 201
        )

        # reconciliation agrees with all of it: nothing drifted
        found = admin.post("/v1/quota/reconcile", json={}).json()
        assert not found["drift"], found

    # the CLI lists the new resources with their bars
    cli = Cli(tmp_path / "novacron" / "credentials.json", server)
    cli.ok(
        "login",
        "--server",
        server.url,
        "--username",
        "netq-member@netq",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    shown = {
        r["resource"]: r for r in cli.ok("quota", "show", "--project", project, "--json").json()["resources"]
    }
    assert (shown["networks"]["used"], shown["networks"]["limit"]) == (2, 2)
    assert (shown["ports"]["used"], shown["floating_ips"]["used"]) == (3, 1)
    table = cli.ok("quota", "show", "--project", project).out
    assert "networks" in table and "floating_ips" in table


def test_snapshot_limit_refuses_and_a_failed_snapshot_gives_its_charge_back(server: Server) -> None:
    with server.client() as admin:
        t = _tenant(admin, server, "snapq")
        project = t["projects"]["main"]
        member = t["member"]
        r = member.post(
            "/v1/vms", json={"name": "s", "image": "test-guest", "flavor": "tiny", "project_id": project}
        )
        assert r.status_code == 202, r.text
        vm_id = r.json()["vm"]["id"]
        assert wait_task(member, r.json()["task_id"], timeout_s=120)["state"] == "succeeded"
        r = member.post(f"/v1/vms/{vm_id}/actions/stop", json={"timeout_s": 5})
        assert wait_task(member, r.json()["task_id"], timeout_s=120)["state"] == "succeeded"

        _set_limits(t["tenant-admin"], {"project_id": project}, {"snapshots": 1})
        r = member.post(f"/v1/vms/{vm_id}/snapshot", json={"image_name": "s-1"})
        assert r.status_code == 202, r.text
        # charged with the image row, before the task ran (seen while the task has not yet failed)
        used = _used(member, {"project_id": project}, "snapshots")
        if member.get(f"/v1/tasks/{r.json()['task_id']}").json()["state"] in ("pending", "running"):
            assert used == 1
        # the simulated driver writes no disk file: the task fails, and its rollback releases
        assert wait_task(member, r.json()["task_id"], timeout_s=120)["state"] == "failed"
        assert member.get(f"/v1/images/{r.json()['image_id']}").json()["status"] == "error"
        assert _used(member, {"project_id": project}, "snapshots") == 0
        assert _used(admin, {"tenant_id": t["id"]}, "snapshots") == 0

        _set_limits(t["tenant-admin"], {"project_id": project}, {"snapshots": 0})
        r = member.post(f"/v1/vms/{vm_id}/snapshot", json={"image_name": "s-2"})
        _refused(r, "snapshots", 0, 0, f"project:{project}")
        assert "s-2" not in [i["name"] for i in member.get("/v1/images").json()["items"]]
        assert member.get(f"/v1/vms/{vm_id}").json()["task_state"] is None  # the VM was not left busy


def test_reconcile_finds_a_network_removed_behind_the_platforms_back(server: Server) -> None:
    with server.client() as admin:
        t = _tenant(admin, server, "ghostnet")
        project = t["projects"]["main"]
        member = t["member"]
        assert not admin.post("/v1/quota/reconcile", json={}).json()["drift"]
        net = member.post("/v1/networks", json={"name": "ghost", "project_id": project}).json()
        assert _used(member, {"project_id": project}, "networks") == 1
        with sqlite3.connect(server.state_dir / "novacron.db", timeout=30) as db:
            db.execute("DELETE FROM networks WHERE id = ?", (net["id"],))
        found = admin.post("/v1/quota/reconcile", json={"repair": False}).json()
        assert found["drift"], found
        assert [(c["kind"], c["id"]) for c in found["orphan_charges"]] == [("network", net["id"])], found
        assert _used(member, {"project_id": project}, "networks") == 1  # reported, not repaired
        repaired = admin.post("/v1/quota/reconcile", json={"repair": True}).json()
        assert repaired["repaired"] and repaired["drift"]
        assert _used(member, {"project_id": project}, "networks") == 0
        assert _used(admin, {"tenant_id": t["id"]}, "networks") == 0
        assert not admin.post("/v1/quota/reconcile", json={}).json()["drift"]


@pytest.fixture(params=["sqlite", "postgres"])
def any_server(request: pytest.FixtureRequest, server: Server) -> Iterator[Server]:
    if request.param == "sqlite":
        yield server
        return
    pg = request.getfixturevalue("postgres")
    srv = make_server(**SIM, NOVACRON_DATABASE_URL=pg.create_database(f"qres_{secrets.token_hex(4)}"))
    srv.start(timeout_s=120)
    try:
        yield srv
    finally:
        destroy_server(srv)


def test_concurrent_network_creates_against_a_limit_of_three(any_server: Server) -> None:
    server = any_server
    name = f"race{secrets.token_hex(2)}"
    with server.client() as admin:
        t = _tenant(admin, server, name)
        project = t["projects"]["main"]
        _set_limits(t["tenant-admin"], {"project_id": project}, {"networks": 3})
        token = server.token(f"{name}-member", PASSWORD, name)

        def create(i: int) -> httpx.Response:
            with server.client(token) as own:
                return own.post("/v1/networks", json={"name": f"n{i}", "project_id": project})

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(create, range(24)))
        codes = Counter(r.status_code for r in answers)
        assert codes == {201: 3, 403: 21}, codes
        assert len(t["member"].get("/v1/networks", params={"project_id": project}).json()["items"]) == 3
        assert _used(t["member"], {"project_id": project}, "networks") == 3

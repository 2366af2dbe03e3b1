"""DR without guests: the RPO watch raises an alert event, and runbook requests are refused by field.

The snapshot rows are written through the catalogue's ORM (as a backup task would), so no QEMU is
needed: what is tested is the backup controller's periodic RPO check and the API around runbooks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from novacron.db.base import Database, new_id, utcnow
from novacron.db.models import BackupSnapshot, DRRunbook, Project
from tests.conftest import Server, default_project, destroy_server, make_server, tenant_user


@pytest.fixture(scope="module")
def srv() -> Iterator[tuple[Server, httpx.Client]]:
    server = make_server(NOVACRON_EMBEDDED_AGENT="0")
    server.start(timeout_s=120)
    try:
        with server.client() as c:
            yield server, c
    finally:
        destroy_server(server)


def _target(c: httpx.Client, server: Server, name: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "type": "local", "config": {"path": str(server.state_dir / name)}, **extra}
    r = c.post("/v1/backup-targets", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _events(c: httpx.Client, type_: str) -> list[dict[str, Any]]:
    return list(c.get("/v1/events", params={"types": type_, "limit": 100}).json()["items"])


def test_an_old_replicated_snapshot_misses_a_1s_rpo_and_raises_one_alert(
    srv: tuple[Server, httpx.Client],
) -> None:
    server, c = srv
    replica = _target(c, server, "site-b")
    primary = _target(c, server, "site-a", replicate_to="site-b", replicate_every_s=1)
    assert primary["replica_target_id"] == replica["id"]
    project_id = default_project(c)
    db = Database(f"sqlite:///{server.state_dir}/novacron.db")
    try:
        with db.session() as s:
            project = s.get(Project, project_id)
            assert project is not None
            taken = utcnow() - timedelta(hours=1)
            s.add(
                BackupSnapshot(
                    id=new_id("bk"),
                    tenant_id=project.tenant_id,
                    project_id=project_id,
                    vm_id=None,
                    vm_name="db1",
                    target_id=primary["id"],
                    state="available",
                    disks=[],
                    source={},
                    completed_at=taken,
                    replicated_at=taken,
                    replica_target_id=replica["id"],
                )  # fmt: skip
            )
    finally:
        db.engine.dispose()
        db.read_engine.dispose()
    r = c.post(
        "/v1/dr/runbooks",
        json={"name": "tight", "steps": [{"vm": "db1"}, {"vm": "web1", "rpo_target_s": 86400}],
              "rpo_target_s": 1, "project_id": project_id},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    runbook = r.json()
    deadline = time.monotonic() + 60
    while len(_events(c, "dr.rpo_missed")) < 2:
        assert time.monotonic() < deadline, c.get(f"/v1/dr/runbooks/{runbook['id']}").text
        time.sleep(0.5)
    missed = {e["data"]["vm"]: e for e in _events(c, "dr.rpo_missed")}
    # db1's replicated snapshot is an hour old against 1 s; web1 has no replicated snapshot at all
    assert missed["db1"]["resource_id"] == runbook["id"] and missed["db1"]["data"]["rpo_met"] is False
    assert 3500 < missed["db1"]["data"]["rpo_s"] < 4000 and missed["db1"]["data"]["rpo_target_s"] == 1
    assert missed["web1"]["data"]["backup_id"] is None
    shown = c.get(f"/v1/dr/runbooks/{runbook['id']}").json()
    assert shown["rpo_missed"] == ["db1", "web1"] and shown["state"] == "normal"
    assert shown["rpo"][0]["replicated"]["rpo_met"] is False and shown["rpo"][0]["replicated"]["backup_id"]
    time.sleep(6)  # another pass of the controller: an alert is raised once, not every pass
    assert len(_events(c, "dr.rpo_missed")) == 2
    assert c.get("/v1/backup-targets").json()["items"][0]["replication_error"] is None


def test_runbook_references_and_states_are_checked(srv: tuple[Server, httpx.Client]) -> None:
    _, c = srv
    project_id = default_project(c)
    r = c.post(
        "/v1/dr/runbooks",
        json={"name": "bad", "steps": [{"vm": "x"}], "recovery_group": "nowhere", "project_id": project_id},
    )
    assert r.status_code == 422 and "recovery_group" in r.text, r.text
    r = c.post(
        "/v1/dr/runbooks",
        json={"name": "bad", "steps": [{"vm": "x", "health": {"kind": "console"}}], "project_id": project_id},
    )
    assert r.status_code == 422 and "marker" in r.text, r.text
    nets = {}
    for name in ("net-a", "net-b"):
        r = c.post("/v1/networks", json={"name": name, "project_id": project_id})
        assert r.status_code == 201, r.text
        nets[name] = r.json()["id"]
    r = c.post(
        "/v1/dr/runbooks",
        json={
            "name": "bad",
            "steps": [{"vm": "x"}],
            "network_map": {"net-a": "nope"},
            "project_id": project_id,
        },
    )
    assert r.status_code == 422 and "body.network_map.net-a" in r.text, r.text
    r = c.post(
        "/v1/dr/runbooks",
        json={"name": "mapped", "steps": [{"vm": "x"}], "network_map": {"net-a": "net-b"},
              "test_network": "net-b", "project_id": project_id},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    assert (
        r.json()["network_map"] == {nets["net-a"]: nets["net-b"]}
        and r.json()["test_network"] == nets["net-b"]
    )
    r = c.post("/v1/dr/runbooks", json={"name": "plain", "steps": [{"vm": "x"}], "project_id": project_id})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    r = c.post(f"/v1/dr/runbooks/{rid}/failback")
    assert r.status_code == 409 and "normal" in r.json()["detail"], r.text
    r = c.post(f"/v1/dr/runbooks/{rid}/failover", json={"dry_run": True})
    assert r.status_code == 409 and "recovery_group" in r.json()["detail"], r.text


def test_hooks_and_tcp_checks_pass_the_egress_guard_and_a_failed_over_runbook_stays(
    srv: tuple[Server, httpx.Client],
) -> None:
    server, admin = srv
    tenant, pid = tenant_user(admin, server, "drtenant", role="tenant-admin")
    with tenant:
        r = tenant.post(
            "/v1/dr/runbooks",
            json={"name": "probe", "steps": [{"vm": "x", "hooks": [{"command": ["id"]}]}]},
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.steps.hooks", r.text
        # webhooks and tcp checks: refused by the egress guard (for admins too), naming the field
        for who in (tenant, admin):
            for url in (
                "http://169.254.169.254/latest/meta-data/",
                "http://2130706433:5432/",
                "http://[::1]/",
            ):
                hook = {"when": "before", "url": url}
                r = who.post(
                    "/v1/dr/runbooks",
                    json={"name": "probe", "project_id": pid, "steps": [{"vm": "x", "hooks": [hook]}]},
                )
                assert r.status_code == 422, r.text
                assert r.json()["errors"][0]["field"] == "body.steps.0.hooks.0.url", r.text
            for address in ("127.0.0.1", "localhost", "10.1.2.3", "::ffff:127.0.0.1"):
                check = {"kind": "tcp", "address": address, "port": 5432}
                steps = [{"vm": "x"}, {"vm": "y", "health": check}]
                r = who.post("/v1/dr/runbooks", json={"name": "probe", "project_id": pid, "steps": steps})
                assert r.status_code == 422, r.text
                assert r.json()["errors"][0]["field"] == "body.steps.1.health.address", r.text
        # a public target is a tenant's to use (nothing is sent when the runbook is written)
        public = {"vm": "x", "hooks": [{"url": "https://93.184.216.34/dr"}],
                  "health": {"kind": "tcp", "address": "93.184.216.34", "port": 443}}  # fmt: skip
        r = tenant.post("/v1/dr/runbooks", json={"name": "public", "steps": [public]})
        assert r.status_code == 201, r.text
        r = tenant.post("/v1/dr/runbooks", json={"name": "plain", "steps": [{"vm": "x"}]})
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
    db = Database(f"sqlite:///{server.state_dir}/novacron.db")
    with db.session() as s:  # as a failover leaves it: the runbook maps the recovered VMs
        runbook = s.get(DRRunbook, rid)
        assert runbook is not None
        runbook.state = "failed-over"
    db.engine.dispose()
    r = admin.delete(f"/v1/dr/runbooks/{rid}")
    assert r.status_code == 409 and "fail it back first" in r.json()["detail"], r.text
    assert admin.get(f"/v1/dr/runbooks/{rid}").status_code == 200

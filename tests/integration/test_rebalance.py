"""Cluster rebalance on real QEMU and two real hosts: the dry run changes nothing, the apply does
exactly what the dry run said with live migration (the guest keeps running), and a second rebalance
right after is empty."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import Guest, Server, import_guest_image, wait_task
from tests.integration.test_remote_agent import Agent, _wait_host, host_project

TICKER = "#!/bin/sh\n( i=0; while true; do i=$((i+1)); echo tick-$i; sleep 1; done ) &\n"
PASSWORD = "correct-horse-battery-9"


def _ticks(path: Path) -> list[int]:
    text = path.read_text(errors="replace") if path.exists() else ""
    return [int(n) for n in re.findall(r"tick-(\d+)", text)]


def _cli(server: Server, token: str, *args: str, answer: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NOVACRON_URL": server.url, "NOVACRON_TOKEN": token, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "novacron.cli.main", *args],
        env=env,
        input=answer,
        capture_output=True,
        text=True,
        timeout=300,  # the apply follows the live migration to its end
    )


def _task_ids(c: httpx.Client) -> set[str]:
    return {t["id"] for t in c.get("/v1/tasks", params={"limit": 500}).json()["items"]}


def _problem(r: httpx.Response, status: int, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if field is not None:
        assert field in [e["field"] for e in r.json()["errors"]], r.text


def test_rebalance_dry_run_then_apply_moves_one_vm_live(
    two_hosts: tuple[Server, Agent], guest: Guest
) -> None:
    server, agent = two_hosts
    with server.client() as c:
        token = c.post("/v1/hosts/join-tokens", json={}).json()
        agent.start(token["join_token"], token["ca_fingerprint"])
        host_b = _wait_host(c, "node-b")
        host_a = next(h for h in c.get("/v1/hosts").json()["items"] if h["id"] != host_b["id"])
        import_guest_image(c, guest)

        # both VMs on host A: B takes no new VMs while in maintenance
        assert c.patch(f"/v1/hosts/{host_b['id']}", json={"state": "maintenance"}).status_code == 200
        project = host_project(c)
        vm_ids = []
        for name in ("web-1", "web-2"):
            body = {"name": name, "image": "test-guest", "flavor": "tiny", "user_data": TICKER}
            r = c.post("/v1/vms", json={**body, "project_id": project})
            assert r.status_code == 202, r.text
            vm_ids.append(r.json()["vm"]["id"])
            assert wait_task(c, r.json()["task_id"], 180)["state"] == "succeeded"
        assert {c.get(f"/v1/vms/{v}").json()["host_id"] for v in vm_ids} == {host_a["id"]}
        # while B is in maintenance it takes no part: nothing to even out
        r = c.post("/v1/cluster/rebalance", json={"dry_run": True})
        assert r.status_code == 200, r.text
        assert r.json()["moves"] == [] and [h["name"] for h in r.json()["hosts"]] == [host_a["name"]]
        assert c.patch(f"/v1/hosts/{host_b['id']}", json={"state": "up"}).status_code == 200
        # both guests up and ticking (and so a few metrics samples each: CPU use measured, not assumed)
        deadline = time.monotonic() + 120
        for v in vm_ids:
            log = server.state_dir / "instances" / v / "console.log"
            while len(_ticks(log)) < 3:
                assert time.monotonic() < deadline, log.read_text(errors="replace")[-1000:]
                time.sleep(0.3)

        # validation and permission
        _problem(c.post("/v1/cluster/rebalance", json={"max_moves": 0}), 422, "body.max_moves")
        _problem(c.post("/v1/cluster/rebalance", json={"dry_run": False, "colour": 1}), 422, "body.colour")
        _problem(
            c.post("/v1/cluster/rebalance", json={"moves": [{"vm": vm_ids[0], "to": "nowhere"}]}),
            422,
            "body.moves.0.to",
        )
        tenant = c.post("/v1/tenants", json={"name": "acme"}).json()
        r = c.post(
            "/v1/users",
            json={
                "username": "acme-admin",
                "password": PASSWORD,
                "role": "tenant-admin",
                "tenant_id": tenant["id"],
            },
        )
        assert r.status_code == 201, r.text
        with server.client(server.token("acme-admin", PASSWORD, "acme")) as other:
            _problem(other.post("/v1/cluster/rebalance", json={"dry_run": True}), 403)

        # the dry run: one VM to B, and nothing changes
        tasks_before = _task_ids(c)
        r = c.post("/v1/cluster/rebalance", json={"dry_run": True, "max_moves": 5})
        assert r.status_code == 200, r.text
        plan = r.json()
        assert len(plan["moves"]) == 1, plan
        [move] = plan["moves"]
        assert move["vm"] in vm_ids and move["from"] == host_a["id"] and move["to"] == host_b["id"]
        assert plan["imbalance_after"] < plan["imbalance_before"]
        hosts = {h["name"]: h for h in plan["hosts"]}
        assert hosts["node-b"]["before"]["vms"] == 0 and hosts["node-b"]["after"]["vms"] == 1
        assert hosts[host_a["name"]]["after"]["vcpu"] < hosts[host_a["name"]]["before"]["vcpu"]
        assert plan["task_ids"] == [] and plan["dry_run"] is True
        assert {c.get(f"/v1/vms/{v}").json()["host_id"] for v in vm_ids} == {host_a["id"]}
        assert _task_ids(c) == tasks_before

        # the CLI shows the same plan, before and after per host, and changes nothing either
        cli = _cli(server, server.token(), "cluster", "rebalance", "--dry-run")
        assert cli.returncode == 0, cli.stderr
        assert "node-b" in cli.stdout and "imbalance" in cli.stdout and move["vm_name"] in cli.stdout
        assert _task_ids(c) == tasks_before
        # without --yes it asks first; "no" changes nothing
        cli = _cli(server, server.token(), "cluster", "rebalance", answer="n\n")
        assert cli.returncode == 1 and "Start these 1 live migration(s)?" in cli.stdout, (
            cli.stdout + cli.stderr
        )
        assert _task_ids(c) == tasks_before

        # apply: the same move, as a live migration; the guest keeps ticking on B
        source_log = server.state_dir / "instances" / move["vm"] / "console.log"
        last_on_source = max(_ticks(source_log))
        # through the CLI: it plans, (--yes) skips the question, sends the moves it planned, and
        # follows the migration to its end
        cli = _cli(server, server.token(), "cluster", "rebalance", "--yes", "--max-moves", "5", "--json")
        assert cli.returncode == 0, cli.stdout + cli.stderr
        applied = json.loads(cli.stdout)
        assert applied["dry_run"] is False
        assert [(m["vm"], m["to"]) for m in applied["moves"]] == [(move["vm"], move["to"])]
        [task_id] = applied["task_ids"]
        task = wait_task(c, task_id, timeout_s=240)
        assert task["state"] == "succeeded" and task["kind"] == "vm.migrate", task["error"]
        vm = c.get(f"/v1/vms/{move['vm']}").json()
        assert vm["host_id"] == host_b["id"] and vm["state"] == "running" and vm["task_state"] is None
        stay = next(v for v in vm_ids if v != move["vm"])
        assert c.get(f"/v1/vms/{stay}").json()["host_id"] == host_a["id"]
        target_log = agent.state_dir / "instances" / move["vm"] / "console.log"
        deadline = time.monotonic() + 60
        while not _ticks(target_log) or max(_ticks(target_log)) < last_on_source + 2:
            assert time.monotonic() < deadline, f"no ticks on B: {target_log.read_text()[-800:]}"
            time.sleep(0.3)
        assert "NOVACRON-GUEST-UP" not in target_log.read_text(), "the guest restarted instead of moving"

        # right after: nothing to do (the moved VM cools down, the rest is balanced)
        tasks_before = _task_ids(c)
        key = {"Idempotency-Key": "rebalance-2"}
        r = c.post("/v1/cluster/rebalance", json={"dry_run": False}, headers=key)
        assert r.status_code == 202, r.text
        assert r.json()["moves"] == [] and r.json()["task_ids"] == []
        again = c.post("/v1/cluster/rebalance", json={"dry_run": False}, headers=key)
        assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == r.json()
        _problem(c.post("/v1/cluster/rebalance", json={"dry_run": False, "max_moves": 3}, headers=key), 422)
        assert _task_ids(c) == tasks_before
        cli = _cli(server, server.token(), "cluster", "rebalance", "--yes")
        assert cli.returncode == 0 and "Balanced" in cli.stdout, cli.stdout + cli.stderr

        # audited, with the caller
        audit = c.get("/v1/audit", params={"action": "cluster.rebalance"}).json()["items"]
        assert len(audit) >= 4 and {a["outcome"] for a in audit} >= {"success", "denied"}

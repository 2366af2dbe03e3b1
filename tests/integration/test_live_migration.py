"""Live migration between two hosts on real QEMU: the guest keeps ticking, never reboots."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Guest, Server, destroy_server, import_guest_image, make_server, wait_task
from tests.integration.test_remote_agent import Agent, _wait_host, host_project

TICKER = "#!/bin/sh\n( i=0; while true; do i=$((i+1)); echo tick-$i; sleep 1; done ) &\n"


@pytest.fixture
def two_hosts() -> Iterator[tuple[Server, Agent]]:
    """The all-in-one node (its embedded agent is one host) plus a remote agent host."""
    server = make_server()
    server.start()
    agent = Agent(server, "node-b")
    try:
        yield server, agent
    finally:
        agent.stop()
        subprocess.run(["pkill", "-9", "-f", f"{agent.state_dir}/"], check=False)
        shutil.rmtree(agent.state_dir, ignore_errors=True)
        destroy_server(server)


def _console_of(server: Server, agent: Agent, host_name: str, vm_id: str) -> Path:
    base = agent.state_dir if host_name == "node-b" else server.state_dir
    return base / "instances" / vm_id / "console.log"


def _ticks(path: Path) -> list[int]:
    return (
        [int(n) for n in re.findall(r"tick-(\d+)", path.read_text(errors="replace"))] if path.exists() else []
    )


def _qemu_count(vm_id: str) -> int:
    out = subprocess.run(["pgrep", "-f", f"qemu-system.*{vm_id}"], capture_output=True, text=True).stdout
    return len(out.split())


def test_live_migration_keeps_the_guest_running_and_drain_empties_a_host(
    two_hosts: tuple[Server, Agent], guest: Guest
) -> None:
    server, agent = two_hosts
    with server.client() as c:
        token = c.post("/v1/hosts/join-tokens", json={}).json()
        agent.start(token["join_token"], token["ca_fingerprint"])
        _wait_host(c, "node-b")
        hosts = {h["id"]: h["name"] for h in c.get("/v1/hosts").json()["items"]}
        assert len(hosts) == 2
        import_guest_image(c, guest)

        r = c.post(
            "/v1/vms",
            json={
                "name": "ticker",
                "image": "test-guest",
                "flavor": "tiny",
                "user_data": TICKER,
                "project_id": host_project(c),
            },
        )
        vm_id = r.json()["vm"]["id"]
        assert wait_task(c, r.json()["task_id"])["state"] == "succeeded"
        source = c.get(f"/v1/vms/{vm_id}").json()["host_id"]
        source_log = _console_of(server, agent, hosts[source], vm_id)
        deadline = time.monotonic() + 60
        while len(_ticks(source_log)) < 3:
            assert time.monotonic() < deadline, source_log.read_text()[-1000:]
            time.sleep(0.3)

        # the source's console log goes with the source instance: note where the guest was
        last_on_source = max(_ticks(source_log))
        r = c.post(f"/v1/vms/{vm_id}/migrate", json={})
        assert r.status_code == 202, r.text
        task = wait_task(c, r.json()["task_id"], timeout_s=180)
        assert task["state"] == "succeeded", task
        result = task["result"]
        assert isinstance(result, dict) and result["downtime_ms"] >= 0 and result["total_time_ms"] > 0
        vm = c.get(f"/v1/vms/{vm_id}").json()
        target = vm["host_id"]
        assert target != source and vm["state"] == "running" and vm["task_state"] is None

        target_log = _console_of(server, agent, hosts[target], vm_id)
        deadline = time.monotonic() + 30
        while not _ticks(target_log) or max(_ticks(target_log)) < last_on_source + 2:
            assert time.monotonic() < deadline, f"no ticks after migration: {target_log.read_text()[-800:]}"
            time.sleep(0.3)
        ticks = _ticks(target_log)
        assert ticks[0] >= last_on_source and ticks == sorted(ticks), "the guest restarted instead of moving"
        assert "NOVACRON-GUEST-UP" not in target_log.read_text()
        assert not source_log.parent.exists(), "the source instance must be gone"
        assert _qemu_count(vm_id) == 1
        migrated = [e for e in c.get("/v1/events", params={"types": "vm.migrated"}).json()["items"]]
        assert migrated and migrated[-1]["data"]["downtime_ms"] >= 0

        # the VM obeys on its new host
        r = c.post(f"/v1/vms/{vm_id}/actions/pause")
        assert wait_task(c, r.json()["task_id"])["state"] == "succeeded"
        r = c.post(f"/v1/vms/{vm_id}/actions/resume")
        assert wait_task(c, r.json()["task_id"])["state"] == "succeeded"

        # drain the host it is on now: it moves back, and the host takes no new VMs
        r = c.post(f"/v1/hosts/{target}/drain")
        assert r.status_code == 202, r.text
        for task_id in r.json()["task_ids"]:
            assert wait_task(c, task_id, timeout_s=180)["state"] == "succeeded"
        assert c.get(f"/v1/vms/{vm_id}").json()["host_id"] == source
        assert c.get("/v1/vms", params={"host_id": target}).json()["items"] == []
        assert c.get(f"/v1/hosts/{target}").json()["state"] == "maintenance"
        assert _qemu_count(vm_id) == 1


def test_migration_to_a_host_without_room_leaves_the_vm_running(
    two_hosts: tuple[Server, Agent], guest: Guest
) -> None:
    server, agent = two_hosts
    with server.client() as c:
        token = c.post("/v1/hosts/join-tokens", json={}).json()
        agent.start(token["join_token"], token["ca_fingerprint"])
        node_b = _wait_host(c, "node-b")
        import_guest_image(c, guest)
        flavor = c.post(
            "/v1/flavors", json={"name": "huge", "vcpus": 1, "ram_mb": 16384, "disk_gb": 1}
        ).json()
        assert flavor["name"] == "huge"
        r = c.post(
            "/v1/vms",
            json={"name": "big", "image": "test-guest", "flavor": "huge", "project_id": host_project(c)},
        )
        vm_id = r.json()["vm"]["id"]
        assert wait_task(c, r.json()["task_id"])["state"] == "succeeded"
        vm = c.get(f"/v1/vms/{vm_id}").json()
        other = node_b["id"] if vm["host_id"] != node_b["id"] else None
        if other is None:  # placed on node-b: aim at the all-in-one host instead
            other = next(h["id"] for h in c.get("/v1/hosts").json()["items"] if h["id"] != node_b["id"])
        # fill the target so 16 GiB more cannot fit
        filler = c.post(
            "/v1/vms",
            json={"name": "filler", "image": "test-guest", "flavor": "huge", "project_id": host_project(c)},
        )
        wait_task(c, filler.json()["task_id"])
        r = c.post(f"/v1/vms/{vm_id}/migrate", json={"host": other})
        task = wait_task(c, r.json()["task_id"])
        if task["state"] == "succeeded":
            pytest.fail("expected the target to be full")  # pragma: no cover
        assert "room" in str(task["error"]) or "No other host" in str(task["error"])
        vm = c.get(f"/v1/vms/{vm_id}").json()
        assert vm["state"] == "running" and vm["task_state"] is None and vm["host_id"] != other
        assert _qemu_count(vm_id) == 1
        assert httpx.get(f"{server.url}/healthz").status_code == 200

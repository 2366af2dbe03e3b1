"""A tenant's VM through the REST API, on real QEMU under TCG: boot, console, power, delete."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Guest, Server, import_guest_image, wait_console, wait_task


def _qemu_pids(server: Server) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "qemu-system" in cmdline and str(server.state_dir) in cmdline:
            pids.append(int(proc.name))
    return pids


def _create(client: httpx.Client, name: str, user_data: str, image: str = "test-guest") -> tuple[str, str]:
    r = client.post(
        "/v1/vms",
        json={
            "name": name,
            "image": image,
            "flavor": "tiny",
            "user_data": user_data,
            "project_id": client.get("/v1/projects", params={"name": "default"}).json()["items"][0]["id"],
        },
    )
    assert r.status_code == 202, r.text
    return r.json()["vm"]["id"], r.json()["task_id"]


def _act(client: httpx.Client, vm_id: str, action: str, **body: object) -> dict[str, Any]:
    r = client.post(f"/v1/vms/{vm_id}/actions/{action}", json=body or None)
    assert r.status_code == 202, r.text
    task = wait_task(client, r.json()["task_id"])
    assert task["state"] == "succeeded", task
    vm: dict[str, Any] = client.get(f"/v1/vms/{vm_id}").json()
    return vm


def test_boot_console_power_cycle_and_delete(server: Server, guest: Guest) -> None:
    with server.client() as c:
        import_guest_image(c, guest)
        vm_id, task_id = _create(c, "web-1", "hello from user-data 4711")
        task = wait_task(c, task_id)
        assert task["state"] == "succeeded", task
        assert task["steps"] == ["validate", "place", "prepare", "launch", "wait_running"]
        wait_console(c, vm_id, "user-data: hello from user-data 4711")
        assert "hostname=web-1" in c.get(f"/v1/vms/{vm_id}/console-log").text
        assert c.get(f"/v1/vms/{vm_id}").json()["state"] == "running"

        assert _act(c, vm_id, "pause")["state"] == "paused"
        assert _act(c, vm_id, "resume")["state"] == "running"

        before = len(c.get(f"/v1/vms/{vm_id}/console-log").text)
        assert _act(c, vm_id, "reboot")["state"] == "running"
        deadline = time.monotonic() + 60
        while c.get(f"/v1/vms/{vm_id}/console-log").text.count("NOVACRON-GUEST-UP") < 2:
            assert time.monotonic() < deadline, "the guest did not boot again after reboot"
            time.sleep(0.3)
        assert len(c.get(f"/v1/vms/{vm_id}/console-log").text) > before

        assert _act(c, vm_id, "stop", timeout_s=60)["state"] == "stopped"
        assert _qemu_pids(server) == []
        assert _act(c, vm_id, "start")["state"] == "running"
        assert len(_qemu_pids(server)) == 1

        # the metrics feed has samples of the running VM
        deadline = time.monotonic() + 10
        while not c.get(f"/v1/vms/{vm_id}/metrics").json()["samples"]:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        sample = c.get(f"/v1/vms/{vm_id}/metrics").json()["samples"][-1]
        assert sample["cpu_time_s"] > 0 and sample["rss_bytes"] > 0

        r = c.delete(f"/v1/vms/{vm_id}")
        assert r.status_code == 202
        assert wait_task(c, r.json()["task_id"])["state"] == "succeeded"
        assert c.get(f"/v1/vms/{vm_id}").status_code == 404
        assert _qemu_pids(server) == []
        leftovers = [p for p in (server.state_dir / "instances").rglob("*")] + [
            p for p in (server.state_dir / "run").rglob(f"*{vm_id[3:11]}*")
        ]
        assert leftovers == []


def test_events_follow_a_create(server: Server, guest: Guest) -> None:
    with server.client() as c:
        import_guest_image(c, guest)
        last = c.get("/v1/events", params={"limit": 1000}).json()["last_seq"]
        vm_id, task_id = _create(c, "evt-1", "")
        assert wait_task(c, task_id)["state"] == "succeeded"
        types = [
            e["type"]
            for e in c.get("/v1/events", params={"after": last, "limit": 1000}).json()["items"]
            if e["resource_id"] in (vm_id, task_id)
        ]
        assert types[0] == "vm.created"
        assert "task.succeeded" in types and "vm.state_changed" in types
        with c.stream("GET", "/v1/events/stream", params={"after": last}) as stream:
            seen = []
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    seen.append(line[7:])
                if "task.succeeded" in seen:
                    break
        assert "vm.created" in seen


def test_server_killed_mid_create_finishes_after_restart(server: Server, guest: Guest) -> None:
    with server.client() as c:
        import_guest_image(c, guest)
        vm_id, task_id = _create(c, "crash-1", "survivor line")
        deadline = time.monotonic() + 30
        while c.get(f"/v1/tasks/{task_id}").json()["step_index"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    server.kill9()
    server.start()
    with server.client() as c:
        task = wait_task(c, task_id)
        assert task["state"] == "succeeded", task
        wait_console(c, vm_id, "user-data: survivor line")
        assert len(_qemu_pids(server)) == 1


def test_restart_keeps_vms_running_and_managed(server: Server, guest: Guest) -> None:
    with server.client() as c:
        import_guest_image(c, guest)
        vm_id, task_id = _create(c, "keep-1", "")
        assert wait_task(c, task_id)["state"] == "succeeded"
        pids = _qemu_pids(server)
    server.kill9()
    assert all(os.path.exists(f"/proc/{p}") for p in pids), "QEMU must outlive the server"
    server.start()
    with server.client() as c:
        assert c.get(f"/v1/vms/{vm_id}").json()["state"] == "running"
        assert _qemu_pids(server) == pids
        assert _act(c, vm_id, "pause")["state"] == "paused"
        assert _act(c, vm_id, "stop", force=True)["state"] == "stopped"
        assert _qemu_pids(server) == []


def test_platform_runs_on_postgresql(postgres: object, guest: Guest) -> None:
    """The same server and VM flow with PostgreSQL as the store instead of SQLite."""
    from tests.conftest import destroy_server, make_server

    url = postgres.create_database("aio_pg")  # type: ignore[attr-defined]
    srv = make_server(NOVACRON_DATABASE_URL=url)
    srv.start()
    try:
        with srv.client() as c:
            import_guest_image(c, guest)
            vm_id, task_id = _create(c, "pg-1", "stored in postgres")
            assert wait_task(c, task_id)["state"] == "succeeded"
            wait_console(c, vm_id, "user-data: stored in postgres")
            r = c.delete(f"/v1/vms/{vm_id}")
            assert wait_task(c, r.json()["task_id"])["state"] == "succeeded"
            assert c.get("/v1/vms").json()["items"] == []
    finally:
        destroy_server(srv)

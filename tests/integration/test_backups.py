"""VM backups on real QEMU guests that write to their disks: change tracking, restore, verify, holds, DR.

One server and one source VM serve the whole module (each guest boot costs seconds under TCG); the
tests run in order and each asserts what a user sees through the API.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    START_QGA,
    Guest,
    Server,
    default_project,
    destroy_server,
    import_guest_image,
    make_server,
    type_on_console,
    wait_console,
    wait_task,
)
from tests.integration.test_cli import Cli
from tests.integration.test_quota_api import _set_limits, _used

MiB = 1 << 20
CHUNK = 4 * MiB
PW = "Correct-Horse-42!"
#: the guest prints the 16 bytes at sector 300000 of its disk at boot, then ticks every second
USER_DATA = """#!/bin/sh
echo "DISK-B: $(dd if=/dev/vda bs=512 skip=300000 count=1 2>/dev/null | tr -d '\\000' | head -c 16)"
(i=0; while true; do i=$((i+1)); echo "TICK $i"; sleep 1; done) &
"""


@dataclass
class Env:
    server: Server
    c: httpx.Client
    vm_id: str
    target_dir: Path
    backups: dict[str, dict[str, Any]]


def _disk(server: Server, vm_id: str) -> Path:
    return server.state_dir / "instances" / vm_id / "disk.qcow2"


def _ticks(c: httpx.Client, vm_id: str) -> int:
    found = re.findall(r"TICK (\d+)", c.get(f"/v1/vms/{vm_id}/console-log").text)
    return int(found[-1]) if found else 0


def _backup(c: httpx.Client, vm_id: str, **body: object) -> tuple[dict[str, Any], dict[str, Any]]:
    r = c.post("/v1/backups", json={"vm": vm_id, **body})
    assert r.status_code == 202, r.text
    task = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert task["state"] == "succeeded", task
    return c.get(f"/v1/backups/{r.json()['backup']['id']}").json(), task


def _power(c: httpx.Client, vm_id: str, action: str) -> None:
    r = c.post(f"/v1/vms/{vm_id}/actions/{action}", json={"timeout_s": 30} if action == "stop" else None)
    assert r.status_code == 202, r.text
    done = wait_task(c, r.json()["task_id"], timeout_s=300)
    assert done["state"] == "succeeded", done["error"]


@pytest.fixture(scope="module")
def env(guest: Guest) -> Iterator[Env]:
    server = make_server()
    server.start(timeout_s=180)  # a loaded 2-core machine starts it slowly
    try:
        with server.client() as c:
            c.timeout = httpx.Timeout(60)
            import_guest_image(c, guest)
            target_dir = server.state_dir / "backup-target"
            r = c.post(
                "/v1/backup-targets",
                json={
                    "name": "local",
                    "type": "local",
                    "config": {"path": str(target_dir)},
                    "chunk_size": CHUNK,
                },
            )
            assert r.status_code == 201, r.text
            project = c.get("/v1/projects", params={"name": "default"}).json()["items"][0]["id"]
            r = c.post(
                "/v1/vms",
                json={
                    "name": "src",
                    "image": "test-guest",
                    "flavor": "tiny",
                    "user_data": USER_DATA,
                    "project_id": project,
                },
            )
            assert r.status_code == 202, r.text
            vm_id = r.json()["vm"]["id"]
            done = wait_task(c, r.json()["task_id"], timeout_s=300)
            assert done["state"] == "succeeded", done["error"]
            wait_console(c, vm_id, "TICK 2", timeout_s=180)
            yield Env(server, c, vm_id, target_dir, {})
    finally:
        destroy_server(server)


def test_full_then_incremental_reads_only_changed_chunks_without_pausing(env: Env) -> None:
    c, vm_id = env.c, env.vm_id
    full, task = _backup(c, vm_id)
    size = 1 << 30  # flavor tiny: 1 GiB disk
    assert full["state"] == "available" and full["mode"] == "full", full
    assert "first backup" in str(full["reason"]) and full["consistency"] == "crash"
    assert full["size_bytes"] == size and full["chunks_total"] == size // CHUNK
    assert task["result"]["mode"] == "full"

    # the guest writes 3 MiB of random data at 100 MiB and a marker at sector 300000 (~146 MiB)
    type_on_console(
        env.server,
        c,
        vm_id,
        "dd if=/dev/urandom of=/dev/vda bs=1M count=3 seek=100 conv=fsync 2>/dev/null; "
        "echo MARKER-B-0042 | dd of=/dev/vda bs=512 seek=300000 conv=notrunc,fsync 2>/dev/null; "
        "echo WROTE-$((40+2))",
        "WROTE-42",
    )
    ticks_before = _ticks(c, vm_id)
    r = c.post("/v1/backups", json={"vm": vm_id})
    assert r.status_code == 202, r.text
    states = set()
    deadline = time.monotonic() + 600
    while (task := c.get(f"/v1/tasks/{r.json()['task_id']}").json())["state"] not in ("succeeded", "failed"):
        states.add(c.get(f"/v1/vms/{vm_id}").json()["state"])
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert task["state"] == "succeeded", task
    inc = c.get(f"/v1/backups/{r.json()['backup']['id']}").json()
    assert inc["mode"] == "incremental" and inc["parent_id"] == full["id"], inc
    # only the dirty 64 KiB granules of the two changed chunks were read from QEMU, not the chunks
    # (let alone the 1 GiB disk): the marker's chunk is kept as a 64 KiB patch over the full
    # backup's chunk; the 3 MiB one, past half a chunk, is rebuilt whole from the full backup's copy
    assert inc["chunks_changed"] == 2, inc
    assert task["result"]["bytes_read"] == 3 * MiB + 64 * 1024, task["result"]
    store = task["result"]["store"]
    assert store["chunks_patched"] == 1 and store["chunks_rebuilt"] == 1, store
    assert inc["bytes_read"] * 100 < size
    # the guest was never paused: the VM stayed running and kept ticking through the backup
    assert states == {"running"}, states
    time.sleep(2)
    assert _ticks(c, vm_id) > ticks_before
    env.backups.update(full=full, inc=inc)
    # the tenant key handed to the agent for each backup is not kept in the operation rows
    with sqlite3.connect(env.server.state_dir / "novacron.db") as db:
        payloads = [
            row[0] for row in db.execute("SELECT payload FROM host_operations WHERE op = 'backup_disk'")
        ]
    assert len(payloads) == 2 and all("secrets" not in p and "key" not in p for p in payloads), payloads
    # the platform's metrics count what each backup read and stored, and time it
    lines = [line.rpartition(" ") for line in c.get("/metrics").text.splitlines() if line[:1] != "#"]
    samples = {name: float(value) for name, _, value in lines}
    for backup in (full, inc):
        labels = f'{{mode="{backup["mode"]}",target_type="local"}}'
        assert samples[f"novacron_backup_read_bytes_total{labels}"] == backup["bytes_read"], samples
        assert samples[f"novacron_backup_uploaded_bytes_total{labels}"] == backup["bytes_uploaded"], samples
        assert samples[f"novacron_backup_duration_seconds_count{labels}"] == 1, samples


def test_restore_to_new_vm_boots_with_the_data_and_is_byte_identical(env: Env) -> None:
    c, server = env.c, env.server
    inc = env.backups["inc"]
    # the source, stopped right after its backup (its guest writes nothing to the disk meanwhile)
    _power(c, env.vm_id, "stop")
    r = c.post(f"/v1/backups/{inc['id']}/restore", json={"new_vm": "restored"})
    assert r.status_code == 202, r.text
    task = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert task["state"] == "succeeded", task
    new_id = r.json()["vm_id"]
    text = wait_console(c, new_id, "DISK-B: MARKER-B-0042", timeout_s=180)
    assert "hostname=restored" in text
    _power(c, new_id, "stop")
    compare = subprocess.run(
        ["qemu-img", "compare", "-U", str(_disk(server, env.vm_id)), str(_disk(server, new_id))],
        capture_output=True,
        text=True,
    )
    assert compare.returncode == 0 and "identical" in compare.stdout, compare.stdout + compare.stderr
    # restore over an existing stopped VM: it must be stopped, and then its disk is the backup's
    r = c.post(f"/v1/backups/{env.backups['full']['id']}/restore", json={"vm": new_id})
    assert r.status_code == 202, r.text
    done = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert done["state"] == "succeeded", done["error"]
    data = subprocess.run(
        [
            "qemu-img",
            "dd",
            "-f",
            "qcow2",
            "-O",
            "raw",
            f"if={_disk(server, new_id)}",
            "of=/dev/stdout",
            "bs=512",
            "skip=300000",
            "count=1",
        ],
        capture_output=True,
    ).stdout
    assert b"MARKER-B" not in data  # the full backup predates the marker
    _power(c, env.vm_id, "start")


def test_instant_restore_runs_the_vm_from_the_backup_while_its_disk_is_copied_in(env: Env) -> None:
    c, server = env.c, env.server
    inc = env.backups["inc"]
    url = f"/v1/backups/{inc['id']}/restore"
    for body, field in (
        ({"vm": env.vm_id, "instant": True}, "body.instant"),
        ({"new_vm": "slow", "copy_rate_mib": 1}, "body.copy_rate_mib"),
    ):
        r = c.post(url, json=body)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
    # the source has not written to its disk since this backup: its disk is what a restore must give
    r = c.post(url, json={"new_vm": "instant", "instant": True, "copy_rate_mib": 1})
    assert r.status_code == 202, r.text
    task_id, new_id = r.json()["task_id"], r.json()["vm_id"]
    disk = _disk(server, new_id)
    copying: list[dict[str, Any]] = []
    deadline = time.monotonic() + 600
    while (task := c.get(f"/v1/tasks/{task_id}").json())["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, task
        if task["current_step"] == "copy":
            info = subprocess.run(
                ["qemu-img", "info", "-U", "--output=json", str(disk)], capture_output=True, text=True
            )
            backing = info.returncode == 0 and "nbd+unix" in info.stdout
            copying.append({"vm": c.get(f"/v1/vms/{new_id}").json()["state"], "backing": backing,
                            "progress": (task["result"] or {}).get("progress")})  # fmt: skip
        time.sleep(0.2)
    assert task["state"] == "succeeded", task["error"]
    # the VM ran while its disk still read from the backup over NBD, and the copy showed progress
    assert any(s["vm"] == "running" and s["backing"] for s in copying), copying
    assert any(s["progress"] and 0 < s["progress"]["fraction"] < 1 for s in copying), copying
    assert task["kind"] == "backup.restore_instant" and task["result"]["vm_id"] == new_id, task
    wait_console(c, new_id, "DISK-B: MARKER-B-0042", timeout_s=180)  # it read the backup's data
    vm = c.get(f"/v1/vms/{new_id}").json()
    assert vm["state"] == "running" and vm["task_state"] is None, vm
    # standalone now: no backing file, and the backup's NBD server has ended
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(disk)],
                                     capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert "backing-filename" not in info, info
    assert not subprocess.run(["pgrep", "-f", f"nbdkit.*{new_id}"], capture_output=True).stdout
    _power(c, new_id, "stop")  # QEMU writes its cached qcow2 metadata out: the file is then complete
    compare = subprocess.run(
        ["qemu-img", "compare", "-U", str(_disk(server, env.vm_id)), str(disk)],
        capture_output=True,
        text=True,
    )
    assert compare.returncode == 0 and "identical" in compare.stdout, compare.stdout + compare.stderr
    r = c.delete(f"/v1/vms/{new_id}")
    assert r.status_code == 202 and wait_task(c, r.json()["task_id"])["state"] == "succeeded"


def test_bitmap_survives_restart_and_a_lost_bitmap_means_a_full_backup(env: Env) -> None:
    c, vm_id = env.c, env.vm_id
    wait_console(c, vm_id, "TICK 1", timeout_s=180)
    # the source was stopped and started since its last backup: the bitmap was kept in the qcow2
    after_restart, _ = _backup(c, vm_id)
    assert after_restart["mode"] == "incremental", after_restart
    # QEMU killed: the bitmap is left "in use" in the image and cannot be trusted
    key = hashlib.sha256(vm_id.encode()).hexdigest()[:16]
    pid = int((env.server.state_dir / "run" / f"{key}.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while c.get(f"/v1/vms/{vm_id}").json()["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    _power(c, vm_id, "start")
    lost, _ = _backup(c, vm_id)
    assert lost["mode"] == "full", lost
    assert "inconsistent" in str(lost["reason"]) or "no change-tracking bitmap" in str(lost["reason"]), lost
    # and from there, incremental again
    again, _ = _backup(c, vm_id)
    assert again["mode"] == "incremental" and again["chunks_changed"] <= 1, again
    env.backups["latest"] = again


def test_restore_test_and_dr_drill_report_rpo_and_rto(env: Env) -> None:
    c = env.c
    latest = env.backups["latest"]
    r = c.post(f"/v1/backups/{latest['id']}/restore-test", json={"marker": "DISK-B: MARKER-B-0042"})
    assert r.status_code == 202, r.text
    done = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert done["state"] == "succeeded", done["error"]
    result = c.get(f"/v1/backups/{latest['id']}").json()["restore_test_result"]
    assert result["ok"] is True and result["boot_s"] > 0, result
    assert c.get(f"/v1/vms/{r.json()['vm_id']}").status_code == 404  # the scratch VM is gone

    r = c.post(
        "/v1/dr/runbooks",
        json={
            "name": "site-a",
            "project_id": c.get("/v1/projects", params={"name": "default"}).json()["items"][0]["id"],
            "steps": [{"vm": "src", "name": "src-dr", "wait_for": "DISK-B: MARKER-B-0042"}],
            "rpo_target_s": 3600,
            "rto_target_s": 900,
        },
    )
    assert r.status_code == 201, r.text
    runbook = r.json()
    r = c.post(f"/v1/dr/runbooks/{runbook['id']}/drill")
    assert r.status_code == 202, r.text
    task = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert task["state"] == "succeeded", task
    shown = c.get(f"/v1/dr/runbooks/{runbook['id']}").json()
    drill = shown["last_drill"]
    assert drill["ok"] and drill["rto_met"] and drill["rpo_met"], drill
    assert 0 < drill["rto_s"] < 900 and drill["vms"][0]["backup_id"] == latest["id"]
    assert 0 <= drill["vms"][0]["rpo_s"] < 3600
    assert shown["rpo"][0]["rpo_met"] is True
    assert c.get(f"/v1/vms/{drill['vms'][0]['vm_id']}").json()["state"] == "running"


def test_legal_hold_blocks_delete_even_for_admin_until_compliance_releases(env: Env) -> None:
    c = env.c
    full = env.backups["full"]
    r = c.post(
        "/v1/users",
        json={"username": "auditor", "password": PW, "role": "compliance", "tenant_id": full["tenant_id"]},
    )
    assert r.status_code == 201, r.text
    with env.server.client(env.server.token("auditor", PW, full["tenant_id"])) as officer:
        assert c.post(f"/v1/backups/{full['id']}/hold", json={"reason": "x"}).status_code == 403
        r = officer.post(f"/v1/backups/{full['id']}/hold", json={"reason": "case 2026-17"})
        assert r.status_code == 200 and r.json()["legal_hold"] is True, r.text
        r = c.delete(f"/v1/backups/{full['id']}")
        assert r.status_code == 409 and "legal hold" in r.json()["detail"], r.text
        assert officer.delete(f"/v1/backups/{full['id']}").status_code == 403
        assert c.post(f"/v1/backups/{full['id']}/release").status_code == 403
        assert officer.post(f"/v1/backups/{full['id']}/release").json()["legal_hold"] is False
    assert c.delete(f"/v1/backups/{full['id']}").status_code == 204
    assert c.get(f"/v1/backups/{full['id']}").status_code == 404


def test_restore_disk_as_image_boots_a_vm_with_the_data(env: Env) -> None:
    c = env.c
    r = c.post(f"/v1/backups/{env.backups['latest']['id']}/restore", json={"image_name": "src-disk"})
    assert r.status_code == 202, r.text
    done = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert done["state"] == "succeeded", done["error"]
    image = c.get(f"/v1/images/{r.json()['image_id']}").json()
    assert image["status"] == "active" and image["virtual_size_bytes"] == 1 << 30, image
    project = c.get("/v1/projects", params={"name": "default"}).json()["items"][0]["id"]
    r = c.post(
        "/v1/vms",
        json={
            "name": "from-disk",
            "image": image["id"],
            "flavor": "tiny",
            "user_data": USER_DATA,
            "project_id": project,
        },
    )
    assert r.status_code == 202, r.text
    done = wait_task(c, r.json()["task_id"], timeout_s=300)
    assert done["state"] == "succeeded", done["error"]
    wait_console(c, r.json()["vm"]["id"], "DISK-B: MARKER-B-0042", timeout_s=180)
    _power(c, r.json()["vm"]["id"], "stop")


def test_cli_backup_list_show_and_runbook(env: Env, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "novacron" / "credentials.json", env.server)
    cli.ok("login", "--server", env.server.url, "--username", "admin", "--password-stdin",
           stdin=env.server.admin_password + "\n")  # fmt: skip
    made = cli.ok("backup", "create", "src", "--json").json()
    assert made["state"] == "available" and made["mode"] == "incremental", made
    table = cli.ok("backup", "list", "src").out
    assert made["id"] in table and "incremental" in table
    shown = cli.ok("backup", "show", made["id"], "--json").json()
    assert shown["parent_id"] and shown["bytes_read"] <= 4 * CHUNK
    drill = cli.ok("dr", "runbook", "show", "site-a", "--json").json()
    assert drill["last_drill"]["ok"] is True and drill["rpo"][0]["backup_id"]
    r = cli("backup", "restore", made["id"], "--vm", "src")
    assert r.code != 0 and "stop it" in r.err, r.err  # the source runs: refused, named clearly


def test_verify_finds_a_corrupted_chunk(env: Env) -> None:
    c = env.c
    latest = env.backups["latest"]
    r = c.post(f"/v1/backups/{latest['id']}/verify")
    assert r.status_code == 202, r.text
    done = wait_task(c, r.json()["task_id"], timeout_s=300)
    assert done["state"] == "succeeded", done["error"]
    assert c.get(f"/v1/backups/{latest['id']}").json()["verify_result"]["ok"] is True
    # failure injection: flip one byte in every stored chunk of the target
    chunks = [p for p in (env.target_dir / "chunks").rglob("*") if p.is_file()]
    assert chunks
    for p in chunks:
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0xFF
        p.write_bytes(bytes(data))
    r = c.post(f"/v1/backups/{latest['id']}/verify")
    task = wait_task(c, r.json()["task_id"], timeout_s=300)
    assert task["state"] == "failed" and "damaged" in str(task["error"]), task
    result = c.get(f"/v1/backups/{latest['id']}").json()["verify_result"]
    assert result["ok"] is False and result["bad_chunks"] >= 1, result
    # the damaged chunks were put out of the way: the next backup is full and stores them anew
    fresh, _ = _backup(c, env.vm_id)
    assert fresh["mode"] == "full" and "verify" in str(fresh["reason"]), fresh
    r = c.post(f"/v1/backups/{fresh['id']}/verify")
    assert wait_task(c, r.json()["task_id"], timeout_s=300)["state"] == "succeeded"


def test_policy_schedules_backups_and_prunes_by_retention(env: Env) -> None:
    c = env.c
    r = c.post(
        "/v1/backup-policies",
        json={"name": "every-10s", "vm": "src", "interval_s": 10, "retention": {"keep_last": 1}},
    )
    assert r.status_code == 201, r.text
    policy = r.json()
    try:
        deadline = time.monotonic() + 300
        taken: set[str] = set()
        while True:
            params = {"policy_id": policy["id"], "limit": 100}
            mine = [
                b for b in c.get("/v1/backups", params=params).json()["items"] if b["state"] == "available"
            ]
            taken |= {b["id"] for b in mine}
            # two scheduled backups were taken, and retention keeps only the newest of them
            if len(taken) >= 2 and len(mine) == 1:
                break
            assert time.monotonic() < deadline, (taken, mine)
            time.sleep(1)
    finally:
        assert c.delete(f"/v1/backup-policies/{policy['id']}").status_code == 204


def test_backup_storage_quota_counts_refuses_at_the_limit_and_frees_on_delete(env: Env) -> None:
    c = env.c
    project = default_project(c)
    deadline = time.monotonic() + 300
    while True:  # a backup the policy queued before it was deleted is charged when it completes
        items = c.get("/v1/backups", params={"limit": 100}).json()["items"]
        if not any(b["state"] in ("pending", "running") for b in items):
            break
        assert time.monotonic() < deadline, items
        time.sleep(1)
    if not any(b["state"] == "available" for b in items):  # run alone: take one
        items.append(_backup(c, env.vm_id)[0])
    available = [b for b in items if b["state"] == "available"]
    gib = {b["id"]: -(-int(b["size_bytes"]) // (1 << 30)) for b in available}
    held = sum(gib.values())
    # every available backup holds its disk's size (1 GiB here); the pruned and deleted ones nothing
    assert held == len(available) > 0, available
    assert _used(c, {"project_id": project}, "backup_storage_gb") == held
    _set_limits(c, {"project_id": project}, {"backup_storage_gb": held})
    try:
        r = c.post("/v1/backups", json={"vm": env.vm_id})
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json"), (
            r.text
        )
        policy = r.json()["policy"]
        assert (policy["resource"], policy["used"], policy["limit"], policy["node"]) == (
            "backup_storage_gb",
            held,
            held,
            f"project:{project}",
        ), policy
        assert "new backup of VM 'src'" in r.json()["detail"]
        victim = next(b for b in available if not b["legal_hold"])
        assert c.delete(f"/v1/backups/{victim['id']}").status_code == 204
        assert _used(c, {"project_id": project}, "backup_storage_gb") == held - gib[victim["id"]]
        taken, _ = _backup(c, env.vm_id)
        assert _used(c, {"project_id": project}, "backup_storage_gb") == held
        assert _used(c, {"tenant_id": str(taken["tenant_id"])}, "backup_storage_gb") == held
        assert not c.post("/v1/quota/reconcile", json={}).json()["drift"]
    finally:
        _set_limits(c, {"project_id": project}, {"backup_storage_gb": None})


def _restored_files(env: Env, backup_id: str, tmp_path: Path, *names: str) -> list[str]:
    """The contents of ``/name``s on the ext2 filesystem of a backup's disk ('' for a missing one)."""
    c = env.c
    r = c.post(f"/v1/backups/{backup_id}/restore", json={"image_name": f"fs-{backup_id[-8:]}"})
    assert r.status_code == 202, r.text
    done = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert done["state"] == "succeeded", done["error"]
    image = env.server.state_dir / "images" / r.json()["image_id"] / "disk"
    raw = tmp_path / f"{backup_id}.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    cat = [
        subprocess.run(["debugfs", "-R", f"cat /{n}", str(raw)], capture_output=True, text=True)
        for n in names
    ]
    return [out.stdout for out in cat]


def test_guest_agent_freezes_the_filesystem_for_an_application_consistent_backup(
    env: Env, tmp_path: Path
) -> None:
    """Last in the module: it puts a filesystem on the source VM's disk. Writeback is held off in the
    guest, so a file written just before a backup is only in its page cache: a crash-consistent
    backup lacks it, one taken with qemu-guest-agent's fsfreeze (which flushes) has it."""
    server, c, vm = env.server, env.c, env.vm_id
    type_on_console(server, c, vm, "echo 360000 > /proc/sys/vm/dirty_expire_centisecs; "
             "echo 0 > /proc/sys/vm/dirty_writeback_centisecs; mke2fs -q -F /dev/vda && mkdir -p /mnt/d && "
             "mount -t ext2 /dev/vda /mnt/d && sync && echo FS-$((40+2))-READY", "FS-42-READY")  # fmt: skip
    type_on_console(server, c, vm, "echo before-agent > /mnt/d/crash.txt; echo W1-$((40+2))", "W1-42")
    crash, _ = _backup(c, vm)
    assert crash["consistency"] == "crash"
    assert _restored_files(env, str(crash["id"]), tmp_path, "crash.txt") == [""]
    # the tenant starts the agent on its virtio-serial port (udev would name it; the test guest has none)
    start_agent = START_QGA + "; sleep 1; echo QGA-$((40+2))"
    type_on_console(server, c, vm, start_agent, "QGA-42")
    type_on_console(server, c, vm, "echo with-agent > /mnt/d/app.txt; echo W2-$((40+2))", "W2-42")
    app, _ = _backup(c, vm)
    assert app["consistency"] == "application", app
    assert _restored_files(env, str(app["id"]), tmp_path, "app.txt", "crash.txt") == [
        "with-agent\n",
        "before-agent\n",
    ]
    # thawed: the guest writes to the filesystem again
    type_on_console(server, c, vm, "echo after > /mnt/d/after.txt && echo THAWED-$((40+2))", "THAWED-42")


def _files(store: Path, backup_id: str) -> list[Path]:
    """The files of one backup's indexes in a local store."""
    return [p for p in store.glob(f"snapshots/*/{backup_id}/**/*") if p.is_file()]


def test_a_target_holding_backups_is_deleted_only_with_force(env: Env, tmp_path: Path) -> None:
    """Issue 17 item 7: a second target gets a backup; deleting it is refused (409, saying how),
    with force the backup goes too, and the module's own target is the only one again. Last in the
    module: a second target makes every backup that names none ask which one."""
    c = env.c
    r = c.post(
        "/v1/backup-targets",
        json={
            "name": "spare",
            "type": "local",
            "config": {"path": str(tmp_path / "spare")},
            "chunk_size": CHUNK,
        },
    )
    assert r.status_code == 201, r.text
    try:
        refused = c.post("/v1/backups", json={"vm": env.vm_id})
        assert refused.status_code == 422
        assert (
            refused.json()["errors"][0]["reason"]
            == "there are several backup targets (local, spare): name one"
        )
        snap, _ = _backup(c, env.vm_id, target="spare")
        r = c.delete("/v1/backup-targets/spare")
        assert r.status_code == 409, r.text
        why = "1 backup stored on it: delete them first, or delete the target with force (deletes them too)"
        assert r.json()["errors"] == [{"field": "path.target_id", "reason": why}]
        assert r.json()["detail"] == f"Backup target spare holds backups: {why}."
        assert c.get(f"/v1/backups/{snap['id']}").status_code == 200
        assert _files(tmp_path / "spare", snap["id"])
    finally:
        r = c.delete("/v1/backup-targets/spare", params={"force": "true"})
    assert r.status_code == 204, r.text
    assert c.get(f"/v1/backups/{snap['id']}").status_code == 404
    assert [t["name"] for t in c.get("/v1/backup-targets").json()["items"]] == ["local"]
    # the backup's index left the store with it; the directory itself is the administrator's
    assert _files(tmp_path / "spare", snap["id"]) == []


def _raw_at(path: Path, offset: int, length: int) -> bytes:
    """Bytes of a qcow2 file (the volume's) at ``offset``, read without QEMU's lock."""
    out = path.with_suffix(".raw")
    subprocess.run(
        ["qemu-img", "convert", "-U", "-O", "raw", str(path), str(out)], capture_output=True, check=True
    )
    try:
        with out.open("rb") as f:
            f.seek(offset)
            return f.read(length)
    finally:
        out.unlink()


def test_a_backup_holds_the_attached_volume_incrementally_and_restores_it_in_place(
    env: Env, tmp_path: Path
) -> None:
    c, server = env.c, env.server
    if c.get(f"/v1/vms/{env.vm_id}").json()["state"] != "running":
        _power(c, env.vm_id, "start")
        wait_console(c, env.vm_id, "TICK", timeout_s=180)
    project = default_project(c)
    r = c.post("/v1/volumes", json={"name": "bk-data", "size_gb": 1, "project_id": project})
    assert r.status_code == 202, r.text
    vid = r.json()["volume"]["id"]
    assert wait_task(c, r.json()["task_id"], timeout_s=180)["state"] == "succeeded"
    r = c.post(f"/v1/volumes/{vid}/attach", json={"vm": env.vm_id})
    assert r.status_code == 202, r.text
    assert wait_task(c, r.json()["task_id"], timeout_s=180)["state"] == "succeeded"
    # the guest finds the hot-plugged disk by its serial and writes a marker at 1 MiB
    dev = f"$(grep -l {vid[:20]} /sys/block/vd*/serial | head -n1 | cut -d/ -f4)"
    write = "echo {m} | dd of=/dev/{d} bs=512 seek={s} conv=notrunc,fsync 2>/dev/null; echo W-$((1+{n}))"
    type_on_console(server, c, env.vm_id, "sleep 2; " + write.format(m="VOL-ONE", d=dev, s=2048, n=0), "W-1")
    first, _ = _backup(c, env.vm_id)
    disks = {d["name"]: d for d in first["disks"]}
    assert disks[vid]["volume_id"] == vid and disks[vid]["size"] == 1 << 30, first["disks"]
    assert disks[vid]["mode"] == "full" and "vda" in disks, first["disks"]
    # the guest writes 64 KiB more on the volume: the next backup reads just that of it
    type_on_console(server, c, env.vm_id, write.format(m="VOL-TWO", d=dev, s=16384, n=1), "W-2")
    second, task = _backup(c, env.vm_id)
    disks = {d["name"]: d for d in task["result"]["disks"]}
    assert second["mode"] == "incremental" and disks[vid]["mode"] == "incremental", task["result"]
    assert disks[vid]["bytes_read"] == 64 * 1024, disks
    assert disks["vda"]["bytes_read"] <= 64 * 1024, disks  # the guest wrote nothing on vda
    # a late write, then restore over the stopped VM: the volume holds the backup's bytes again
    type_on_console(server, c, env.vm_id, write.format(m="VOL-LATE", d=dev, s=16384, n=2), "W-3")
    _power(c, env.vm_id, "stop")
    path = server.state_dir / "volumes" / f"{vid}.qcow2"
    assert _raw_at(path, 16384 * 512, 8) == b"VOL-LATE"
    r = c.post(f"/v1/backups/{second['id']}/restore", json={"vm": env.vm_id})
    assert r.status_code == 202, r.text
    done = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert done["state"] == "succeeded", done["error"]
    assert done["result"]["disks"] == ["vda", vid], done["result"]
    assert _raw_at(path, 16384 * 512, 7) == b"VOL-TWO" and _raw_at(path, 2048 * 512, 7) == b"VOL-ONE"
    # restore to a new VM: a new volume in the project (charged), attached to it, byte-identical
    used = _used(c, {"project_id": project}, "volume_gb")
    r = c.post(f"/v1/backups/{second['id']}/restore", json={"new_vm": "restored-vol"})
    assert r.status_code == 202, r.text
    done = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert done["state"] == "succeeded", done["error"]
    new_id = r.json()["vm_id"]
    (new_vol,) = c.get("/v1/volumes", params={"vm_id": new_id}).json()["items"]
    assert new_vol["status"] == "in-use" and new_vol["size_gb"] == 1 and new_vol["id"] != vid, new_vol
    assert _used(c, {"project_id": project}, "volume_gb") == used + 1
    assert c.get(f"/v1/vms/{new_id}").json()["disk_gb"] == 1  # the root disk alone, not the volume
    _power(c, new_id, "stop")
    for source, copy in ((path, server.state_dir / "volumes" / f"{new_vol['id']}.qcow2"),
                         (_disk(server, env.vm_id), _disk(server, new_id))):  # fmt: skip
        compare = subprocess.run(
            ["qemu-img", "compare", "-U", str(source), str(copy)], capture_output=True, text=True
        )
        assert compare.returncode == 0 and "identical" in compare.stdout, compare.stdout + compare.stderr
    # a restore test of that backup: its scratch VM boots with the volume restored and attached,
    # then both are gone (nothing left charged to the project)
    used = _used(c, {"project_id": project}, "volume_gb")
    r = c.post(f"/v1/backups/{second['id']}/restore-test", json={})
    assert r.status_code == 202, r.text
    done = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert done["state"] == "succeeded", done["error"]
    result = c.get(f"/v1/backups/{second['id']}").json()["restore_test_result"]
    assert result["ok"] is True and result["volumes"] == 1, result
    assert c.get(f"/v1/vms/{r.json()['vm_id']}").status_code == 404
    assert c.get("/v1/volumes", params={"vm_id": r.json()["vm_id"]}).json()["items"] == []
    assert _used(c, {"project_id": project}, "volume_gb") == used
    _detached_volume_backup_and_restore(env, new_id, new_vol["id"], second["id"], tmp_path)


def _detached_volume_backup_and_restore(env: Env, vm_id: str, vid: str, vm_backup: str, tmp: Path) -> None:
    """A detached volume backed up alone (incremental from the bitmap its VM's backup left in the
    file), restored as a new volume that is byte-identical; refusals name the field."""
    c, server = env.c, env.server
    r = c.post(f"/v1/volumes/{vid}/detach")
    assert r.status_code == 202 and wait_task(c, r.json()["task_id"])["state"] == "succeeded", r.text
    path = server.state_dir / "volumes" / f"{vid}.qcow2"
    # a new volume's first backup on its own: whole; the next (nothing written) reads nothing
    key = {"Idempotency-Key": f"volbk-{vid}"}
    r = c.post("/v1/backups", json={"volume": vid}, headers=key)
    assert r.status_code == 202 and r.json()["volume_id"] == vid, r.text
    assert c.post("/v1/backups", json={"volume": vid}, headers=key).json() == r.json()  # replayed
    assert c.get(f"/v1/volumes/{vid}").json()["status"] == "backing-up"
    task = wait_task(c, r.json()["task_id"], timeout_s=300)
    assert task["state"] == "succeeded", task["error"]
    first = c.get(f"/v1/backups/{r.json()['backup']['id']}").json()
    assert first["vm_id"] is None and first["mode"] == "full" and first["disks"][0]["volume_id"] == vid
    assert c.get(f"/v1/volumes/{vid}").json()["status"] == "available"
    # through the CLI: the next backup (nothing written) reads nothing; restored as a new volume
    cli = Cli(tmp / "novacron" / "credentials.json", server)
    cli.ok("login", "--server", server.url, "--username", "admin", "--password-stdin",
           stdin=server.admin_password + "\n")  # fmt: skip
    second = cli.ok("volume", "backup", vid, "--json").json()
    assert second["mode"] == "incremental" and second["bytes_read"] == 0, second
    assert second["parent_id"] == first["id"]
    made = cli.ok("volume", "restore", second["id"], "vol-from-backup", "--json").json()
    assert made["status"] == "available" and made["size_gb"] == 1 and made["source_volume_id"] == vid, made
    copy = server.state_dir / "volumes" / f"{made['id']}.qcow2"
    compare = subprocess.run(
        ["qemu-img", "compare", "-U", str(path), str(copy)], capture_output=True, text=True
    )
    assert compare.returncode == 0 and "identical" in compare.stdout, compare.stdout + compare.stderr
    # refusals: both or neither of vm and volume; an attached volume; a VM's backup as a volume
    for body in ({"vm": vm_id, "volume": vid}, {}):
        r = c.post("/v1/backups", json=body)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.vm", r.text
    r = c.post(f"/v1/backups/{vm_backup}/restore", json={"new_volume": "nope"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.new_volume", r.text
    r = c.post(f"/v1/backups/{second['id']}/restore", json={"new_vm": "nope"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.new_volume", r.text

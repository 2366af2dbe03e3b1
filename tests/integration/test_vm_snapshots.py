"""Live VM snapshots on a real QEMU guest, through the API: a tree of snapshots of the running
guest's disk (one with its RAM), a revert that brings the disk back, the middle snapshot deleted
while the VM runs with the other still whole, and the API's refusals. One server, one VM.

The guest writes markers to three sectors of its own disk (``/dev/vda``) from its shell and reads
them back with its page cache dropped, so what it prints is what the disk holds.
"""

from __future__ import annotations

import json
import re
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

pytestmark = pytest.mark.qemu

#: the guest runs qemu-guest-agent (application-consistent snapshots)
USER_DATA = "#!/bin/sh\n" + START_QGA + "\n"
SECTOR = {"A": 300000, "B": 300001, "C": 300002}


@dataclass
class Env:
    server: Server
    c: httpx.Client
    vm_id: str


@pytest.fixture(scope="module")
def env(guest: Guest) -> Iterator[Env]:
    server = make_server()
    server.start(timeout_s=180)
    try:
        with server.client() as c:
            c.timeout = httpx.Timeout(60)
            import_guest_image(c, guest)
            body = {"name": "snap-vm", "image": "test-guest", "flavor": "tiny", "user_data": USER_DATA,
                    "project_id": default_project(c)}  # fmt: skip
            r = c.post("/v1/vms", json=body)
            assert r.status_code == 202, r.text
            vm_id = r.json()["vm"]["id"]
            done = wait_task(c, r.json()["task_id"], timeout_s=300)
            assert done["state"] == "succeeded", done["error"]
            wait_console(c, vm_id, "NOVACRON-GUEST-READY", timeout_s=180)
            yield Env(server, c, vm_id)
    finally:
        destroy_server(server)


@pytest.fixture(scope="module")
def cli(env: Env, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """The CLI, logged in once as the admin for the module."""
    cli = Cli(tmp_path_factory.mktemp("cli") / "credentials.json", env.server)
    cli.ok("login", "--server", env.server.url, "--username", "admin", "--password-stdin",
           stdin=env.server.admin_password + "\n")  # fmt: skip
    return cli


_calls = iter(range(1000, 10**6))


def _guest(env: Env, command: str, vm_id: str | None = None) -> str:
    """Run ``command`` in the guest's shell (of ``vm_id``, by default the module's VM); what it
    printed (the end mark is computed by the guest's shell, so the echoed line never matches it)."""
    n, vm_id = next(_calls), vm_id or env.vm_id
    type_on_console(env.server, env.c, vm_id, f"echo OUT=$({command})=E$(({n}-1+1))E", f"=E{n}E")
    found = re.findall(rf"OUT=(.*?)=E{n}E", wait_console(env.c, vm_id, f"=E{n}E"))
    assert found, "no answer on the guest's console"
    return str(found[-1]).strip()


def _write(env: Env, marker: str) -> None:
    seek = SECTOR[marker]
    _guest(env, f"echo MARK-{marker}-42 | dd of=/dev/vda bs=512 seek={seek} conv=notrunc,fsync 2>/dev/null")


def _markers(env: Env) -> set[str]:
    """The markers the guest's disk holds (read past its page cache)."""
    read = f"echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=512 skip={SECTOR['A']} count=3 2>/dev/null"
    return set(re.findall(r"MARK-([ABC])-42", _guest(env, f"{read} | tr -d '\\000' | tr '\\n' ' '")))


def _task(env: Env, r: httpx.Response, timeout_s: float = 300) -> dict[str, object]:
    assert r.status_code == 202, r.text
    task = wait_task(env.c, r.json()["task_id"], timeout_s=timeout_s)
    assert task["state"] == "succeeded", task["error"]
    return dict(r.json()["snapshot"])


def _snap(env: Env, name: str, **options: object) -> dict[str, object]:
    r = env.c.post(f"/v1/vms/{env.vm_id}/snapshots", json={"name": name, **options},
                   headers={"Idempotency-Key": f"create-{name}"})  # fmt: skip
    made = _task(env, r)
    return dict(env.c.get(f"/v1/vms/{env.vm_id}/snapshots/{made['id']}").json())


def _tree(env: Env) -> dict[str, dict[str, object]]:
    return {s["name"]: s for s in env.c.get(f"/v1/vms/{env.vm_id}/snapshots").json()["items"]}


def _boots(env: Env) -> int:
    return env.c.get(f"/v1/vms/{env.vm_id}/console-log").text.count("NOVACRON-GUEST-READY")


def _wait_boot(env: Env, boots: int) -> None:
    """Wait until the guest has booted once more than ``boots`` (its shell is up)."""
    deadline = time.monotonic() + 180
    while _boots(env) <= boots:
        assert time.monotonic() < deadline, "the VM did not boot (again)"
        time.sleep(0.3)


def test_revert_to_a_snapshot_and_delete_the_middle_one_while_running(env: Env, cli: Cli) -> None:
    c, base = env.c, f"/v1/vms/{env.vm_id}/snapshots"
    started = time.monotonic()
    _write(env, "A")
    s1 = _snap(env, "s1")  # disk only, through the guest agent's fsfreeze
    assert s1["status"] == "available" and s1["current"] and s1["parent_id"] is None
    assert s1["consistency"] == "application" and s1["vm_state_bytes"] == 0, s1
    _write(env, "B")
    s2 = _snap(env, "s2", memory=True)
    assert s2["consistency"] == "memory" and int(str(s2["vm_state_bytes"])) > 0, s2
    assert s2["parent_id"] == s1["id"] and s2["current"] and not _tree(env)["s1"]["current"]
    _write(env, "C")
    assert _markers(env) == {"A", "B", "C"}

    # an Idempotency-Key replayed answers the same snapshot, and no second one is made
    again = c.post(base, json={"name": "s1"}, headers={"Idempotency-Key": "create-s1"})
    assert again.status_code == 202 and again.json()["snapshot"]["id"] == s1["id"]
    assert len(_tree(env)) == 2

    # a disk-only snapshot: the running VM restarts on the reverted disk
    boots = _boots(env)
    _task(env, c.post(f"{base}/s1/revert", headers={"Idempotency-Key": "revert-s1"}))
    _wait_boot(env, boots)  # it restarted on the reverted disk
    assert c.get(f"/v1/vms/{env.vm_id}").json()["state"] == "running"
    assert _markers(env) == {"A"}
    assert _tree(env)["s1"]["current"]

    # the parent of s2 goes while the VM runs; s2 keeps all its data and takes s1's place
    _task(env, c.request("DELETE", f"{base}/s1", headers={"Idempotency-Key": "delete-s1"}))
    tree = _tree(env)
    assert set(tree) == {"s2"} and tree["s2"]["parent_id"] is None
    boots = _boots(env)
    _task(env, c.post(f"{base}/s2/revert", headers={"Idempotency-Key": "revert-s2"}))
    assert _markers(env) == {"A", "B"}  # the guest resumed where s2 was taken, no boot
    assert _boots(env) == boots and tree["s2"]["id"] == s2["id"] and _tree(env)["s2"]["current"]

    # the CLI draws the tree, the current one marked
    listed = cli.ok("vm", "snapshot-list", "snap-vm")
    assert re.search(r"^\* s2 .*available, memory, RAM", listed.out, re.M), listed.out
    print(f"snapshot tree scenario: {time.monotonic() - started:.1f} s")


def _info(disk: Path) -> dict[str, Any]:
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(disk)],
                         capture_output=True, check=True, text=True).stdout  # fmt: skip
    return dict(json.loads(out))


def _held(env: Env, vm_id: str) -> set[str]:
    """The markers of sectors A..D on ``vm_id``'s disk (read past its page cache)."""
    read = f"echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=512 skip={SECTOR['A']} count=4 2>/dev/null"
    return set(re.findall(r"MARK-([ABCD])-42", _guest(env, f"{read} | tr -d '\\000' | tr '\\n' ' '", vm_id)))


def test_linked_clone_and_full_copy_of_a_snapshot_boot_with_its_data(env: Env, cli: Cli) -> None:
    """A linked clone and a full copy of the running VM's current snapshot s2 (taken with A and B on
    the disk) boot side by side with what s2 held: A and B, not D, written by the source after s2.
    The linked one is an overlay on the snapshot's base; the full one a standalone disk."""
    c, started = env.c, time.monotonic()
    _guest(
        env, f"echo MARK-D-42 | dd of=/dev/vda bs=512 seek={SECTOR['C'] + 1} conv=notrunc,fsync 2>/dev/null"
    )
    # linked without a snapshot is refused (the live disk changes); a snapshot's clone is linked
    r = c.post(f"/v1/vms/{env.vm_id}/clone", json={"name": "no-base", "mode": "linked"})
    assert r.status_code == 409 and "snapshot" in r.text, r.text
    scope = {"project_id": default_project(c)}
    disk_used, disk_gb = _used(c, scope, "disk_gb"), int(c.get(f"/v1/vms/{env.vm_id}").json()["disk_gb"])
    made = cli.ok(
        "vm", "clone", "snap-vm", "--from-snapshot", "s2", "--name", "snap-clone", "--no-wait", "--json"
    )
    clone_id = str(json.loads(made.out)["vm"]["id"])
    # a full copy of s2 (the source is still held by the linked clone's copy: clones share it)
    copied = cli.ok("vm", "clone", "snap-vm", "--from-snapshot", "s2", "--full", "--name", "snap-copy")
    assert "100%" in copied.err, copied.err  # the task's progress bar, to its end
    copy_id = str(c.get("/v1/vms", params={"name": "snap-copy"}).json()["items"][0]["id"])
    wait_console(c, clone_id, "NOVACRON-GUEST-READY", timeout_s=240)
    wait_console(c, copy_id, "NOVACRON-GUEST-READY", timeout_s=240)
    # linked: its disk is an overlay on the snapshot's base, itself thin over the image
    info = _info(env.server.state_dir / "instances" / clone_id / "disk.qcow2")
    assert Path(info["backing-filename"]).parent.name == ".snapbases" and info["actual-size"] < 2 << 20, info
    # full: a standalone disk (no backing file: neither the base nor the image)
    full = _info(env.server.state_dir / "instances" / copy_id / "disk.qcow2")
    assert "backing-filename" not in full and full["virtual-size"] == disk_gb << 30, full
    assert _held(env, clone_id) == {"A", "B"}
    assert _held(env, copy_id) == {"A", "B"}
    assert c.get(f"/v1/vms/{env.vm_id}").json()["task_state"] is None  # the source is free again
    assert _used(c, scope, "disk_gb") == disk_used + 2 * disk_gb  # each clone is charged its disk
    for vm_id in (clone_id, copy_id):
        r = c.delete(f"/v1/vms/{vm_id}")
        assert r.status_code == 202, r.text
        assert wait_task(c, r.json()["task_id"], timeout_s=300)["state"] == "succeeded"
    assert not Path(info["backing-filename"]).exists()  # its last clone gone, the base went too
    print(f"linked clone and full copy of a snapshot, booted and read: {time.monotonic() - started:.1f} s")


def test_refusals_name_the_field(env: Env) -> None:
    c, base = env.c, f"/v1/vms/{env.vm_id}/snapshots"
    bad = c.post(base, json={"name": "Not Valid"}, headers={"Idempotency-Key": "bad-1"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert "name" in bad.text
    missing = c.get(f"{base}/no-such-snapshot")
    assert missing.status_code == 404, missing.text
    assert missing.headers["content-type"].startswith("application/problem+json")
    name = next(iter(_tree(env)))
    taken = c.post(base, json={"name": name}, headers={"Idempotency-Key": "dup-1"})
    assert taken.status_code == 409 and "name" in taken.text, taken.text
    # each snapshot counts one "snapshots" against the project's quota, as an image snapshot does
    scope = {"project_id": default_project(c)}
    assert _used(c, scope, "snapshots") == len(_tree(env))
    _set_limits(c, scope, {"snapshots": len(_tree(env))})
    try:
        over = c.post(base, json={"name": "one-too-many"}, headers={"Idempotency-Key": "over-1"})
        assert over.status_code == 403 and "snapshots" in over.text, over.text
    finally:
        _set_limits(c, scope, {"snapshots": None})


def _backup(env: Env) -> dict[str, object]:
    r = env.c.post("/v1/backups", json={"vm": env.vm_id})
    assert r.status_code == 202, r.text
    task = wait_task(env.c, r.json()["task_id"], timeout_s=600)
    assert task["state"] == "succeeded", task
    return dict(env.c.get(f"/v1/backups/{r.json()['backup']['id']}").json())


def _power(env: Env, action: str) -> None:
    body = {"timeout_s": 30} if action == "stop" else None
    r = env.c.post(f"/v1/vms/{env.vm_id}/actions/{action}", json=body)
    assert r.status_code == 202, r.text
    done = wait_task(env.c, r.json()["task_id"], timeout_s=300)
    assert done["state"] == "succeeded", done["error"]


def test_backups_keep_working_across_snapshots_and_the_stopped_vm_paths(env: Env, cli: Cli) -> None:
    """The backup's change tracking survives a snapshot (the next backup is incremental); a revert
    removes it (the next is full, and says why). Then the stopped VM's paths (qemu-img): a snapshot,
    a revert and a delete while it is stopped, and the guest boots on the reverted disk."""
    c, base = env.c, f"/v1/vms/{env.vm_id}/snapshots"
    target = {"name": "snap-target", "type": "local", "config": {"path": str(env.server.state_dir / "bt")},
              "chunk_size": 4 << 20}  # fmt: skip
    assert c.post("/v1/backup-targets", json=target).status_code == 201
    assert _backup(env)["mode"] == "full"
    s3 = _snap(env, "s3")
    _write(env, "C")
    incremental = _backup(env)
    assert incremental["mode"] == "incremental", incremental
    boots = _boots(env)
    _task(env, c.post(f"{base}/s3/revert", headers={"Idempotency-Key": "revert-s3"}))
    after = _backup(env)
    assert after["mode"] == "full" and "no change-tracking bitmap" in str(after["reason"]), after

    _wait_boot(env, boots)
    _write(env, "C")  # past s3
    _power(env, "stop")
    # through the CLI this time: each command follows its task to the end
    s4 = json.loads(cli.ok("vm", "snapshot-create", "snap-vm", "s4", "--json").out)
    assert s4["consistency"] == "application" and s4["parent_id"] == s3["id"], s4
    reverted = cli.ok("vm", "snapshot-revert", "snap-vm", "s3")
    assert "available" in reverted.out, reverted.out
    assert "done" in cli.ok("vm", "snapshot-delete", "snap-vm", "s4").err
    boots = _boots(env)
    _power(env, "start")
    _wait_boot(env, boots)
    assert _markers(env) == {"A", "B"}
    assert set(_tree(env)) == {"s2", "s3"} and _tree(env)["s3"]["current"]

"""Migration between two hosts on real QEMU and real agents.

Live (local storage: disk mirrored over NBD; shared storage: the same disk opened by the
destination): the guest keeps ticking, never reboots. Limits reach QEMU, progress is shown while a
slow migration runs, a cancel leaves the VM running at the source. Cold: a stopped VM's disk is
copied and it boots on the destination with its data.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    Guest,
    Server,
    destroy_server,
    import_guest_image,
    make_server,
    short_tmpdir,
    wait_console,
    wait_task,
)
from tests.integration.test_cli import Cli
from tests.integration.test_remote_agent import Agent, _wait_host, host_project

TICKER = "#!/bin/sh\n( i=0; while true; do i=$((i+1)); echo tick-$i; sleep 1; done ) &\n"
#: once a volume (serial vol-...) is plugged: writes a marker at 128 KiB once, then every second
#: prints (cache dropped, so from the disk) its first bytes (the host's marker) and the guest's own
VOLUME_READER = (
    "( while true; do for s in /sys/block/vd*/serial; do grep -q '^vol-' $s 2>/dev/null || continue; "
    "d=/dev/$(basename $(dirname $s)); [ -f /tmp/wrote ] || { printf guest-mark-77 | "
    "dd of=$d bs=512 seek=256 conv=notrunc 2>/dev/null; sync; touch /tmp/wrote; }; "
    "echo 3 > /proc/sys/vm/drop_caches; "
    'echo "vol-says $(head -c 8 $d) $(dd if=$d bs=512 skip=256 count=1 2>/dev/null | head -c 13)"; '
    "done; sleep 1; done ) &\n"
)
VOLUME_SAYS = "vol-says ZZZZZZZZ guest-mark-77"
#: prints what the disk holds, then writes a marker: a second boot shows the first one's write
DISK_MARKER = '#!/bin/sh\necho "disk says $(head -c 14 /dev/vda)"\nprintf cold-marker-42 > /dev/vda\nsync\n'
#: and the first bytes of every other virtio disk (a volume attached while the VM was stopped)
DISKS_SAY = (
    DISK_MARKER
    + 'for d in /sys/block/vd[b-z]; do [ -e "$d" ] && echo "blk-says $(head -c 8 /dev/${d##*/})"; done\n'
)


@pytest.fixture
def shared_hosts(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Server, Agent, Path]]:
    """Two hosts whose VM disks live in one shared directory (as on NFS: same path on both)."""
    shared = Path(short_tmpdir("ncs"))
    monkeypatch.setenv("NOVACRON_SHARED_STORAGE_DIR", str(shared))  # read by both processes
    server = make_server()
    server.start(timeout_s=120)
    agent = Agent(server, "node-b")
    try:
        yield server, agent, shared
    finally:
        agent.stop()
        subprocess.run(["pkill", "-9", "-f", f"{agent.state_dir}/"], check=False)
        shutil.rmtree(agent.state_dir, ignore_errors=True)
        destroy_server(server)
        shutil.rmtree(shared, ignore_errors=True)


def _join(c: httpx.Client, agent: Agent) -> dict[str, str]:
    """Start the agent, wait for its host; returns host id -> name."""
    token = c.post("/v1/hosts/join-tokens", json={}).json()
    agent.start(token["join_token"], token["ca_fingerprint"])
    _wait_host(c, "node-b")
    hosts = {h["id"]: h["name"] for h in c.get("/v1/hosts").json()["items"]}
    assert len(hosts) == 2
    return hosts


def _create(c: httpx.Client, name: str, user_data: str) -> str:
    r = c.post(
        "/v1/vms",
        json={
            "name": name,
            "image": "test-guest",
            "flavor": "tiny",
            "user_data": user_data,
            "project_id": host_project(c),
        },
    )
    assert r.status_code == 202, r.text
    assert wait_task(c, r.json()["task_id"])["state"] == "succeeded"
    return str(r.json()["vm"]["id"])


def _wait_ticks(log: Path, above: int = 0, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while not _ticks(log) or max(_ticks(log)) <= above:
        assert time.monotonic() < deadline, (
            f"no ticks past {above}: {log.read_text()[-800:] if log.exists() else ''}"
        )
        time.sleep(0.3)
    return max(_ticks(log))


def _wait_log(log: Path, text: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not log.exists() or text not in (seen := log.read_text(errors="replace")):
        if time.monotonic() > deadline:
            said = [line for line in seen.splitlines() if "vol-says" in line][-3:] if log.exists() else []
            pytest.fail(f"no {text!r} (the guest said {said}): {seen[-1500:] if log.exists() else ''}")
        time.sleep(0.3)


def _moved_at(server: Server, vm_id: str) -> str | None:
    with sqlite3.connect(f"file:{server.state_dir / 'novacron.db'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT moved_at FROM vms WHERE id = ?", (vm_id,)).fetchone()
    return row[0] if row else None


def _console_of(server: Server, agent: Agent, host_name: str, vm_id: str) -> Path:
    base = agent.state_dir if host_name == "node-b" else server.state_dir
    return base / "instances" / vm_id / "console.log"


def _ticks(path: Path) -> list[int]:
    return (
        [int(n) for n in re.findall(r"tick-(\d+)", path.read_text(errors="replace"))] if path.exists() else []
    )


def _location(server: Server, vid: str) -> str:
    """Where the volume's row says its file is (a host path: not shown by the API)."""
    with sqlite3.connect(f"file:{server.state_dir / 'novacron.db'}?mode=ro", uri=True) as db:
        return str(db.execute("SELECT location FROM volumes WHERE id = ?", (vid,)).fetchone()[0])


def _attach_marked_volume(c: httpx.Client, server: Server, vm_id: str) -> str:
    """A 1 GiB volume whose first 64 KiB the host fills with 'Z', hot-plugged into the VM."""
    r = c.post("/v1/volumes", json={"name": "moving-data", "size_gb": 1, "project_id": host_project(c)})
    assert r.status_code == 202 and wait_task(c, r.json()["task_id"])["state"] == "succeeded", r.text
    vol = r.json()["volume"]
    marked = ["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", _location(server, vol["id"])]
    subprocess.run(marked, check=True, capture_output=True)
    r = c.post(f"/v1/volumes/{vol['id']}/attach", json={"vm": vm_id})
    task = wait_task(c, r.json()["task_id"], timeout_s=120)
    assert task["state"] == "succeeded", task["error"]
    return str(vol["id"])


def _volume_follows(server: Server, agent: Agent, host_name: str, vid: str, before: str) -> str:
    """The volume's row names a file on the VM's new host; a copied volume's old file is gone."""
    location = _location(server, vid)
    if host_name == "node-b":  # copied into node-b's own volumes directory
        assert location == str(agent.state_dir / "volumes" / f"{vid}.qcow2"), location
    else:  # back in (or kept in) the file pool's root of the all-in-one host
        assert location == str(server.state_dir / "volumes" / f"{vid}.qcow2"), location
    assert Path(location).exists()
    if location != before:
        assert not Path(before).exists(), "the source's copy of the volume must go"
    return location


def _qemu_count(vm_id: str) -> int:
    out = subprocess.run(["pgrep", "-f", f"qemu-system.*{vm_id}"], capture_output=True, text=True).stdout
    return len(out.split())


def test_live_migration_keeps_the_guest_running_and_drain_empties_a_host(
    two_hosts: tuple[Server, Agent], guest: Guest
) -> None:
    """With a volume attached: copied with the VM (its row follows), the guest reads its data."""
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
                "user_data": TICKER + VOLUME_READER,
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
        vid = _attach_marked_volume(c, server, vm_id)
        location = _location(server, vid)
        _wait_log(source_log, VOLUME_SAYS)  # the guest wrote its marker and reads both from the disk

        # the source's console log goes with the source instance: note where the guest was
        last_on_source = max(_ticks(source_log))
        r = c.post(f"/v1/vms/{vm_id}/migrate", json={})
        assert r.status_code == 202, r.text
        task = wait_task(c, r.json()["task_id"], timeout_s=180)
        assert task["state"] == "succeeded", task["error"]
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
        # the volume moved with it: the guest reads, from its disk, what was written at the source
        _wait_log(target_log, VOLUME_SAYS)
        location = _volume_follows(server, agent, hosts[target], vid, location)
        # node-b never reaches the pool's root: copied there; kept when coming home to it
        assert result["volumes_copied"] == ([vid] if hosts[target] == "node-b" else []), result
        assert result["storage"] == "local"
        assert result["settings"]["downtime_limit_ms"] == 30, "the platform's default downtime limit"
        assert result["guest_pause_ms"] >= result["downtime_ms"]
        assert _moved_at(server, vm_id) is not None
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
        _wait_log(_console_of(server, agent, hosts[source], vm_id), VOLUME_SAYS)
        _volume_follows(server, agent, hosts[source], vid, location)
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


def test_shared_storage_migration_opens_the_same_disk_with_the_limits_asked(
    shared_hosts: tuple[Server, Agent, Path], guest: Guest
) -> None:
    server, agent, shared = shared_hosts
    with server.client() as c:
        hosts = _join(c, agent)
        import_guest_image(c, guest)
        vm_id = _create(c, "shared-ticker", TICKER)
        disk = shared / vm_id / "disk.qcow2"
        assert disk.exists(), "the VM's disk must live on the shared storage"
        source = c.get(f"/v1/vms/{vm_id}").json()["host_id"]
        source_log = _console_of(server, agent, hosts[source], vm_id)
        last_on_source = _wait_ticks(source_log, 2)

        # a local mirror onto the very file it reads would destroy the disk: refused, VM untouched
        r = c.post(f"/v1/vms/{vm_id}/migrate", json={"storage": "local"})
        task = wait_task(c, r.json()["task_id"], timeout_s=120)
        assert task["state"] == "failed" and "share" in str(task["error"]), task
        assert c.get(f"/v1/vms/{vm_id}").json()["host_id"] == source
        assert _qemu_count(vm_id) == 1

        r = c.post(
            f"/v1/vms/{vm_id}/migrate",
            json={
                "storage": "shared",
                "max_downtime_ms": 120,
                "max_bandwidth_mbps": 4000,
                "auto_converge": True,
            },
        )
        assert r.status_code == 202, r.text
        task = wait_task(c, r.json()["task_id"], timeout_s=180)
        assert task["state"] == "succeeded", task["error"]
        result = task["result"]
        assert isinstance(result, dict) and result["storage"] == "shared"
        # what QEMU ran with (query-migrate-parameters on the source)
        assert result["settings"] == {
            "downtime_limit_ms": 120,
            "max_bandwidth_bps": 4000 * 125_000,
            "auto_converge": True,
        }
        vm = c.get(f"/v1/vms/{vm_id}").json()
        assert vm["host_id"] != source and vm["state"] == "running"
        target_log = _console_of(server, agent, hosts[vm["host_id"]], vm_id)
        _wait_ticks(target_log, last_on_source + 2, 30)
        ticks = _ticks(target_log)
        assert ticks == sorted(ticks) and "NOVACRON-GUEST-UP" not in target_log.read_text()
        assert not source_log.parent.exists(), "the source instance must be gone"
        assert disk.exists(), "the shared disk stays when the source instance goes"
        assert _qemu_count(vm_id) == 1
        assert _moved_at(server, vm_id) is not None

        # cold, back again: nothing is copied, the VM boots over there from the same disk
        r = c.post(f"/v1/vms/{vm_id}/actions/stop")
        assert wait_task(c, r.json()["task_id"], timeout_s=120)["state"] == "succeeded"
        r = c.post(f"/v1/vms/{vm_id}/migrate", json={})
        task = wait_task(c, r.json()["task_id"], timeout_s=120)
        assert task["state"] == "succeeded", task["error"]
        assert task["kind"] == "vm.cold_migrate" and task["result"]["storage"] == "shared"
        # and it stays so through the reports of its new host (several, one a second)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            vm = c.get(f"/v1/vms/{vm_id}").json()
            assert vm["host_id"] == source and vm["state"] == "stopped", vm
            time.sleep(0.5)
        assert disk.exists() and not target_log.parent.exists()
        r = c.post(f"/v1/vms/{vm_id}/actions/start")
        assert wait_task(c, r.json()["task_id"], timeout_s=120)["state"] == "succeeded"
        wait_console(c, vm_id, "NOVACRON-GUEST-UP", 120)
        assert _qemu_count(vm_id) == 1


def test_slow_migration_shows_progress_and_cancel_leaves_the_vm_at_the_source(
    two_hosts: tuple[Server, Agent], guest: Guest, tmp_path: Path
) -> None:
    server, agent = two_hosts
    with server.client() as c:
        hosts = _join(c, agent)
        import_guest_image(c, guest)
        vm_id = _create(c, "slow-ticker", TICKER)
        source = c.get(f"/v1/vms/{vm_id}").json()["host_id"]
        target = next(h for h in hosts if h != source)
        source_log = _console_of(server, agent, hosts[source], vm_id)
        _wait_ticks(source_log, 2)
        ram_used_before = c.get(f"/v1/hosts/{target}").json()["ram_mb_used"]

        r = c.post(f"/v1/vms/{vm_id}/migrate", json={"max_bandwidth_mbps": 0})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.max_bandwidth_mbps", r.text
        r = c.post(f"/v1/vms/{vm_id}/migrate", json={"storage": "nfs"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.storage", r.text

        # 4 Mbit/s: the guest's RAM takes minutes to move (asked through the CLI)
        cli = Cli(tmp_path / "novacron" / "credentials.json", server)
        cli.ok(
            "login",
            "--server",
            server.url,
            "--username",
            "admin",
            "--password-stdin",
            stdin=server.admin_password + "\n",
        )
        started = cli.ok(
            "vm", "migrate", vm_id, "--host", target, "--max-bandwidth", "4", "--no-wait", "--json"
        )
        task_id = started.json()["task_id"]
        deadline = time.monotonic() + 180
        seen: dict[str, object] = {}
        while True:
            task = c.get(f"/v1/tasks/{task_id}").json()
            assert task["state"] in ("pending", "running"), task["error"]
            detail = (task["result"] or {}).get("progress")
            if detail and detail.get("ram", {}).get("transferred", 0) > 0 and 0 < task["progress"] < 100:
                seen = {"progress": task["progress"], **detail}
                break
            assert time.monotonic() < deadline, task
            time.sleep(0.5)
        assert seen["settings"]["max_bandwidth_bps"] == 4 * 125_000, seen  # type: ignore[index]
        assert "disk" in seen or seen["status"] == "active", seen
        # the transfer goes on: the task's progress moves (reported every few seconds; under load later)
        deadline = time.monotonic() + 60
        while (later := c.get(f"/v1/tasks/{task_id}").json())["result"]["progress"]["ram"][
            "transferred"
        ] <= seen["ram"]["transferred"]:  # type: ignore[index]
            assert later["state"] == "running" and time.monotonic() < deadline, later
            time.sleep(0.5)

        assert cli.ok("task", "cancel", task_id, "--json").json()["cancel_requested"] is True
        deadline = time.monotonic() + 120
        while (task := c.get(f"/v1/tasks/{task_id}").json())["state"] in ("pending", "running"):
            assert time.monotonic() < deadline, task
            time.sleep(0.5)
        assert task["state"] == "cancelled" and "Cancelled" in str(task["error"]), task
        vm = c.get(f"/v1/vms/{vm_id}").json()
        assert vm["host_id"] == source and vm["state"] == "running" and vm["task_state"] is None
        assert _qemu_count(vm_id) == 1, "no QEMU may be left on the target"
        assert not _console_of(server, agent, hosts[target], vm_id).parent.exists()
        assert c.get(f"/v1/hosts/{target}").json()["ram_mb_used"] == ram_used_before
        # the guest never stopped at the source
        last = max(_ticks(source_log))
        _wait_ticks(source_log, last + 2, 30)
        assert _moved_at(server, vm_id) is None

        # a finished task, or one that is not a migration, cannot be cancelled
        r = c.post(f"/v1/tasks/{task_id}/cancel")
        assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")
        r = c.post(f"/v1/vms/{vm_id}/actions/pause")
        r = c.post(f"/v1/tasks/{r.json()['task_id']}/cancel")
        assert r.status_code == 409, r.text


def test_cold_migration_by_drain_moves_a_stopped_vm_with_its_disk(
    two_hosts: tuple[Server, Agent], guest: Guest
) -> None:
    server, agent = two_hosts
    with server.client() as c:
        import_guest_image(c, guest)
        vm_id = _create(c, "cold", DISKS_SAY)  # on the all-in-one host, the only one yet
        hosts = _join(c, agent)
        wait_console(c, vm_id, "NOVACRON-USER-DATA-DONE", 120)
        assert "disk says cold-marker-42" not in c.get(f"/v1/vms/{vm_id}/console-log").text
        r = c.post(f"/v1/vms/{vm_id}/actions/stop")
        assert wait_task(c, r.json()["task_id"], timeout_s=120)["state"] == "succeeded"
        source = c.get(f"/v1/vms/{vm_id}").json()["host_id"]
        # a volume attached while it is stopped (recorded only) moves with it like its disk
        vid = _attach_marked_volume(c, server, vm_id)
        before = _location(server, vid)

        r = c.post(f"/v1/hosts/{source}/drain")
        assert r.status_code == 202 and r.json()["left"] == [], r.text
        (task_id,) = r.json()["task_ids"]
        task = wait_task(c, task_id, timeout_s=180)
        assert task["state"] == "succeeded" and task["kind"] == "vm.cold_migrate", task
        assert task["result"]["storage"] == "local"
        vm = c.get(f"/v1/vms/{vm_id}").json()
        assert vm["host_id"] != source and vm["state"] == "stopped" and vm["task_state"] is None
        # node-b does not reach the all-in-one host's volumes dir: copied into its own
        assert hosts[vm["host_id"]] == "node-b" and task["result"]["volumes_copied"] == [vid], task
        _volume_follows(server, agent, "node-b", vid, before)
        assert _moved_at(server, vm_id) is not None
        assert _qemu_count(vm_id) == 0

        r = c.post(f"/v1/vms/{vm_id}/actions/start")
        assert wait_task(c, r.json()["task_id"], timeout_s=120)["state"] == "succeeded"
        wait_console(c, vm_id, "disk says cold-marker-42", 120)
        wait_console(c, vm_id, "blk-says ZZZZZZZZ", 60)  # the volume, whole, on the new host
        assert c.get(f"/v1/vms/{vm_id}").json()["host_id"] == vm["host_id"]

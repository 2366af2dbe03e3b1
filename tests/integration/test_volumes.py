"""Volumes on real QEMU guests: hot-plug, a marker carried between VMs, online extend, and the
API's refusals (validation, tenancy, quota), on one server with two VMs shared by every step."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    Guest,
    Server,
    default_project,
    destroy_server,
    import_guest_image,
    make_server,
    tenant_user,
    type_on_console,
    wait_console,
    wait_task,
)
from tests.integration.test_cli import Cli
from tests.integration.test_quota_api import _used
from tests.integration.test_remote_agent import Agent, _wait_host

pytestmark = pytest.mark.qemu

GIB_SECTORS = (1 << 30) // 512


@dataclass
class Env:
    server: Server
    c: httpx.Client
    vms: dict[str, str]
    project: str


@pytest.fixture(scope="module")
def env(guest: Guest) -> Iterator[Env]:
    server = make_server()
    server.start(timeout_s=180)
    try:
        with server.client() as c:
            c.timeout = httpx.Timeout(60)
            import_guest_image(c, guest)
            project = default_project(c)
            tasks, vms = {}, {}
            for name in ("vol-a", "vol-b"):  # both boot at once
                r = c.post(
                    "/v1/vms",
                    json={"name": name, "image": "test-guest", "flavor": "tiny", "project_id": project},
                )
                assert r.status_code == 202, r.text
                vms[name], tasks[name] = r.json()["vm"]["id"], r.json()["task_id"]
            for name, task_id in tasks.items():
                done = wait_task(c, task_id, timeout_s=300)
                assert done["state"] == "succeeded", done["error"]
                wait_console(c, vms[name], "NOVACRON-GUEST-READY", timeout_s=180)
            yield Env(server, c, vms, project)
    finally:
        destroy_server(server)


def _ok(c: httpx.Client, r: httpx.Response) -> dict[str, object]:
    assert r.status_code == 202, r.text
    task = wait_task(c, r.json()["task_id"], timeout_s=180)
    assert task["state"] == "succeeded", task["error"]
    return dict(c.get(f"/v1/volumes/{r.json()['volume']['id']}").json())


_calls = iter(range(1000, 10**6))


def _guest(env: Env, vm: str, command: str, tag: str) -> str:
    """Run ``command`` in the guest's shell; what it printed between ``<tag>=`` and this call's end."""
    vm_id, n = env.vms[vm], next(_calls)
    # the end mark is computed by the guest's shell, so the echoed command line never matches it
    type_on_console(env.server, env.c, vm_id, f"echo {tag}=$({command})=E$(({n}-1+1))E", f"=E{n}E")
    found = re.findall(rf"{tag}=(.*?)=E{n}E", wait_console(env.c, vm_id, f"=E{n}E"))
    assert found, f"no {tag} answer on the console of {vm}"
    return str(found[-1]).strip()


#: the guest waits (up to 10 s) for the disk with this serial to appear or go; prints its name and size
FIND = (
    "for i in $(seq 50); do d=$(grep -l {serial} /sys/block/vd*/serial 2>/dev/null | head -n1); "
    "[ {want} ] && break; sleep 0.2; done; "
    '[ -n "$d" ] && d=${{d%/serial}} && echo ${{d##*/}}:$(cat $d/size) || echo none'
)


def _wait_boots(c: httpx.Client, vm_id: str, boots: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while c.get(f"/v1/vms/{vm_id}/console-log").text.count("NOVACRON-GUEST-READY") < boots:
        assert time.monotonic() < deadline, f"VM {vm_id} did not boot {boots} times"
        time.sleep(0.3)


def _qemu_pid(vm_id: str) -> int:
    """The pid of the QEMU process running ``vm_id`` (its command line names the VM's directory;
    the newest one when a migration's source is still going)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if proc.name.isdigit() and b"qemu-system" in argv[0] and any(vm_id.encode() in a for a in argv):
            found.append(int(proc.name))
    assert found, f"no QEMU process of {vm_id}"
    return max(found)


def _disk(env: Env, vm: str, serial: str, present: bool = True) -> str:
    want = '-n "$d"' if present else '-z "$d"'
    return _guest(env, vm, FIND.format(serial=serial[:20], want=want), "DISK")


def test_hot_plug_marker_moves_between_vms_and_extend_online(env: Env) -> None:
    c = env.c
    started = time.monotonic()
    vol = _ok(c, c.post("/v1/volumes", json={"name": "data", "size_gb": 1, "project_id": env.project}))
    assert vol["status"] == "available" and vol["size_gb"] == 1 and vol["vm_id"] is None
    vid = str(vol["id"])

    # hot-plug into the running vol-a: a new virtio disk of 1 GiB with the volume's serial
    vol = _ok(c, c.post(f"/v1/volumes/{vid}/attach", json={"vm": "vol-a"}))
    assert vol["status"] == "in-use" and vol["vm_id"] == env.vms["vol-a"]
    name, _, size = _disk(env, "vol-a", vid).partition(":")
    assert name.startswith("vd") and name not in ("vda", "vdb") and int(size) == GIB_SECTORS
    plugged = time.monotonic()
    # the guest writes a marker its shell computes (so the typed command never shows it)
    assert (
        _guest(env, "vol-a", f"echo MARK$((6000+7))MARK | dd of=/dev/{name} 2>/dev/null; sync; echo ok", "W")
        == "ok"
    )

    refused = c.delete(f"/v1/volumes/{vid}")
    assert refused.status_code == 409 and "detach it first" in refused.json()["detail"], refused.text

    # hot-unplug: the guest lets it go (DEVICE_DELETED), the disk is gone from vol-a
    vol = _ok(c, c.post(f"/v1/volumes/{vid}/detach"))
    assert vol["status"] == "available" and vol["vm_id"] is None
    assert _disk(env, "vol-a", vid, present=False) == "none"

    # plugged into vol-b, which reads the marker vol-a wrote
    _ok(c, c.post(f"/v1/volumes/{vid}/attach", json={"vm": env.vms["vol-b"]}))
    name_b = _disk(env, "vol-b", vid).partition(":")[0]
    assert _guest(env, "vol-b", f"dd if=/dev/{name_b} bs=16 count=1 2>/dev/null", "R") == "MARK6007MARK"

    # extended online: the guest sees 2 GiB at once
    vol = _ok(c, c.post(f"/v1/volumes/{vid}/extend", json={"size_gb": 2}))
    assert vol["size_gb"] == 2 and vol["status"] == "in-use"
    assert _disk(env, "vol-b", vid).partition(":")[2] == str(2 * GIB_SECTORS)

    # a reboot restarts QEMU with the command line the hot-plug updated: the disk is still there
    done = wait_task(c, c.post(f"/v1/vms/{env.vms['vol-b']}/actions/reboot").json()["task_id"])
    assert done["state"] == "succeeded", done["error"]
    _wait_boots(c, env.vms["vol-b"], 2)
    assert _disk(env, "vol-b", vid).partition(":")[2] == str(2 * GIB_SECTORS)

    listed = c.get("/v1/events", params={"types": "volume.*", "limit": 1000}).json()["items"]
    kinds = [e["type"] for e in listed if e["resource_id"] == vid]
    for kind in ("volume.created", "volume.attached", "volume.detached", "volume.extended"):
        assert kind in kinds, kinds
    print(f"hot-plug visible in the guest {plugged - started:.1f}s after the create request")


def test_a_stopped_vm_takes_its_volume_at_next_start(env: Env) -> None:
    c = env.c
    done = wait_task(
        c, c.post(f"/v1/vms/{env.vms['vol-a']}/actions/stop", json={"force": True}).json()["task_id"]
    )
    assert done["state"] == "succeeded", done["error"]
    vol = _ok(
        c,
        c.post(
            "/v1/volumes",
            json={"name": "boot-later", "image": "test-guest", "size_gb": 1, "project_id": env.project},
        ),
    )
    vol = _ok(c, c.post(f"/v1/volumes/{vol['id']}/attach", json={"vm": "vol-a"}))
    assert vol["status"] == "in-use"
    done = wait_task(c, c.post(f"/v1/vms/{env.vms['vol-a']}/actions/start").json()["task_id"])
    assert done["state"] == "succeeded", done["error"]
    _wait_boots(c, env.vms["vol-a"], 2)  # the console log keeps the first boot's lines
    assert _disk(env, "vol-a", str(vol["id"])).partition(":")[2] == str(GIB_SECTORS)
    listed = c.get("/v1/volumes", params={"vm_id": env.vms["vol-a"]}).json()["items"]
    assert [v["name"] for v in listed] == ["boot-later"]


def test_refusals_name_the_field_and_respect_tenancy_and_quota(env: Env) -> None:
    c = env.c
    r = c.post("/v1/volumes", json={"name": "blank", "project_id": env.project})
    assert r.status_code == 422 and "size_gb" in r.text, r.text
    r = c.post("/v1/volumes", json={"name": "zero", "size_gb": 0, "project_id": env.project})
    assert r.status_code == 422 and "size_gb" in r.text, r.text
    assert r.headers["content-type"].startswith("application/problem+json")

    key = {"Idempotency-Key": "vol-once"}
    once = {"name": "once", "size_gb": 1, "project_id": env.project}
    first = c.post("/v1/volumes", json=once, headers=key)
    again = c.post("/v1/volumes", json=once, headers=key)
    assert first.status_code == again.status_code == 202 and first.json() == again.json()
    vid = _ok(c, first)["id"]
    r = c.post(f"/v1/volumes/{vid}/extend", json={"size_gb": 1})
    assert r.status_code == 422 and "size_gb" in r.text, r.text

    other, _ = tenant_user(c, env.server, "vol-other")
    with other:
        assert other.get(f"/v1/volumes/{vid}").status_code == 404
        assert other.get("/v1/volumes").json()["items"] == []
        mine = _ok(other, other.post("/v1/volumes", json={"name": "theirs", "size_gb": 1}))
        r = other.post(f"/v1/volumes/{mine['id']}/attach", json={"vm": env.vms["vol-b"]})
        assert r.status_code == 422 and "vm" in r.json()["detail"], r.text
        # a new tenant's default quota: 1000 GiB of volumes
        r = other.post("/v1/volumes", json={"name": "huge", "size_gb": 1000})
        assert r.status_code == 403 and "volume_gb" in r.text, r.text
    assert c.delete(f"/v1/volumes/{vid}").status_code == 204
    assert c.get(f"/v1/volumes/{vid}").status_code == 404


def test_cli_creates_attaches_extends_detaches_and_deletes(env: Env, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "novacron" / "credentials.json", env.server)
    login = ("login", "--server", env.server.url, "--username", "admin", "--password-stdin")
    cli.ok(*login, stdin=env.server.admin_password + "\n")
    made = cli.ok("volume", "create", "--name", "cli-vol", "--size", "1", "--project", "default")
    assert "available" in made.out, made.out + made.err
    attached = cli.ok("volume", "attach", "cli-vol", "vol-b")
    assert "in-use" in attached.out and env.vms["vol-b"] in attached.out
    extended = cli.ok("volume", "extend", "cli-vol", "--size", "3")
    assert re.search(r"size_gb\s+3", extended.out), extended.out
    listed = cli.ok("volume", "list", "--vm", "vol-b", "--json").json()
    assert {"data", "cli-vol"} <= {v["name"] for v in listed["items"]}
    assert "available" in cli.ok("volume", "detach", "cli-vol").out
    cli.ok("volume", "delete", "cli-vol")
    assert env.c.get("/v1/volumes", params={"name": "cli-vol"}).json()["items"] == []


def _iops(env: Env, vm: str, dd: str, count: int) -> float:
    """Operations a second of ``count`` 4 KiB direct requests of ``dd`` in the guest (timed by the
    guest's own clock, /proc/uptime: 10 ms steps, well below a few seconds of I/O)."""
    cmd = (
        f"a=$(cut -d' ' -f1 /proc/uptime); dd {dd} bs=4k count={count} 2>/dev/null; "
        "b=$(cut -d' ' -f1 /proc/uptime); echo $a:$b"
    )
    start, _, end = _guest(env, vm, cmd, "T").partition(":")
    return count / (float(end) - float(start))


def test_io_limits_hold_in_the_guest_and_change_live(env: Env) -> None:
    c = env.c
    body = {"name": "slow", "size_gb": 1, "project_id": env.project, "io_limits": {"iops_total": 50}}
    vol = _ok(c, c.post("/v1/volumes", json=body))
    assert vol["io_limits"] == {"iops_total": 50}
    vid = str(vol["id"])
    _ok(c, c.post(f"/v1/volumes/{vid}/attach", json={"vm": "vol-a"}))
    dev = _disk(env, "vol-a", vid).partition(":")[0]
    # 4 s of direct 4 KiB reads at 50 IOPS: QEMU's throttle group holds the guest to its limit
    reads = _iops(env, "vol-a", f"if=/dev/{dev} of=/dev/null iflag=direct", 200)
    assert 45 <= reads <= 55, f"{reads:.1f} read IOPS under a 50 IOPS limit"

    # changed on the running guest (qom-set of the group): writes now at 100 IOPS
    vol = _ok(c, c.put(f"/v1/volumes/{vid}/limits", json={"iops_total": 100}))
    assert vol["io_limits"] == {"iops_total": 100} and vol["status"] == "in-use"
    writes = _iops(env, "vol-a", f"if=/dev/zero of=/dev/{dev} seek=1024 oflag=direct", 400)
    assert 90 <= writes <= 110, f"{writes:.1f} write IOPS under a 100 IOPS limit"
    print(f"measured in the guest: {reads:.1f} read IOPS (limit 50), {writes:.1f} write IOPS (limit 100)")

    # a burst over the limit, and bytes/s per direction: QEMU takes them live
    limits = {"iops_total": 100, "iops_total_max": 400, "iops_total_max_length": 5, "bps_write": 8 << 20}
    assert _ok(c, c.put(f"/v1/volumes/{vid}/limits", json=limits))["io_limits"] == limits
    for wrong, where in (
        ({"iops_total": 100, "iops_total_max": 50}, "io_limits.iops_total_max"),
        ({"iops_total": 100, "iops_read": 10}, "io_limits.iops_read"),
        ({"iops_total_max_length": 5}, "io_limits.iops_total_max_length"),
        ({"bps_total": 100}, "io_limits.bps_total"),
    ):
        r = c.put(f"/v1/volumes/{vid}/limits", json=wrong)
        assert r.status_code == 422 and where in r.text, r.text
    r = c.post("/v1/volumes", json={"name": "neg", "size_gb": 1, "io_limits": {"iops_total": -1}})
    assert r.status_code == 422 and "iops_total" in r.text, r.text


def test_snapshot_then_write_a_volume_from_it_holds_the_old_data_and_a_clone_the_new(env: Env) -> None:
    c = env.c
    vid = str(c.get("/v1/volumes", params={"name": "slow"}).json()["items"][0]["id"])
    dev = _disk(env, "vol-a", vid).partition(":")[0]
    write = "echo MARK$((4000+{n})){word} | dd of=/dev/" + dev + " 2>/dev/null; sync; echo ok"
    assert _guest(env, "vol-a", write.format(n=1, word="OLD"), "W") == "ok"

    # a live snapshot of the attached volume (QMP on the running guest's host)
    r = c.post("/v1/volume-snapshots", json={"name": "before", "volume": vid})
    assert r.status_code == 202, r.text
    done = wait_task(c, r.json()["task_id"])
    assert done["state"] == "succeeded", done["error"]
    snap = c.get(f"/v1/volume-snapshots/{r.json()['snapshot']['id']}").json()
    assert snap["status"] == "available" and snap["volume_id"] == vid and snap["size_gb"] == 1
    assert c.get(f"/v1/volumes/{vid}").json()["status"] == "in-use"

    assert _guest(env, "vol-a", write.format(n=2, word="NEW"), "W") == "ok"
    old = _ok(
        c, c.post("/v1/volumes", json={"name": "from-snap", "snapshot": "before", "project_id": env.project})
    )
    assert old["source_snapshot_id"] == snap["id"] and old["size_gb"] == 1
    # failure injection: vol-a's QEMU is frozen, so the clone waits at its snapshot of the source;
    # meanwhile the source is busy (cloning): its VM does not move, it is not detached or cloned again
    qemu = _qemu_pid(env.vms["vol-a"])
    os.kill(qemu, signal.SIGSTOP)
    try:
        r = c.post("/v1/volumes", json={"name": "clone", "source_volume": vid, "project_id": env.project})
        assert c.get(f"/v1/volumes/{vid}").json()["status"] == "cloning"
        moved = c.post(f"/v1/vms/{env.vms['vol-a']}/migrate", json={})
        assert moved.status_code == 409 and "being cloned" in moved.json()["detail"], moved.text
        for refused in (
            c.post(f"/v1/volumes/{vid}/detach"),
            c.post("/v1/volumes", json={"name": "clone-2", "source_volume": vid, "project_id": env.project}),
        ):
            assert refused.status_code == 409 and "busy (cloning)" in refused.json()["detail"], refused.text
    finally:
        os.kill(qemu, signal.SIGCONT)
    clone = _ok(c, r)
    assert clone["source_volume_id"] == vid
    assert c.get(f"/v1/volumes/{vid}").json()["status"] == "in-use"  # its snapshot dropped: free again
    for made, want in ((old, "MARK4001OLD"), (clone, "MARK4002NEW")):
        _ok(c, c.post(f"/v1/volumes/{made['id']}/attach", json={"vm": "vol-b"}))
        name = _disk(env, "vol-b", str(made["id"])).partition(":")[0]
        assert _guest(env, "vol-b", f"dd if=/dev/{name} bs=11 count=1 2>/dev/null", "R") == want

    # a detached volume's snapshot (qemu-img), which keeps the volume from being deleted
    _ok(c, c.post(f"/v1/volumes/{clone['id']}/detach"))
    r = c.post("/v1/volume-snapshots", json={"name": "offline", "volume": "clone"})
    assert wait_task(c, r.json()["task_id"])["state"] == "succeeded"
    refused = c.delete(f"/v1/volumes/{clone['id']}")
    assert refused.status_code == 409 and "snapshots" in refused.json()["detail"], refused.text
    listed = c.get("/v1/volume-snapshots", params={"volume_id": str(clone["id"])}).json()["items"]
    assert [s["name"] for s in listed] == ["offline"]
    for name in ("offline", "before"):  # dropped offline, and live from the running guest
        r = c.delete(f"/v1/volume-snapshots/{name}")
        assert r.status_code == 202 and wait_task(c, r.json()["task_id"])["state"] == "succeeded", r.text
    assert c.get("/v1/volume-snapshots").json()["items"] == []
    assert c.delete(f"/v1/volumes/{clone['id']}").status_code == 204
    kinds = {e["type"] for e in c.get("/v1/events", params={"types": "volume_snapshot.*"}).json()["items"]}
    assert {"volume_snapshot.created", "volume_snapshot.available", "volume_snapshot.deleted"} <= kinds


def test_a_vm_boots_from_a_volume_which_is_refused_elsewhere(env: Env) -> None:
    c = env.c
    root = _ok(
        c, c.post("/v1/volumes", json={"name": "root", "image": "test-guest", "project_id": env.project})
    )
    vm = {"name": "vol-boot", "flavor": "tiny", "project_id": env.project}
    # a volume attached elsewhere is refused, naming where it is
    r = c.post("/v1/vms", json={**vm, "boot_volume": "slow"})
    assert r.status_code == 409 and "in use by VM 'vol-a'" in r.json()["detail"], r.text

    data = _ok(c, c.post("/v1/volumes", json={"name": "boot-data", "size_gb": 1, "project_id": env.project}))
    # a volume named twice, or the boot volume again as data: refused by field, nothing claimed
    for volumes, field in ((["boot-data", "boot-data"], "body.volumes[1]"), (["root"], "body.volumes[0]")):
        r = c.post("/v1/vms", json={**vm, "boot_volume": "root", "volumes": volumes})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
    assert c.get(f"/v1/volumes/{data['id']}").json()["status"] == "available"

    scope = {"project_id": env.project}
    disk_before, volume_before = _used(c, scope, "disk_gb"), _used(c, scope, "volume_gb")
    # the image: the volume's source; a data volume attached from the first start
    r = c.post("/v1/vms", json={**vm, "boot_volume": "root", "volumes": ["boot-data"]})
    assert r.status_code == 202, r.text
    env.vms["vol-boot"] = vm_id = r.json()["vm"]["id"]
    done = wait_task(c, r.json()["task_id"], timeout_s=300)
    assert done["state"] == "succeeded", done["error"]
    wait_console(c, vm_id, "NOVACRON-GUEST-READY", timeout_s=180)
    vol = c.get(f"/v1/volumes/{root['id']}").json()
    assert vol["boot"] is True and vol["vm_id"] == vm_id and vol["status"] == "in-use"
    # the guest's first disk (the boot disk) is the volume; the data volume is there too (after
    # the seed disk: vdc)
    assert _guest(env, "vol-boot", "cat /sys/block/vda/serial", "S") == str(root["id"])[:20]
    found = _guest(env, "vol-boot", f"grep -l {str(data['id'])[:20]} /sys/block/vd*/serial", "D")
    assert found == "/sys/block/vdc/serial", found
    attached = c.get(f"/v1/volumes/{data['id']}").json()
    assert attached["vm_id"] == vm_id and attached["status"] == "in-use" and attached["boot"] is False
    # and the only root disk: no local copy of the image beside it, the flavor's disk not charged
    assert not (env.server.state_dir / "instances" / vm_id / "disk.qcow2").exists()
    assert c.get(f"/v1/vms/{vm_id}").json()["disk_gb"] == 0
    assert (_used(c, scope, "disk_gb"), _used(c, scope, "volume_gb")) == (disk_before, volume_before)
    grow = c.patch(f"/v1/vms/{vm_id}", json={"disk_gb": 5})
    assert grow.status_code == 422 and "volume extend" in grow.text, grow.text
    for path in ("snapshots", "clone"):  # what works on a local root disk names the volume's way
        r = c.post(f"/v1/vms/{vm_id}/{path}", json={"name": "of-boot"})
        assert r.status_code == 409 and "boots from a volume" in r.json()["detail"], r.text

    _backup_and_restore_boot_from_volume(env, str(root["id"]), str(data["id"]))

    again = c.post("/v1/vms", json={**vm, "name": "vol-boot-2", "boot_volume": "root"})
    assert again.status_code == 409 and "as its root disk" in again.json()["detail"], again.text
    detach = c.post(f"/v1/volumes/{root['id']}/detach")
    assert detach.status_code == 409 and "root disk" in detach.json()["detail"], detach.text
    _boot_volume_migrates_live(env, str(root["id"]), str(data["id"]))

    done = wait_task(c, c.delete(f"/v1/vms/{vm_id}").json()["task_id"])
    assert done["state"] == "succeeded", done["error"]
    vol = c.get(f"/v1/volumes/{root['id']}").json()
    assert vol["status"] == "available" and vol["vm_id"] is None and vol["boot"] is False
    assert c.get(f"/v1/volumes/{data['id']}").json()["vm_id"] is None  # released with its VM


def _backup_and_restore_boot_from_volume(env: Env, root_id: str, data_id: str) -> None:
    """A boot-from-volume VM's backup holds its boot volume (as vda) and its data volume; restored
    to a new VM, both are new volumes and the guest boots from its copy, which has the marker."""
    c = env.c
    cmd = "echo BFV-MARK | dd of=/dev/vda bs=512 seek=300000 conv=notrunc,fsync 2>/dev/null; echo ok"
    assert _guest(env, "vol-boot", cmd, "W") == "ok"
    target = {"name": "vols", "type": "local", "config": {"path": str(env.server.state_dir / "bk")}}
    assert c.post("/v1/backup-targets", json=target).status_code == 201
    r = c.post("/v1/backups", json={"vm": "vol-boot"})
    assert r.status_code == 202, r.text
    task = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert task["state"] == "succeeded", task["error"]
    snap = c.get(f"/v1/backups/{r.json()['backup']['id']}").json()
    held = [(d["name"], d["device"], d["volume_id"], d["size"]) for d in snap["disks"]]
    size = int(c.get(f"/v1/volumes/{root_id}").json()["size_gb"]) << 30
    assert held == [(root_id, "vda", root_id, size), (data_id, held[1][1], data_id, 1 << 30)], held
    r = c.post(f"/v1/backups/{snap['id']}/restore", json={"new_vm": "vol-boot-r"})
    assert r.status_code == 202, r.text
    done = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert done["state"] == "succeeded", done["error"]
    env.vms["vol-boot-r"] = new_id = r.json()["vm_id"]
    wait_console(c, new_id, "NOVACRON-GUEST-READY", timeout_s=180)
    made = {v["boot"]: v for v in c.get("/v1/volumes", params={"vm_id": new_id}).json()["items"]}
    assert set(made) == {True, False} and made[True]["id"] != root_id, made
    assert _guest(env, "vol-boot-r", "cat /sys/block/vda/serial", "S") == str(made[True]["id"])[:20]
    read = "dd if=/dev/vda bs=512 skip=300000 count=1 2>/dev/null | head -c 8"
    assert _guest(env, "vol-boot-r", read, "M") == "BFV-MARK"
    assert c.get(f"/v1/vms/{new_id}").json()["disk_gb"] == 0
    done = wait_task(c, c.delete(f"/v1/vms/{new_id}").json()["task_id"])
    assert done["state"] == "succeeded", done["error"]
    for v in made.values():
        assert c.delete(f"/v1/volumes/{v['id']}").status_code == 204


def test_cli_limits_snapshots_and_volumes_from_them(env: Env, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "novacron" / "credentials.json", env.server)
    login = ("login", "--server", env.server.url, "--username", "admin", "--password-stdin")
    cli.ok(*login, stdin=env.server.admin_password + "\n")
    made = cli.ok(
        "volume", "create", "-n", "cli-lim", "-s", "1", "--limit", "iops_total=60", "--project", "default"
    )
    assert re.search(r"io_limits\s+iops_total=60", made.out), made.out
    changed = cli.ok(
        "volume", "limits", "cli-lim", "--limit", "iops-total=80", "--limit", "iops_total_max=160"
    )
    assert re.search(r"io_limits\s+iops_total=80 iops_total_max=160", changed.out), changed.out
    bad = cli("volume", "limits", "cli-lim", "--limit", "iops_total_max=160")
    assert bad.code != 0 and "io_limits.iops_total_max" in bad.err, bad.err
    snap = cli.ok("volume", "snapshot", "create", "cli-lim", "--name", "cli-snap")
    assert "available" in snap.out, snap.out + snap.err
    listed = cli.ok("volume", "snapshot", "list", "--volume", "cli-lim", "--json").json()
    assert [s["name"] for s in listed["items"]] == ["cli-snap"]
    # counted in the tenant's quota (a kind of its own), and audited
    bars = {u["resource"]: u for u in env.c.get("/v1/quota").json()["resources"]}
    assert bars["volume_snapshots"]["used"] == 1, bars["volume_snapshots"]
    audited = env.c.get("/v1/audit", params={"resource_id": listed["items"][0]["id"]}).json()["items"]
    assert [a["method"] for a in audited] == ["POST"] and audited[0]["status_code"] == 202, audited
    restored = cli.ok(
        "volume", "create", "-n", "cli-restored", "--snapshot", "cli-snap", "--project", "default"
    )
    assert re.search(r"source_snapshot_id\s+vsnap", restored.out), restored.out
    cli.ok("volume", "snapshot", "delete", "cli-snap")
    for name in ("cli-restored", "cli-lim"):
        cli.ok("volume", "delete", name)
    assert env.c.get("/v1/volume-snapshots").json()["items"] == []


def _boot_volume_migrates_live(env: Env, root_id: str, data_id: str) -> None:
    """A second host joins; the boot-from-volume VM migrates there live (it has no root disk file:
    its boot volume and data volume are mirrored into node-b's volumes directory) and the guest runs
    on, reading its data there; draining node-b brings it home the same way."""
    c, vm_id = env.c, env.vms["vol-boot"]
    agent = Agent(env.server, "node-b")
    try:
        token = c.post("/v1/hosts/join-tokens", json={}).json()
        agent.start(token["join_token"], token["ca_fingerprint"])
        node_b = _wait_host(c, "node-b", timeout_s=60)["id"]
        up = float(_guest(env, "vol-boot", "cut -d' ' -f1 /proc/uptime", "U"))
        r = c.post(f"/v1/vms/{vm_id}/migrate", json={"host": node_b})
        assert r.status_code == 202, r.text
        task = wait_task(c, r.json()["task_id"], timeout_s=300)
        assert task["state"] == "succeeded", task["error"]
        assert sorted(task["result"]["volumes_copied"]) == sorted([root_id, data_id]), task["result"]
        vm = c.get(f"/v1/vms/{vm_id}").json()
        assert vm["host_id"] == node_b and vm["state"] == "running", vm
        for vid in (root_id, data_id):  # the rows follow the copies on node-b
            assert (agent.state_dir / "volumes" / f"{vid}.qcow2").exists(), vid
        # the same guest (its uptime went on; the console log is per host) reads its boot disk's
        # marker from node-b's copy
        read = "echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=512 skip=300000 count=1 2>/dev/null"
        read += " | head -c 8"
        assert _guest(env, "vol-boot", read, "M") == "BFV-MARK"
        assert float(_guest(env, "vol-boot", "cut -d' ' -f1 /proc/uptime", "U")) > up
        r = c.post(f"/v1/hosts/{node_b}/drain")
        assert r.status_code == 202, r.text
        for task_id in r.json()["task_ids"]:
            done = wait_task(c, task_id, timeout_s=300)
            assert done["state"] == "succeeded", done["error"]
        assert c.get(f"/v1/vms/{vm_id}").json()["host_id"] != node_b
        assert _guest(env, "vol-boot", read, "M") == "BFV-MARK"
        assert float(_guest(env, "vol-boot", "cut -d' ' -f1 /proc/uptime", "U")) > up  # never rebooted
    finally:
        agent.stop()
        shutil.rmtree(agent.state_dir, ignore_errors=True)

"""The ``rbd`` volume pool on a real single-node Ceph 16 cluster (tests/services/ceph.py).

One monitor, one manager, one OSD on a BlueStore file, started for this module with cephx; a
server whose ``rbd`` pool is that cluster, reached as client.novacron with its keyring; one TCG
guest. A volume made in RBD is hot-plugged through QEMU's
rbd block driver, the guest writes a marker, the volume is detached and the marker is read back
from the RBD image itself; deleting the volume removes the image. Then a second host joins and the
guest migrates live with an rbd volume attached: nothing is copied, it reads its marker there; it
moves back cold (stopped), again copying nothing, and reads the marker after its start.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from novacron.compute.pools import RbdPool
from novacron.config import Settings
from novacron.virt.base import DriverError
from tests.conftest import (
    Guest,
    default_project,
    destroy_server,
    import_guest_image,
    make_server,
    require,
    wait_console,
    wait_task,
)
from tests.integration.test_remote_agent import Agent, _wait_host
from tests.integration.test_volumes import Env, _disk, _guest, _iops, _qemu_pid, _wait_boots
from tests.services.ceph import Ceph, CephUnavailable, start_ceph

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def ceph() -> Iterator[Ceph]:
    try:
        cluster = start_ceph()
    except CephUnavailable as e:
        require(False, f"a single-node Ceph cluster: {e}")
        raise
    print(f"ceph active+clean in {cluster.started_in_s} s, daemons: {cluster.usage()}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def env(ceph: Ceph, guest: Guest) -> Iterator[Env]:
    # cephx: the platform is client.novacron (profile rbd on the pool), not the cluster's admin
    server = make_server(
        NOVACRON_RBD_CONF=str(ceph.conf),
        NOVACRON_RBD_USER="novacron",
        NOVACRON_RBD_KEYRING=str(ceph.client_keyring),
    )
    server.start(timeout_s=180)
    try:
        with server.client() as c:
            c.timeout = httpx.Timeout(60)
            import_guest_image(c, guest)
            project = default_project(c)
            r = c.post(
                "/v1/vms",
                json={"name": "rbd-vm", "image": "test-guest", "flavor": "tiny", "project_id": project},
            )
            assert r.status_code == 202, r.text
            vm_id = r.json()["vm"]["id"]
            done = wait_task(c, r.json()["task_id"], timeout_s=300)
            assert done["state"] == "succeeded", done["error"]
            wait_console(c, vm_id, "NOVACRON-GUEST-READY", timeout_s=180)
            yield Env(server, c, {"rbd-vm": vm_id}, project)
    finally:
        destroy_server(server)


def _images(ceph: Ceph) -> list[str]:
    out = subprocess.run(
        ["rbd", "-c", str(ceph.conf), "ls", "rbd"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def _ok(c: httpx.Client, r: httpx.Response) -> dict[str, object]:
    assert r.status_code == 202, r.text
    task = wait_task(c, r.json()["task_id"], timeout_s=180)
    assert task["state"] == "succeeded", task["error"]
    return dict(c.get(f"/v1/volumes/{r.json()['volume']['id']}").json())


def test_rbd_volume_attached_written_detached_and_read_from_ceph(env: Env, ceph: Ceph) -> None:
    c = env.c
    body = {"name": "in-ceph", "size_gb": 1, "pool": "rbd", "project_id": env.project}
    limited = {**body, "io_limits": {"iops_total": 50}}
    vol = _ok(c, c.post("/v1/volumes", json=limited))
    vid = str(vol["id"])
    assert vol["pool"] == "rbd" and vol["status"] == "available"
    assert vid in _images(ceph), "the volume is an RBD image of the cluster's pool"

    # hot-plugged through QEMU's rbd driver; the guest writes a marker its shell computes
    vol = _ok(c, c.post(f"/v1/volumes/{vid}/attach", json={"vm": "rbd-vm"}))
    assert vol["status"] == "in-use"
    name = _disk(env, "rbd-vm", vid).partition(":")[0]
    assert name.startswith("vd") and name != "vda"
    # its raw node is under the throttle filter as a file volume's is: 4 s of direct 4 KiB reads
    # at 50 IOPS, then the limit changed live (qom-set of its group) to 100 IOPS of writes
    reads = _iops(env, "rbd-vm", f"if=/dev/{name} of=/dev/null iflag=direct", 200)
    assert 45 <= reads <= 55, f"{reads:.1f} read IOPS on an rbd volume under a 50 IOPS limit"
    assert _ok(c, c.put(f"/v1/volumes/{vid}/limits", json={"iops_total": 100}))["io_limits"] == {
        "iops_total": 100
    }
    writes = _iops(env, "rbd-vm", f"if=/dev/zero of=/dev/{name} seek=1024 oflag=direct", 400)
    assert 90 <= writes <= 110, f"{writes:.1f} write IOPS on an rbd volume under a 100 IOPS limit"
    print(f"rbd volume, measured in the guest: {reads:.1f} read IOPS (50), {writes:.1f} write IOPS (100)")
    wrote = _guest(
        env, "rbd-vm", f"echo MARK$((6000+8))MARK | dd of=/dev/{name} 2>/dev/null; sync; echo ok", "W"
    )
    assert wrote == "ok"
    vol = _ok(c, c.post(f"/v1/volumes/{vid}/detach"))
    assert vol["status"] == "available" and _disk(env, "rbd-vm", vid, present=False) == "none"

    # the marker is in the RBD image itself (read with QEMU's rbd driver, no guest involved)
    image = f"rbd:rbd/{vid}:conf={ceph.conf}"
    read = subprocess.run(
        ["qemu-io", "-r", "-f", "raw", "-c", "read -v 0 16", image],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "MARK6008MARK" in read.stdout, read.stdout + read.stderr

    # a pool this platform does not have is refused by field; delete removes the image
    r = c.post("/v1/volumes", json={**body, "name": "nowhere", "pool": "lvm"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.pool", r.text
    assert c.delete(f"/v1/volumes/{vid}").status_code == 204
    assert vid not in _images(ceph)


def _read(ceph: Ceph, volume_id: str) -> str:
    """The first bytes of an RBD image, read with QEMU's rbd driver (no guest involved)."""
    image = f"rbd:rbd/{volume_id}:conf={ceph.conf}"
    read = subprocess.run(
        ["qemu-io", "-r", "-U", "-f", "raw", "-c", "read -v 0 16", image],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return read.stdout + read.stderr


def _snaps(ceph: Ceph, volume_id: str) -> list[str]:
    out = subprocess.run(
        ["rbd", "-c", str(ceph.conf), "snap", "ls", "--format", "json", f"rbd/{volume_id}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [s["name"] for s in json.loads(out.stdout or "[]")]


def test_rbd_snapshot_a_volume_from_it_and_a_live_clone(env: Env, ceph: Ceph) -> None:
    """A snapshot of an attached rbd volume (``rbd snap``), then a later write: a volume made from
    the snapshot holds the old marker, a clone of the running volume the new one (``rbd cp`` of a
    snapshot taken for it, dropped after); both stay in the rbd pool without naming it."""
    c = env.c
    body = {"name": "snapped", "size_gb": 1, "pool": "rbd", "project_id": env.project}
    vid = str(_ok(c, c.post("/v1/volumes", json=body))["id"])
    _ok(c, c.post(f"/v1/volumes/{vid}/attach", json={"vm": "rbd-vm"}))
    dev = _disk(env, "rbd-vm", vid).partition(":")[0]
    write = "echo MARK$((6000+{n})){word} | dd of=/dev/" + dev + " 2>/dev/null; sync; echo ok"
    assert _guest(env, "rbd-vm", write.format(n=10, word="OLD"), "W") == "ok"
    r = c.post("/v1/volume-snapshots", json={"name": "rbd-before", "volume": vid})
    assert r.status_code == 202 and wait_task(c, r.json()["task_id"])["state"] == "succeeded", r.text
    snap_id = r.json()["snapshot"]["id"]
    assert _snaps(ceph, vid) == [snap_id], "the snapshot is the RBD image's own"
    assert c.get(f"/v1/volumes/{vid}").json()["status"] == "in-use"

    assert _guest(env, "rbd-vm", write.format(n=11, word="NEW"), "W") == "ok"
    old = _ok(
        c,
        c.post("/v1/volumes", json={"name": "rbd-old", "snapshot": "rbd-before", "project_id": env.project}),
    )
    clone = _ok(
        c, c.post("/v1/volumes", json={"name": "rbd-clone", "source_volume": vid, "project_id": env.project})
    )
    assert old["pool"] == clone["pool"] == "rbd" and old["source_snapshot_id"] == snap_id
    assert "MARK6010OLD" in _read(ceph, str(old["id"]))
    assert "MARK6011NEW" in _read(ceph, str(clone["id"]))
    assert _snaps(ceph, vid) == [snap_id], "the clone's own snapshot of its source is dropped"
    assert c.get(f"/v1/volumes/{vid}").json()["status"] == "in-use"
    # a copy in another pool than its source's is refused by field
    r = c.post(
        "/v1/volumes", json={"name": "x", "source_volume": vid, "pool": "file", "project_id": env.project}
    )
    assert r.status_code == 422 and "pool" in r.text, r.text

    r = c.delete(f"/v1/volume-snapshots/{snap_id}")
    assert r.status_code == 202 and wait_task(c, r.json()["task_id"])["state"] == "succeeded", r.text
    assert _snaps(ceph, vid) == []
    _ok(c, c.post(f"/v1/volumes/{vid}/detach"))
    for gone in (vid, str(old["id"]), str(clone["id"])):
        assert c.delete(f"/v1/volumes/{gone}").status_code == 204
        assert gone not in _images(ceph)


def test_a_wrong_rbd_key_or_an_open_keyring_is_refused_naming_the_settings(
    ceph: Ceph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool as the platform runs it, with a key Ceph does not know for client.novacron: the
    error says which settings give it (and fails at once, not after librados' mount timeout)."""
    bad = tmp_path / "wrong.keyring"
    bad.write_text("[client.novacron]\n\tkey = AQBd0dRlAAAAABAAnK2O8kLZHn7Yl3Zzh0hI9Q==\n")
    bad.chmod(0o600)
    started = time.monotonic()
    with pytest.raises(DriverError) as refused:
        asyncio.run(RbdPool(ceph.conf, "rbd", "novacron", bad).create("vol-wrong", 1, None))
    assert "NOVACRON_RBD_USER and NOVACRON_RBD_KEYRING" in str(refused.value), refused.value
    assert time.monotonic() - started < 30
    # a keyring others may read is refused when the settings are read, naming the setting
    bad.chmod(0o644)
    monkeypatch.setenv("NOVACRON_RBD_CONF", str(ceph.conf))
    monkeypatch.setenv("NOVACRON_RBD_KEYRING", str(bad))
    with pytest.raises(ValueError, match="NOVACRON_RBD_KEYRING.*chmod 600"):
        Settings.from_env()


#: the VM backup holding an rbd volume, restored over the VM by the last test while it is stopped
#: (that test's cold move stops it already: the restore costs no extra guest boot)
BACKED: dict[str, str] = {}


def _rbd(ceph: Ceph, *args: str) -> None:
    subprocess.run(["rbd", "-c", str(ceph.conf), *args], capture_output=True, check=True, timeout=60)


def _compare(ceph: Ceph, a: str, b: str) -> None:
    """Byte-identical RBD images (``<image>`` or ``<image>@<snap>``), read with the admin key."""
    compare = subprocess.run(
        ["qemu-img", "compare", "-U", "-f", "raw", "-F", "raw",
         f"rbd:rbd/{a}:conf={ceph.conf}", f"rbd:rbd/{b}:conf={ceph.conf}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert compare.returncode == 0 and "identical" in compare.stdout, compare.stdout + compare.stderr


def test_rbd_volumes_backed_up_with_their_vm_and_alone(env: Env, ceph: Ceph) -> None:
    """A VM's backup holds its attached rbd volume (restored over the VM in the last test); a
    detached rbd volume's own backup (a full read) restores as a new, byte-identical rbd volume."""
    c, vm_id = env.c, env.vms["rbd-vm"]
    r = c.post(
        "/v1/backup-targets",
        json={"name": "local", "type": "local", "config": {"path": str(env.server.state_dir / "bk")}},
    )
    assert r.status_code == 201, r.text
    body = {"name": "bk-rbd", "size_gb": 1, "pool": "rbd", "project_id": env.project}
    vid = str(_ok(c, c.post("/v1/volumes", json=body))["id"])
    _ok(c, c.post(f"/v1/volumes/{vid}/attach", json={"vm": vm_id}))
    dev = _disk(env, "rbd-vm", vid).partition(":")[0]
    write = "echo MARK$((6000+{n})){word} | dd of=/dev/" + dev + " 2>/dev/null; sync; echo ok"
    assert _guest(env, "rbd-vm", write.format(n=12, word="KEEP"), "W") == "ok"
    r = c.post("/v1/backups", json={"vm": vm_id})
    assert r.status_code == 202, r.text
    task = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert task["state"] == "succeeded", task["error"]
    disks = {d["name"]: d for d in task["result"]["disks"]}
    assert disks[vid]["size"] == 1 << 30 and disks[vid]["mode"] == "full", disks
    # the image as the backup read it (the guest wrote nothing since), for the byte compare later
    _rbd(ceph, "snap", "create", f"rbd/{vid}@as-backed-up")
    assert _guest(env, "rbd-vm", write.format(n=13, word="GONE"), "W") == "ok"
    BACKED.update(backup=r.json()["backup"]["id"], volume=vid)

    # a detached rbd volume alone (409 before): read whole from an RBD snapshot of the backup's
    # own, then incrementally (``rbd diff`` from that snapshot), restored as a new rbd volume
    alone = str(_ok(c, c.post("/v1/volumes", json={**body, "name": "alone-rbd"}))["id"])
    _qemu_io(ceph, alone, "write -P 0x5a 1M 64k", "write -P 0xa5 700M 4k")
    first = _volume_backup(c, alone)
    assert first["mode"] == "full" and first["disks"][0]["volume_id"] == alone, first
    assert _snaps(ceph, alone) == [f"nc-{first['id']}"], "the backup keeps its RBD snapshot"
    _qemu_io(ceph, alone, "write -P 0x3c 300M 64k")
    second = _volume_backup(c, alone)
    assert second["mode"] == "incremental" and second["parent_id"] == first["id"], second
    assert 64 * 1024 <= second["bytes_read"] <= 4 << 20, second  # the written span, not the volume
    assert _snaps(ceph, alone) == [f"nc-{second['id']}"], "the older backup's snapshot is dropped"
    print(f"rbd volume's own backups: full {first['bytes_read']} B read, then {second['bytes_read']} B")
    r = c.post(f"/v1/backups/{second['id']}/restore", json={"new_volume": "alone-restored"})
    assert r.status_code == 202, r.text
    task = wait_task(c, r.json()["task_id"], timeout_s=300)
    assert task["state"] == "succeeded", task["error"]
    made = c.get(f"/v1/volumes/{task['result']['volume_id']}").json()
    assert made["pool"] == "rbd" and made["status"] == "available" and made["source_volume_id"] == alone
    _compare(ceph, alone, str(made["id"]))  # the full and the incremental backup together
    for gone in (alone, str(made["id"])):  # with its backup's snapshot, the image goes
        assert c.delete(f"/v1/volumes/{gone}").status_code == 204
        assert gone not in _images(ceph)


def _qemu_io(ceph: Ceph, volume_id: str, *commands: str) -> None:
    argv = ["qemu-io", "-f", "raw", *(a for cmd in commands for a in ("-c", cmd))]
    wrote = subprocess.run([*argv, f"rbd:rbd/{volume_id}:conf={ceph.conf}"], capture_output=True, timeout=60)
    assert wrote.returncode == 0, wrote.stderr


def _volume_backup(c: httpx.Client, volume_id: str) -> dict[str, Any]:
    r = c.post("/v1/backups", json={"volume": volume_id})
    assert r.status_code == 202 and r.json()["volume_id"] == volume_id, r.text
    assert c.get(f"/v1/volumes/{volume_id}").json()["status"] == "backing-up"
    task = wait_task(c, r.json()["task_id"], timeout_s=300)
    assert task["state"] == "succeeded", task["error"]
    assert c.get(f"/v1/volumes/{volume_id}").json()["status"] == "available"
    return dict(c.get(f"/v1/backups/{r.json()['backup']['id']}").json())


def test_an_rbd_volume_stays_in_ceph_while_its_vm_migrates_live(env: Env, ceph: Ceph) -> None:
    """The last test of the module: the VM moves to the second host live, back cold, and is deleted."""
    c, vm_id = env.c, env.vms["rbd-vm"]
    agent = Agent(env.server, "node-b")
    try:
        token = c.post("/v1/hosts/join-tokens", json={}).json()
        agent.start(token["join_token"], token["ca_fingerprint"])
        _wait_host(c, "node-b", timeout_s=60)
        body = {"name": "moves", "size_gb": 1, "pool": "rbd", "project_id": env.project}
        vid = str(_ok(c, c.post("/v1/volumes", json=body))["id"])
        _ok(c, c.post(f"/v1/volumes/{vid}/attach", json={"vm": vm_id}))
        name = _disk(env, "rbd-vm", vid).partition(":")[0]
        wrote = f"echo MARK$((6000+9))MARK | dd of=/dev/{name} 2>/dev/null; sync; echo ok"
        assert _guest(env, "rbd-vm", wrote, "W") == "ok"

        source = c.get(f"/v1/vms/{vm_id}").json()["host_id"]
        r = c.post(f"/v1/vms/{vm_id}/migrate", json={})
        assert r.status_code == 202, r.text
        task = wait_task(c, r.json()["task_id"], timeout_s=300)
        assert task["state"] == "succeeded", task["error"]
        assert task["result"]["volumes_copied"] == [], "every host reaches an rbd volume: nothing copied"
        vm = c.get(f"/v1/vms/{vm_id}").json()
        assert vm["host_id"] != source and vm["state"] == "running"
        # on its new host the guest reads the marker from Ceph (its page cache dropped first)
        read = f"echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/{name} bs=16 count=1 2>/dev/null"
        assert _guest(env, "rbd-vm", read, "R") == "MARK6009MARK"
        assert vid in _images(ceph)
        # the destination started QEMU with the volume on its command line: the cephx key goes by
        # a secret object reading a 0600 file, never on the command line itself
        argv = Path(f"/proc/{_qemu_pid(vm_id)}/cmdline").read_bytes().decode()
        key = ceph.client_keyring.read_text().split("key = ")[1].strip()
        assert '"qom-type":"secret"' in argv and '"key-secret"' in argv, argv
        assert all(key not in p.read_text(errors="replace") for p in Path("/proc").glob("[0-9]*/cmdline"))

        # stopped, it moves back cold: the rbd volume is not copied either, and the VM started on
        # its first host again reads the marker through its new QEMU's cephx secret
        r = c.post(f"/v1/vms/{vm_id}/actions/stop", json={"timeout_s": 30})
        assert r.status_code == 202 and wait_task(c, r.json()["task_id"])["state"] == "succeeded", r.text
        r = c.post(f"/v1/vms/{vm_id}/migrate", json={"host": source})
        assert r.status_code == 202, r.text
        task = wait_task(c, r.json()["task_id"], timeout_s=300)
        assert task["state"] == "succeeded", task["error"]
        assert task["result"]["volumes_copied"] == [], task["result"]
        vm = c.get(f"/v1/vms/{vm_id}").json()
        assert vm["host_id"] == source and vm["state"] == "stopped", vm
        _restore_over_the_vm(env, ceph)
        _stopped_backup_restored_as_a_new_vm(env, ceph, [BACKED["volume"], vid])
        boots = c.get(f"/v1/vms/{vm_id}/console-log").text.count("NOVACRON-GUEST-READY")
        r = c.post(f"/v1/vms/{vm_id}/actions/start")
        assert r.status_code == 202 and wait_task(c, r.json()["task_id"])["state"] == "succeeded", r.text
        _wait_boots(c, vm_id, boots + 1, timeout_s=240)
        name = _disk(env, "rbd-vm", vid).partition(":")[0]
        assert _guest(env, "rbd-vm", f"dd if=/dev/{name} bs=16 count=1 2>/dev/null", "R") == "MARK6009MARK"
        restored = _disk(env, "rbd-vm", BACKED["volume"]).partition(":")[0]  # and the guest reads it
        read = f"dd if=/dev/{restored} bs=16 count=1 2>/dev/null"
        assert _guest(env, "rbd-vm", read, "R") == "MARK6012KEEP"
        done = wait_task(c, c.delete(f"/v1/vms/{vm_id}").json()["task_id"], timeout_s=120)
        assert done["state"] == "succeeded", done["error"]
    finally:
        agent.stop()
        shutil.rmtree(agent.state_dir, ignore_errors=True)


def _restore_over_the_vm(env: Env, ceph: Ceph) -> None:
    """The stopped VM restored from its backup: its rbd volume holds the backed-up bytes again."""
    c, vm_id, vid = env.c, env.vms["rbd-vm"], BACKED["volume"]
    assert "MARK6013GONE" in _read(ceph, vid)
    r = c.post(f"/v1/backups/{BACKED['backup']}/restore", json={"vm": vm_id})
    assert r.status_code == 202, r.text
    done = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert done["state"] == "succeeded", done["error"]
    assert done["result"]["disks"] == ["vda", vid], done["result"]
    assert "MARK6012KEEP" in _read(ceph, vid)
    _compare(ceph, f"{vid}@as-backed-up", vid)
    _rbd(ceph, "snap", "rm", f"rbd/{vid}@as-backed-up")


def _stopped_backup_restored_as_a_new_vm(env: Env, ceph: Ceph, volumes: list[str]) -> None:
    """The stopped VM's backup reads its rbd volumes whole (``qemu-nbd``); restored into a new VM,
    each becomes a new rbd image byte-identical to the volume it was backed up from."""
    c, vm_id = env.c, env.vms["rbd-vm"]
    r = c.post("/v1/backups", json={"vm": vm_id})
    assert r.status_code == 202, r.text
    task = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert task["state"] == "succeeded", task["error"]
    disks = {d["name"]: d for d in task["result"]["disks"]}
    assert all(disks[v]["size"] == 1 << 30 for v in volumes), disks
    r = c.post(f"/v1/backups/{r.json()['backup']['id']}/restore", json={"new_vm": "rbd-vm-copy"})
    assert r.status_code == 202, r.text
    done = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert done["state"] == "succeeded", done["error"]
    copy = done["result"]["vm_id"]
    made = {v["source_volume_id"]: v for v in c.get("/v1/volumes", params={"vm_id": copy}).json()["items"]}
    assert set(volumes) <= set(made), made  # each rbd volume of the VM got its copy
    for original in volumes:  # the original VM is stopped: nothing writes either image
        assert made[original]["pool"] == "rbd" and made[original]["status"] == "in-use", made[original]
        assert made[original]["id"] in _images(ceph)
        _compare(ceph, original, str(made[original]["id"]))
    done = wait_task(c, c.delete(f"/v1/vms/{copy}").json()["task_id"], timeout_s=120)
    assert done["state"] == "succeeded", done["error"]
    for v in made.values():  # detached with the VM's deletion; deleting them removes their images
        assert c.delete(f"/v1/volumes/{v['id']}").status_code == 204
        assert v["id"] not in _images(ceph)

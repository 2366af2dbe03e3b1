"""The point in time of a running VM's backup, read over QEMU's NBD export: writes made after it
began stay out, and a failed incremental loses no change.

One QEMU guest for the module, driven by the agent's own operation (``agentops.backup_disk``)
without a server: what is under test is the disk read, not the API (tests/integration/
test_backups.py covers that path). Writes go through the guest's block device (QMP ``qemu-io``
on ``vda``, the device the guest itself writes through, above the backup's copy-before-write
filter), so the bitmaps and the filter see them exactly as guest writes.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from novacron.agent.protocol import BackupDisk
from novacron.backup import agentops, vmstore
from novacron.backup.store import ChunkStore
from novacron.virt import volumes
from novacron.virt.base import InstanceSpec, VolumeAttachment
from novacron.virt.qemu import QemuDriver
from tests.conftest import Guest, short_tmpdir
from tests.integration.backupkeys import backup_settings

MiB = 1 << 20
CHUNK = 4 * MiB
VM = "fleece-vm"
#: the volume the volume test hot-plugs (still attached when the VM is stopped)
VOLUME = "vol-0123456789abcdef"
TENANT = "t1"


@dataclass
class Env:
    d: QemuDriver
    work: Path
    secrets: dict[str, Any]
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def write(self, offset: int, length: int, pattern: int) -> None:
        cmd = f'qemu-io vda "write -P {pattern} {offset} {length}"'
        out = self.run(self.d.qmp(VM, "human-monitor-command", {"command-line": cmd}))
        assert "error" not in str(out).lower(), out

    def backup(self, snap: str, parent: str | None, report: Any = None) -> dict[str, Any]:
        request = BackupDisk(snapshot_id=snap, parent_id=parent, secrets=self.secrets)
        result: dict[str, Any] = self.run(agentops.backup_disk(self.d, VM, request, report))
        return result

    def store(self) -> ChunkStore:
        return vmstore.agent_store(self.secrets)

    def read(self, snap: str, offset: int, length: int) -> bytes:
        return self.store().read_snapshot(TENANT, snap, "vda", offset, length)

    def leftovers(self) -> dict[str, Any]:
        """What a backup may leave in QEMU: jobs, exports, extra nodes, bitmaps."""
        nodes = self.run(self.d.qmp(VM, "query-named-block-nodes", {"flat": True}))
        block = self.run(self.d.qmp(VM, "query-block"))
        return {
            "jobs": self.run(self.d.qmp(VM, "query-jobs")),
            "exports": self.run(self.d.qmp(VM, "query-block-exports")),
            "nodes": sorted(n["node-name"] for n in nodes if n["node-name"].startswith("nc-")),
            "bitmaps": sorted(b["name"] for b in block[0]["inserted"].get("dirty-bitmaps", [])),
        }


@pytest.fixture(scope="module")
def env(guest: Guest) -> Iterator[Env]:
    work = short_tmpdir("ncfl")
    d = QemuDriver(work / "inst", work / "run", accelerator="auto", bridge=None)
    loop = asyncio.new_event_loop()
    try:
        spec = InstanceSpec(
            id=VM, name="fleece", vcpus=1, ram_mb=256, disk_gb=1, image_path=guest.disk,
            image_format="qcow2", mac="52:54:00:12:34:77", kernel_path=guest.kernel,
            initrd_path=guest.initrd, kernel_cmdline=guest.cmdline,
        )  # fmt: skip
        loop.run_until_complete(d.launch(spec))
        settings = backup_settings(work, TENANT)
        row = SimpleNamespace(
            id="bkt-test", type="local", config={"path": str(work / "target")}, chunk_size=CHUNK
        )
        secrets = vmstore.agent_payload(settings, row, TENANT)  # type: ignore[arg-type]
        yield Env(d, work, secrets, loop)
    finally:
        loop.run_until_complete(d.destroy(VM))
        loop.close()
        shutil.rmtree(work, ignore_errors=True)


def test_writes_after_the_point_in_time_are_not_in_the_snapshot(env: Env) -> None:
    full = env.backup("s0", None)
    assert full["mode"] == "full" and full["consistency"] == "crash", full
    before_9 = env.read("s0", 9 * CHUNK, 64 << 10)
    env.write(5 * CHUNK, 64 << 10, 0x11)
    late: list[str] = []

    async def report(progress: dict[str, Any]) -> bool:
        # the view is exported, nothing is read yet: the guest overwrites the chunk about to be
        # read, and a chunk that had not changed
        if progress.get("phase") == "point-in-time":
            for offset, pattern in ((5 * CHUNK, 0x22), (9 * CHUNK, 0x33)):
                cmd = f'qemu-io vda "write -P {pattern} {offset} {64 << 10}"'
                late.append(await env.d.qmp(VM, "human-monitor-command", {"command-line": cmd}))
        return True

    inc = env.backup("s1", "s0", report)
    assert len(late) == 2, "the backup never reported its point in time"
    assert inc["mode"] == "incremental" and inc["chunks_changed"] == 1, inc
    assert inc["bytes_read"] == 64 << 10, inc  # the dirty 64 KiB only, kept as a patch over s0's chunk
    assert env.read("s1", 5 * CHUNK, 64 << 10) == bytes([0x11]) * (64 << 10)
    assert env.read("s1", 9 * CHUNK, 64 << 10) == before_9
    assert env.run(env.d.qmp(VM, "query-status"))["status"] == "running"
    # the late writes were tracked by the new bitmap: the next incremental has them both
    nxt = env.backup("s2", "s1")
    assert nxt["mode"] == "incremental" and nxt["chunks_changed"] == 2, nxt
    assert env.read("s2", 5 * CHUNK, 64 << 10) == bytes([0x22]) * (64 << 10)
    assert env.read("s2", 9 * CHUNK, 64 << 10) == bytes([0x33]) * (64 << 10)
    assert env.leftovers() == {"jobs": [], "exports": [], "nodes": [], "bitmaps": ["nc-s2"]}


def test_a_failed_incremental_leaves_the_next_one_complete(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.write(12 * CHUNK + MiB, MiB, 0x44)
    real = ChunkStore.write_snapshot

    def broken(self: ChunkStore, *args: Any, **kwargs: Any) -> Any:
        reader = args[3]
        reader(12 * CHUNK, CHUNK)  # it read a chunk, then the target failed
        raise OSError("injected: the backup target went away")

    monkeypatch.setattr(ChunkStore, "write_snapshot", broken)
    with pytest.raises(OSError, match="injected"):
        env.backup("s3", "s2")
    monkeypatch.setattr(ChunkStore, "write_snapshot", real)
    # nothing of the failed try stays in QEMU; the parent's bitmap still records every change
    assert env.leftovers() == {"jobs": [], "exports": [], "nodes": [], "bitmaps": ["nc-s2"]}
    env.write(14 * CHUNK, MiB, 0x55)
    inc = env.backup("s4", "s2")
    assert inc["mode"] == "incremental" and inc["chunks_changed"] == 2, inc
    # the guest writes nothing meanwhile: the disk now is the snapshot's point in time
    restored = env.work / "restored.raw"
    env.store().restore_to(TENANT, "s4", "vda", restored)
    compare = subprocess.run(
        ["qemu-img", "compare", "-U", "-f", "qcow2", "-F", "raw", str(env.d.disk_path(VM)), str(restored)],
        capture_output=True,
        text=True,
    )
    assert compare.returncode == 0 and "identical" in compare.stdout, compare.stdout + compare.stderr


def _volume_io(env: Env, volume_id: str, cmd: str) -> None:
    """A write (or flush) through the volume's guest device, above the backup's filter, as the guest's."""
    line = f'qemu-io -d {volumes.device_id(volume_id)}/virtio-backend "{cmd}"'
    out = env.run(env.d.qmp(VM, "human-monitor-command", {"command-line": line}))
    assert "error" not in str(out).lower(), out


def _volume_bitmaps(env: Env, volume_id: str) -> list[str]:
    nodes = env.run(env.d.qmp(VM, "query-named-block-nodes", {"flat": True}))
    node = next(n for n in nodes if n["node-name"] == volumes.format_node(volume_id))
    return sorted(b["name"] for b in node.get("dirty-bitmaps", []))


def test_attached_volumes_are_backed_up_with_the_root_disk_at_one_point_in_time(env: Env) -> None:
    vol_id = VOLUME
    path = env.work / "volume.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), str(64 * MiB)], check=True)
    attachment = VolumeAttachment(vol_id, "file", str(path), vol_id[:20])
    env.run(env.d.attach_volume(VM, attachment))
    env.write(3 * CHUNK, 64 << 10, 0x61)
    _volume_io(env, vol_id, f"write -P 0x62 {MiB} {64 << 10}")
    _volume_io(env, vol_id, f"write -P 0x63 {5 * CHUNK} {MiB}")

    def backup(snap: str, parent: str) -> dict[str, Any]:
        request = BackupDisk(snapshot_id=snap, parent_id=parent, secrets=env.secrets, volumes=(attachment,))
        result: dict[str, Any] = env.run(agentops.backup_disk(env.d, VM, request, None))
        return result

    # the root disk's bitmap of s4 drives an incremental; the new volume has none: read whole, and why
    first = backup("v1", "s4")
    disks = {d["name"]: d for d in first["disks"]}
    assert list(disks) == ["vda", vol_id], first
    assert disks["vda"]["mode"] == "incremental" and disks["vda"]["bytes_read"] == 64 << 10, disks
    assert disks[vol_id]["mode"] == "full" and "no change-tracking bitmap" in disks[vol_id]["reason"]
    assert disks[vol_id]["size"] == 64 * MiB and disks[vol_id]["device"] == volumes.device_id(vol_id)
    assert disks[vol_id]["bytes_read"] == 2 * CHUNK, disks  # its two allocated chunks, whole
    assert first["mode"] == "incremental" and first["bytes_read"] == (64 << 10) + 2 * CHUNK, first
    assert sorted(env.store().disks(TENANT, "v1")) == sorted(["vda", vol_id])
    assert env.store().read_snapshot(TENANT, "v1", vol_id, MiB, 64 << 10) == bytes([0x62]) * (64 << 10)
    # the guest writes on the volume only: the next incremental reads just that 64 KiB of it
    _volume_io(env, vol_id, f"write -P 0x64 {9 * CHUNK} {64 << 10}")
    second = backup("v2", "v1")
    disks = {d["name"]: d for d in second["disks"]}
    assert disks["vda"]["mode"] == "incremental" and disks["vda"]["bytes_read"] == 0, disks
    assert disks[vol_id]["mode"] == "incremental" and disks[vol_id]["bytes_read"] == 64 << 10, disks
    assert second["bytes_read"] == 64 << 10 and second["chunks_changed"] == 1, second
    _volume_io(env, vol_id, "flush")
    restored = env.work / "volume-restored.raw"
    env.store().restore_to(TENANT, "v2", vol_id, restored)
    compare = subprocess.run(
        ["qemu-img", "compare", "-U", "-f", "qcow2", "-F", "raw", str(path), str(restored)],
        capture_output=True,
        text=True,
    )
    assert compare.returncode == 0 and "identical" in compare.stdout, compare.stdout + compare.stderr
    assert _volume_bitmaps(env, vol_id) == ["nc-v2"]
    # the volume's bitmap is lost: that disk alone is read whole again, with the reason
    env.run(
        env.d.qmp(VM, "block-dirty-bitmap-remove", {"node": volumes.format_node(vol_id), "name": "nc-v2"})
    )
    third = backup("v3", "v2")
    disks = {d["name"]: d for d in third["disks"]}
    assert disks["vda"]["mode"] == "incremental", disks
    assert disks[vol_id]["mode"] == "full" and "no change-tracking bitmap" in disks[vol_id]["reason"], disks
    assert f"{vol_id}: no change-tracking bitmap" in third["reason"], third
    assert env.leftovers() == {"jobs": [], "exports": [], "nodes": [], "bitmaps": ["nc-v3"]}
    assert _volume_bitmaps(env, vol_id) == ["nc-v3"]


def test_a_stopped_vm_is_read_whole_over_qemu_nbd(env: Env) -> None:
    env.run(env.d.power_off(VM))  # QMP quit: QEMU closes the disk and stores its bitmap
    volume = env.work / "volume.qcow2"
    attachment = VolumeAttachment(VOLUME, "file", str(volume), VOLUME[:20])
    request = BackupDisk(snapshot_id="s5", parent_id="s4", secrets=env.secrets, volumes=(attachment,))
    full: dict[str, Any] = env.run(agentops.backup_disk(env.d, VM, request, None))
    assert full["mode"] == "full" and "stopped" in full["reason"], full
    assert full["bytes_read"] < 64 * MiB, full  # the allocated data only, not the 1 GiB disk
    # the stopped VM's volume is read whole from its file too, and keeps the new bitmap only
    assert [d["name"] for d in full["disks"]] == ["vda", VOLUME], full
    volume_info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(volume)], capture_output=True, check=True
        ).stdout
    )
    assert [b["name"] for b in volume_info["format-specific"]["data"]["bitmaps"]] == ["nc-s5"], volume_info
    restored = env.work / "restored-offline.raw"
    env.store().restore_to(TENANT, "s5", "vda", restored)
    compare = subprocess.run(
        ["qemu-img", "compare", "-f", "qcow2", "-F", "raw", str(env.d.disk_path(VM)), str(restored)],
        capture_output=True,
        text=True,
    )
    assert compare.returncode == 0 and "identical" in compare.stdout, compare.stdout + compare.stderr
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(env.d.disk_path(VM))], capture_output=True, check=True
        ).stdout
    )
    assert [b["name"] for b in info["format-specific"]["data"]["bitmaps"]] == ["nc-s5"], info

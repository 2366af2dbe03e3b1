"""Change-block tracking and point-in-time copies of a VM disk, on QEMU 7.2.

How a backup of a running VM reads its disk:

- Every backup leaves a persistent dirty bitmap ``nc-<snapshot id>`` on the disk's format node
  (``vda-disk``) whose granularity is the chunk size of the store, so one dirty bit is one chunk.
  QEMU keeps it in the qcow2 overlay across a clean restart; a QEMU killed without closing the
  image leaves it marked in use ("inconsistent"), and then it is not trusted.
- The point in time is one QMP ``transaction``: ``block-dirty-bitmap-add`` of the new bitmap and
  ``blockdev-backup`` into a scratch qcow2. The backup job does copy-before-write, so the guest
  keeps running and writing while the copy is read; it is never paused.
- Full: ``sync=full``. Incremental: ``sync=bitmap`` with the previous backup's bitmap and
  ``bitmap-mode=never``, so QEMU reads only the dirty chunks and the old bitmap is left as it was
  (it keeps recording): if anything later fails, the old bitmap still covers every change and
  only the new one is dropped. Once the snapshot is stored, the older bitmaps are removed.
- Which chunks changed is read back from the scratch qcow2 (``qemu-img map``: ``present``
  extents; a chunk the guest zeroed is present too), and the scratch image is converted to a
  sparse raw file the chunk store reads at chunk offsets.

Chosen over NBD fleecing (``copy-before-write`` filter + ``qemu:dirty-bitmap`` meta context)
because it needs no NBD client with meta-context support, uses only long-stable QMP, and the
job's own counters say how many bytes QEMU read. The cost is one local copy of the changed data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from novacron.virt import guestagent
from novacron.virt.base import DriverError
from novacron.virt.qemu import QemuDriver

NODE = "vda-disk"
PREFIX = "nc-"
JOB_POLL_S = 0.2
Progress = Callable[[dict[str, Any]], Awaitable[bool]]


@dataclass
class PointInTime:
    """A disk as it was at the backup's point in time, readable as a sparse raw file."""

    raw: Path
    size: int
    #: chunk indexes that changed since the parent; None means every chunk (a full backup)
    changed: list[int] | None
    mode: str
    reason: str
    consistency: str
    #: bytes QEMU read from the disk for this backup
    bytes_read: int
    bitmap: str


def bitmap_name(snapshot_id: str) -> str:
    return PREFIX + snapshot_id


async def _run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise DriverError(f"{argv[0]} {argv[1]} failed: {err.decode(errors='replace').strip()}")
    return out.decode()


async def bitmaps(driver: QemuDriver, instance_id: str) -> list[dict[str, Any]]:
    """The dirty bitmaps of the running VM's disk, as QEMU reports them."""
    for dev in await driver.qmp(instance_id, "query-block"):
        if dev.get("device") == "vda":
            return list(dev.get("inserted", {}).get("dirty-bitmaps", []))
    raise DriverError(f"instance {instance_id} has no disk vda")


async def disk_size(driver: QemuDriver, instance_id: str) -> int:
    if driver.pid(instance_id) is not None:
        for dev in await driver.qmp(instance_id, "query-block"):
            if dev.get("device") == "vda":
                return int(dev["inserted"]["image"]["virtual-size"])
    info = json.loads(
        await _run("qemu-img", "info", "-U", "--output=json", str(driver.disk_path(instance_id)))
    )
    return int(info["virtual-size"])


def _usable(found: dict[str, Any] | None, chunk_size: int) -> str | None:
    """Why a parent's bitmap cannot drive an incremental backup, or None when it can."""
    if found is None:
        return (
            "no change-tracking bitmap of the previous backup on the disk "
            "(QEMU restarted without it, or the disk was replaced)"
        )
    if found.get("inconsistent"):
        return "the change-tracking bitmap is inconsistent (QEMU ended without closing the disk)"
    if not found.get("persistent") or not found.get("recording", True):
        return "the change-tracking bitmap is not persistent or not recording"
    if int(found.get("granularity", 0)) != chunk_size:
        return f"the change-tracking bitmap's granularity is not the chunk size {chunk_size}"
    return None


def changed_chunks(map_json: list[dict[str, Any]], chunk_size: int) -> list[int]:
    """Chunk indexes overlapping the extents the backup job wrote into the scratch image."""
    chunks: set[int] = set()
    for extent in map_json:
        if not extent.get("present"):
            continue
        start, end = int(extent["start"]), int(extent["start"]) + int(extent["length"])
        chunks.update(range(start // chunk_size, -(-end // chunk_size)))
    return sorted(chunks)


async def _wait_job(driver: QemuDriver, instance_id: str, job: str, report: Progress | None) -> int:
    """Wait for a backup job to conclude; its total is the bytes QEMU copied from the disk."""
    total = 0
    while True:
        jobs = {j["id"]: j for j in await driver.qmp(instance_id, "query-jobs")}
        state = jobs.get(job)
        if state is None:
            raise DriverError(f"backup job {job} vanished")
        total = int(state.get("total-progress", 0))
        if state["status"] == "concluded":
            if state.get("error"):
                raise DriverError(f"backup job failed: {state['error']}")
            return total
        if report is not None:
            current = int(state.get("current-progress", 0))
            await report({"phase": "copy", "bytes_read": current, "fraction": 0.5 * current / max(total, 1)})
        await asyncio.sleep(JOB_POLL_S)


async def point_in_time(
    driver: QemuDriver,
    instance_id: str,
    workdir: Path,
    chunk_size: int,
    snapshot_id: str,
    parent_id: str | None,
    report: Progress | None = None,
    force_full: bool = False,
) -> PointInTime:
    """Copy the running VM's disk as it is now (only the changed chunks when a bitmap allows)."""
    workdir.mkdir(parents=True, exist_ok=True)
    size = await disk_size(driver, instance_id)
    new = bitmap_name(snapshot_id)
    present = {b["name"]: b for b in await bitmaps(driver, instance_id)}
    if new in present:  # a retry of this very backup: start its point in time again
        await driver.qmp(instance_id, "block-dirty-bitmap-remove", {"node": NODE, "name": new})
    if force_full:
        reason = "a full backup was asked for"
    elif parent_id is None:
        reason = "first backup of this disk"
    else:
        reason = _usable(present.get(bitmap_name(parent_id)), chunk_size) or ""
    mode = "incremental" if not reason else "full"
    scratch = workdir / "pit.qcow2"
    await _run("qemu-img", "create", "-q", "-f", "qcow2", str(scratch), str(size))
    node, job = f"nc-bk-{snapshot_id}"[:31], f"nc-bk-{snapshot_id}"[:31]
    await driver.qmp(
        instance_id,
        "blockdev-add",
        {"driver": "qcow2", "node-name": node, "file": {"driver": "file", "filename": str(scratch)}},
    )
    backup: dict[str, Any] = {"device": NODE, "target": node, "job-id": job, "auto-dismiss": False}
    if mode == "incremental":
        backup.update(sync="bitmap", bitmap=bitmap_name(str(parent_id)), **{"bitmap-mode": "never"})
    else:
        backup["sync"] = "full"
    frozen = await guestagent.freeze(driver.qga_socket(instance_id))
    try:
        await driver.qmp(
            instance_id,
            "transaction",
            {
                "actions": [
                    {
                        "type": "block-dirty-bitmap-add",
                        "data": {"node": NODE, "name": new, "persistent": True, "granularity": chunk_size},
                    },
                    {"type": "blockdev-backup", "data": backup},
                ]
            },
        )
    finally:
        if frozen:
            await guestagent.thaw(driver.qga_socket(instance_id))
    try:
        bytes_read = await _wait_job(driver, instance_id, job, report)
    except BaseException:
        await discard(driver, instance_id, snapshot_id)
        raise
    finally:
        with contextlib.suppress(DriverError):
            await driver.qmp(instance_id, "job-dismiss", {"id": job})
        with contextlib.suppress(DriverError):
            await driver.qmp(instance_id, "blockdev-del", {"node-name": node})
    extents = json.loads(await _run("qemu-img", "map", "--output=json", str(scratch)))
    raw = workdir / "pit.raw"
    await _run("qemu-img", "convert", "-O", "raw", str(scratch), str(raw))
    scratch.unlink()
    return PointInTime(
        raw=raw,
        size=size,
        changed=changed_chunks(extents, chunk_size) if mode == "incremental" else None,
        mode=mode,
        reason=reason or "changed chunks from the dirty bitmap of the previous backup",
        consistency="application" if frozen else "crash",
        bytes_read=bytes_read,
        bitmap=new,
    )


async def offline_copy(
    driver: QemuDriver, instance_id: str, workdir: Path, snapshot_id: str, parent_id: str | None
) -> PointInTime:
    """A stopped VM: its disk file is the point in time; read it whole (nothing can change it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    disk = driver.disk_path(instance_id)
    if not disk.exists():
        raise DriverError(f"instance {instance_id} has no disk on this host")
    size = await disk_size(driver, instance_id)
    raw = workdir / "pit.raw"
    await _run("qemu-img", "convert", "-U", "-O", "raw", str(disk), str(raw))
    return PointInTime(
        raw=raw,
        size=size,
        changed=None,
        mode="full",
        reason="the VM is stopped: its disk is read whole",
        consistency="application",  # a cleanly stopped guest has nothing in flight
        bytes_read=size,
        bitmap=bitmap_name(snapshot_id),
    )


async def commit(driver: QemuDriver, instance_id: str, snapshot_id: str, chunk_size: int) -> None:
    """The snapshot is stored: its bitmap is now the only one, tracking changes from its point in time."""
    keep = bitmap_name(snapshot_id)
    if driver.pid(instance_id) is not None:
        for b in await bitmaps(driver, instance_id):
            if b["name"].startswith(PREFIX) and b["name"] != keep:
                await driver.qmp(instance_id, "block-dirty-bitmap-remove", {"node": NODE, "name": b["name"]})
        return
    # stopped: the bitmaps live in the qcow2 file itself
    disk = str(driver.disk_path(instance_id))
    info = json.loads(await _run("qemu-img", "info", "--output=json", disk))
    names = [b["name"] for b in info.get("format-specific", {}).get("data", {}).get("bitmaps", [])]
    for name in names:
        if name.startswith(PREFIX) and name != keep:
            await _run("qemu-img", "bitmap", "--remove", disk, name)
    if keep not in names:
        await _run("qemu-img", "bitmap", "--add", "-g", str(chunk_size), disk, keep)


async def discard(driver: QemuDriver, instance_id: str, snapshot_id: str) -> None:
    """The backup failed: drop its bitmap; the parent's still records every change since."""
    if driver.pid(instance_id) is None:
        return
    names = {b["name"] for b in await bitmaps(driver, instance_id)}
    if bitmap_name(snapshot_id) in names:
        await driver.qmp(
            instance_id, "block-dirty-bitmap-remove", {"node": NODE, "name": bitmap_name(snapshot_id)}
        )

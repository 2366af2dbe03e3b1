"""Full clones of a VM's disk: a standalone qcow2 (no backing file) with everything the source reads.

- A stopped source: ``qemu-img convert`` of its overlay (and the image below it) into one file.
- A running source: a QEMU ``drive-mirror sync=full`` job to a new file; once the mirror is in sync
  it is cancelled, which completes it without pivoting: the source keeps its disk, and the copy
  holds the disk as it was at that moment (crash-consistent, as a power cut would leave it).
- One of its VM snapshots (a qcow2 internal snapshot, ``virt/snapshots.py``), running or not:
  ``qemu-img convert -U -l snapshot.name=<id>`` of the chain, no ``-B``: what the snapshot holds
  over the image and the image below it, in one file. ``-U`` because a running guest holds the
  disk locked; the read is consistent because an internal snapshot's clusters are never rewritten.

Either way the copy is written beside its final name and renamed when whole, so a failed or
repeated step never leaves a half disk that a later ``prepare`` would boot.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from novacron.private import mkdir_private
from novacron.virt import images
from novacron.virt.base import DriverError, Progress

if TYPE_CHECKING:
    from novacron.virt.qemu import QemuDriver

POLL_S = 0.2
#: how ``qemu-img convert -p`` shows its progress: "    (42.00/100%)"
_PERCENT = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")
TIMEOUT_S = 3600.0


async def clone(
    drv: QemuDriver, source_id: str, instance_id: str, report: Progress | None, snapshot: str | None = None
) -> None:
    """Copy ``source_id``'s disk (or its VM snapshot ``snapshot``) into ``instance_id``'s disk path
    (idempotent: a whole copy stays)."""
    dest = drv.disk_path(instance_id)
    if dest.exists():
        return
    src = drv.disk_path(source_id)
    if not src.exists():
        raise DriverError(f"instance {source_id} has no disk on this host")
    mkdir_private(dest.parent)
    tmp = dest.with_name(dest.name + ".clone")
    tmp.unlink(missing_ok=True)
    try:
        if snapshot is not None:
            await _has_snapshot(src, snapshot)
            read = ["-U", "-l", f"snapshot.name={snapshot}"]
            await asyncio.wait_for(_convert(src, tmp, report, read), TIMEOUT_S)
        elif drv.pid(source_id) is None:
            await asyncio.wait_for(_convert(src, tmp, report), TIMEOUT_S)
        else:
            await _mirror(drv, source_id, f"clone-{instance_id}", tmp, report)
        os.chmod(tmp, 0o600)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


async def _has_snapshot(src: Path, snapshot: str) -> None:
    info = await asyncio.to_thread(images.qemu_img_info, src)
    if snapshot not in {s.get("name") for s in info.get("snapshots", [])}:
        raise DriverError(f"the disk has no snapshot {snapshot} (deleted meanwhile?)")


async def _convert(src: Path, target: Path, report: Progress | None, read: list[str] | None = None) -> None:
    """``qemu-img convert`` of the disk's chain (``read``: how to open it), no backing file left, its
    ``-p`` percentage shown as progress."""
    proc = await asyncio.create_subprocess_exec(
        images.QEMU_IMG, "convert", "-p", *(read or []), "-f", "qcow2", "-O", "qcow2", str(src), str(target),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    seen, shown = b"", 0.0
    try:
        while chunk := await proc.stdout.read(512):
            seen = (seen + chunk)[-128:]
            found = _PERCENT.findall(seen)
            if found and report is not None and float(found[-1]) - shown >= 1:
                shown = float(found[-1])
                await report({"phase": "copy", "fraction": shown / 100})
        err = await proc.stderr.read()
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    if await proc.wait() != 0:
        raise DriverError(f"qemu-img convert of {src} failed: {err.decode(errors='replace').strip()}")


async def _mirror(
    drv: QemuDriver, source_id: str, job_id: str, target: Path, report: Progress | None
) -> None:
    """Mirror the running disk (its whole chain) into a new standalone qcow2 ``target`` by the job
    ``job_id`` (one per clone: several clones of one VM may copy at once)."""
    await _drop_stale_job(drv, source_id, job_id)
    await drv.qmp(
        source_id,
        "drive-mirror",
        {
            "job-id": job_id,
            "device": "vda",
            "target": str(target),
            "format": "qcow2",
            "sync": "full",  # the whole chain: QEMU creates the target with no backing file
            "mode": "absolute-paths",
        },
    )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not (job := await _job(drv, source_id, job_id)).get("ready"):
            if time.monotonic() > deadline:
                raise DriverError(f"the disk copy of {source_id} was not in sync in {TIMEOUT_S:.0f} s")
            if report is not None:
                total = max(int(job.get("len") or 0), 1)
                done = int(job.get("offset") or 0)
                await report(
                    {"phase": "copy", "bytes_done": done, "bytes_total": total, "fraction": done / total}
                )
            await asyncio.sleep(POLL_S)
        # in sync: cancelling completes the copy without a pivot (the source keeps its own disk)
        await drv.qmp(source_id, "block-job-cancel", {"device": job_id})
        while any(j.get("device") == job_id for j in await drv.qmp(source_id, "query-block-jobs")):
            await asyncio.sleep(POLL_S / 4)
    except BaseException:
        with contextlib.suppress(DriverError):
            await drv.qmp(source_id, "block-job-cancel", {"device": job_id, "force": True})
        raise


async def _job(drv: QemuDriver, source_id: str, job_id: str) -> dict[str, Any]:
    jobs: list[dict[str, Any]] = await drv.qmp(source_id, "query-block-jobs")
    job = next((j for j in jobs if j.get("device") == job_id), None)
    if job is None:
        raise DriverError(f"the disk copy job of {source_id} is gone (the VM was stopped?)")
    return job


async def _drop_stale_job(drv: QemuDriver, source_id: str, job_id: str) -> None:
    """A copy left by an earlier attempt of the step (its file is gone): cancel it before a new one."""
    jobs: list[dict[str, Any]] = await drv.qmp(source_id, "query-block-jobs")
    if any(j.get("device") == job_id for j in jobs):
        await drv.qmp(source_id, "block-job-cancel", {"device": job_id, "force": True})
        while any(j.get("device") == job_id for j in await drv.qmp(source_id, "query-block-jobs")):
            await asyncio.sleep(POLL_S / 4)

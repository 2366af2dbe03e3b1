"""Backup operations an agent runs on the VM's host: back a disk up, restore a disk.

Both are host operations (``compute/hostops``), so they work for VMs on remote hosts. The chunk
store is opened from the operation's ``secrets`` (``backup/vmstore.py``); the point-in-time
view of a disk, read over NBD without an intermediate copy, is the driver's ``backup_view``
(``virt/cbt.py`` for QEMU). A driver that cannot back VMs up (``CAN_BACKUP``) is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from novacron.agent.protocol import BackupDisk, RestoreDisk, WaitConsole
from novacron.backup.vmstore import agent_store
from novacron.virt.base import BackupView, ComputeDriver, DriverError, Progress
from novacron.virt.images import raw_to_qcow2

DISK = "vda"


async def _with_progress(
    work: Callable[[], Any], poll: Callable[[], dict[str, Any]], report: Progress | None
) -> Any:
    """Run blocking ``work`` in a thread, reporting ``poll()`` every second meanwhile."""
    job = asyncio.create_task(asyncio.to_thread(work))
    while not job.done():
        if report is not None:
            await report(poll())
        await asyncio.wait({job}, timeout=1.0)
    return job.result()


def backer(driver: ComputeDriver) -> ComputeDriver:
    """``driver``, when it backs VMs up; ``NotSupported`` otherwise."""
    if not driver.CAN_BACKUP:
        driver.refuse("back VMs up")
    return driver


async def backup_disk(
    driver: ComputeDriver, instance_id: str, request: BackupDisk, report: Progress | None
) -> dict[str, Any]:
    """Store the disk as it is now (running or stopped) as snapshot ``request.snapshot_id``."""
    d = backer(driver)
    secrets = request.secrets
    store = agent_store(secrets)
    snapshot_id, parent_id = request.snapshot_id, request.parent_id
    chunk = int(secrets["chunk_size"])
    try:
        async with d.backup_view(
            instance_id, BackupView(snapshot_id, parent_id, chunk, request.full), report
        ) as pit:
            done = [0, 1]

            def counted(finished: int, total: int) -> None:
                done[0], done[1] = finished, max(total, 1)

            def write() -> Any:
                return store.write_snapshot(
                    str(secrets["tenant_id"]),
                    snapshot_id,
                    DISK,
                    pit.reader,
                    pit.size,
                    changed=pit.changed,
                    parent=parent_id if pit.changed is not None else None,
                    meta={
                        "vm_id": instance_id,
                        "mode": pit.mode,
                        "reason": pit.reason,
                        "consistency": pit.consistency,
                    },
                    progress=counted,
                    immutable_until=request.immutable_until,
                    dirty=pit.dirty,
                )

            def poll() -> dict[str, Any]:
                return {
                    "phase": "read",
                    "bytes_read": pit.bytes_read,
                    "chunks_done": done[0],
                    "chunks_to_do": done[1],
                    "fraction": done[0] / done[1],
                }

            stats = await _with_progress(write, poll, report)
        # only now does the new change tracking become the one the next backup starts from
        await d.commit_backup(instance_id, snapshot_id, chunk)
    except BaseException:
        with contextlib.suppress(Exception):
            await d.discard_backup(instance_id, snapshot_id)
        raise
    changed = pit.size // chunk + (1 if pit.size % chunk else 0) if pit.changed is None else len(pit.changed)
    dirty = pit.size if pit.dirty is None else sum(e - s for spans in pit.dirty.values() for s, e in spans)
    return {
        "mode": pit.mode,
        "reason": pit.reason,
        "consistency": pit.consistency,
        "size": pit.size,
        "bytes_read": pit.bytes_read,
        "chunks_changed": changed,
        "changed_bytes": dirty,
        "store": _stats(stats),
    }


def _stats(info: Any) -> dict[str, Any]:
    """The chunk store's figures for the disk (chunks read, uploaded, deduplicated, ...)."""
    disk = info.disks.get(DISK) if info is not None else None
    return dict(disk.stats) if disk is not None else {}


async def restore_disk(
    driver: ComputeDriver, instance_id: str, request: RestoreDisk, report: Progress | None
) -> dict[str, Any]:
    """Write a snapshot's disk as the stopped VM's disk (a standalone qcow2, no backing file)."""
    d = backer(driver)
    if d.pid(instance_id) is not None:
        raise DriverError("the VM is running: stop it before restoring over its disk")
    secrets = request.secrets
    store = agent_store(secrets)
    disk = d.disk_path(instance_id)
    disk.parent.mkdir(parents=True, exist_ok=True)
    raw = disk.parent / f"restore-{request.snapshot_id}.raw"
    size = request.size
    try:

        def restore() -> Any:
            return store.restore_to(str(secrets["tenant_id"]), request.snapshot_id, DISK, raw)

        def poll() -> dict[str, Any]:
            written = raw.stat().st_blocks * 512 if raw.exists() else 0
            return {
                "phase": "restore",
                "bytes_written": written,
                "fraction": min(written / max(size, 1), 1.0),
            }

        await _with_progress(restore, poll, report)
        tmp = disk.with_suffix(".restoring")
        await raw_to_qcow2(raw, tmp)  # -f raw: the bytes are the guest's
        tmp.replace(disk)
    finally:
        raw.unlink(missing_ok=True)
    return {"size": size, "disk": str(disk.name)}


async def wait_console(
    driver: ComputeDriver, instance_id: str, request: WaitConsole, report: Progress | None
) -> dict[str, Any]:
    """Wait until a freshly made VM prints ``needle`` on its console (restore tests, DR drills)."""
    needle = request.needle.encode()
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + request.timeout_s
    log = driver.console_log(instance_id)
    while True:
        if log.exists() and needle in log.read_bytes():
            return {"found": True, "after_s": round(loop.time() - started, 2)}
        if (await driver.observe(instance_id)).power_state.value in ("stopped", "absent", "crashed"):
            raise DriverError(f"the VM stopped before printing {request.needle!r}")
        if loop.time() > deadline:
            raise DriverError(f"{request.needle!r} did not appear on the console in time")
        await asyncio.sleep(0.3)

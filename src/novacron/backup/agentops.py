"""Backup operations an agent runs on the VM's host: back a disk up, restore a disk.

Both are host operations (``compute/hostops``), so they work for VMs on remote hosts. The chunk
store is opened from the operation's ``secrets`` (``backup/vmstore.py``); the point-in-time
view of a disk, read over NBD without an intermediate copy, comes from ``virt/cbt.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Awaitable, Callable
from typing import Any

from novacron.backup.vmstore import agent_store
from novacron.virt import cbt
from novacron.virt.base import DriverError
from novacron.virt.images import raw_to_qcow2
from novacron.virt.qemu import QemuDriver

Progress = Callable[[dict[str, Any]], Awaitable[bool]]
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


def qemu_driver(driver: Any) -> QemuDriver:
    if not isinstance(driver, QemuDriver):
        raise DriverError(f"the {driver.name} driver cannot back VMs up")
    return driver


async def backup_disk(
    driver: Any, instance_id: str, payload: dict[str, Any], report: Progress | None
) -> dict[str, Any]:
    d = qemu_driver(driver)
    secrets = payload["secrets"]
    store = agent_store(secrets)
    snapshot_id, parent_id = str(payload["snapshot_id"]), payload.get("parent_id")
    chunk = int(secrets["chunk_size"])
    workdir = d.instance_dir(instance_id) / f"backup-{snapshot_id}"
    running = d.pid(instance_id) is not None
    try:
        if running:
            view = cbt.point_in_time(
                d, instance_id, workdir, chunk, snapshot_id, parent_id, report, bool(payload.get("full"))
            )
        else:
            view = cbt.offline_view(d, instance_id)
        async with view as pit:
            done = [0, 1]

            def counted(finished: int, total: int) -> None:
                done[0], done[1] = finished, max(total, 1)

            def write() -> Any:
                return store.write_snapshot(
                    str(secrets["tenant_id"]),
                    snapshot_id,
                    DISK,
                    pit.reader.read,
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
                    immutable_until=payload.get("immutable_until"),
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
        if running or pit.mode == "full":
            # only now does the new bitmap become the one the next backup starts from
            await cbt.commit(d, instance_id, snapshot_id, chunk)
    except BaseException:
        with contextlib.suppress(Exception):
            await cbt.discard(d, instance_id, snapshot_id)
        raise
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)
    changed = pit.size // chunk + (1 if pit.size % chunk else 0) if pit.changed is None else len(pit.changed)
    return {
        "mode": pit.mode,
        "reason": pit.reason,
        "consistency": pit.consistency,
        "size": pit.size,
        "bytes_read": pit.bytes_read,
        "chunks_changed": changed,
        "changed_bytes": min(changed * chunk, pit.size),
        "store": _stats(stats),
    }


def _stats(info: Any) -> dict[str, Any]:
    """The chunk store's figures for the disk (chunks read, uploaded, deduplicated, ...)."""
    disk = info.disks.get(DISK) if info is not None else None
    return dict(disk.stats) if disk is not None else {}


async def restore_disk(
    driver: Any, instance_id: str, payload: dict[str, Any], report: Progress | None
) -> dict[str, Any]:
    """Write a snapshot's disk as the stopped VM's disk (a standalone qcow2, no backing file)."""
    d = qemu_driver(driver)
    if d.pid(instance_id) is not None:
        raise DriverError("the VM is running: stop it before restoring over its disk")
    secrets = payload["secrets"]
    store = agent_store(secrets)
    disk = d.disk_path(instance_id)
    disk.parent.mkdir(parents=True, exist_ok=True)
    raw = disk.parent / f"restore-{payload['snapshot_id']}.raw"
    size = int(payload["size"])
    try:

        def restore() -> Any:
            return store.restore_to(str(secrets["tenant_id"]), str(payload["snapshot_id"]), DISK, raw)

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
    driver: Any, instance_id: str, payload: dict[str, Any], report: Progress | None
) -> dict[str, Any]:
    """Wait until a freshly made VM prints ``needle`` on its console (restore tests, DR drills)."""
    needle = str(payload["needle"]).encode()
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + float(payload.get("timeout_s", 120))
    log = driver.console_log(instance_id)
    while True:
        if log.exists() and needle in log.read_bytes():
            return {"found": True, "after_s": round(loop.time() - started, 2)}
        if (await driver.observe(instance_id)).power_state.value in ("stopped", "absent", "crashed"):
            raise DriverError(f"the VM stopped before printing {payload['needle']!r}")
        if loop.time() > deadline:
            raise DriverError(f"{payload['needle']!r} did not appear on the console in time")
        await asyncio.sleep(0.3)

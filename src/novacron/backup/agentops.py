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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from novacron.agent.protocol import BackupDisk, RestoreDisk, WaitConsole
from novacron.backup.vmstore import agent_store
from novacron.virt.base import BackupView, ComputeDriver, DriverError, Progress
from novacron.virt.images import raw_to_qcow2

if TYPE_CHECKING:
    from novacron.virt.cbt import PointInTime  # libnbd: only on hosts that back VMs up

DISK = "vda"
#: the format ``qemu-img`` writes into a volume of each pool: a ``file`` volume is a qcow2, an
#: ``rbd`` one a raw RBD image, named by its location (``rbd:<pool>/<image>:conf=..:id=..:keyring=..``:
#: the keyring's path, never the key, is on the command line; ``virt/rbdauth.py``)
FORMATS = {"file": "qcow2", "rbd": "raw"}


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
    """Store the disks as they are now (running or stopped: the root disk or boot volume and every
    attached volume, at one point in time) as snapshot ``request.snapshot_id``."""
    d = backer(driver)
    secrets = request.secrets
    store = agent_store(secrets)
    snapshot_id, parent_id = request.snapshot_id, request.parent_id
    chunk = int(secrets["chunk_size"])
    view = BackupView(snapshot_id, parent_id, chunk, request.full, request.volumes)
    try:
        async with d.backup_view(instance_id, view, report) as pits:
            done = [0, 1]
            finished: list[Any] = []

            def counted(n: int, total: int) -> None:  # of the disk being written
                done[0], done[1] = n, max(total, 1)

            def write() -> None:
                for pit in pits:
                    finished.append(_write_disk(store, secrets, instance_id, request, pit, counted))

            def poll() -> dict[str, Any]:
                return {
                    "phase": "read",
                    "disk": pits[min(len(finished), len(pits) - 1)].disk.name,
                    "disks_done": len(finished),
                    "disks": len(pits),
                    "bytes_read": sum(p.bytes_read for p in pits),
                    "chunks_done": done[0],
                    "chunks_to_do": done[1],
                    "fraction": (len(finished) + done[0] / done[1]) / len(pits) if pits else 1.0,
                }

            await _with_progress(write, poll, report)
        # only now does the new change tracking become the one the next backup starts from
        await d.commit_backup(instance_id, snapshot_id, chunk, request.volumes)
    except BaseException:
        with contextlib.suppress(Exception):
            await d.discard_backup(instance_id, snapshot_id, request.volumes)
        raise
    disks = [_disk_result(pit, info, chunk) for pit, info in zip(pits, finished, strict=True)]
    return _summary(disks)


def _write_disk(  # noqa: PLR0913 - one disk of the snapshot, and where its progress goes
    store: Any,
    secrets: dict[str, Any],
    instance_id: str,
    request: BackupDisk,
    pit: PointInTime,
    counted: Callable[[int, int], None],
) -> Any:
    return store.write_snapshot(
        str(secrets["tenant_id"]),
        request.snapshot_id,
        pit.disk.name,
        pit.reader,
        pit.size,
        changed=pit.changed,
        parent=request.parent_id if pit.changed is not None else None,
        meta={
            "vm_id": instance_id,
            "mode": pit.mode,
            "reason": pit.reason,
            "consistency": pit.consistency,
            "device": pit.disk.device,
            "volume_id": pit.disk.volume_id,
        },
        progress=counted,
        immutable_until=request.immutable_until,
        dirty=pit.dirty,
    )


def _disk_result(pit: PointInTime, info: Any, chunk: int) -> dict[str, Any]:
    """What one disk's backup read and stored."""
    changed = -(-pit.size // chunk) if pit.changed is None else len(pit.changed)
    dirty = pit.size if pit.dirty is None else sum(e - s for spans in pit.dirty.values() for s, e in spans)
    disk = info.disks.get(pit.disk.name) if info is not None else None
    return {
        "name": pit.disk.name,
        "device": pit.disk.device,
        "volume_id": pit.disk.volume_id,
        "size": pit.size,
        "mode": pit.mode,
        "reason": pit.reason,
        "consistency": pit.consistency,
        "bytes_read": pit.bytes_read,
        "chunks_changed": changed,
        "changed_bytes": dirty,
        "store": dict(disk.stats) if disk is not None else {},
    }


#: the store's counters summed over a snapshot's disks
_SUMMED = (
    "chunks_total",
    "chunks_uploaded",
    "bytes_uploaded",
    "chunks_patched",
    "chunks_rebuilt",
    "packs",
    "bytes_read",
)


def _summary(disks: list[dict[str, Any]]) -> dict[str, Any]:
    """The snapshot's answer: the root disk's figures as before, totals over every disk, and each disk."""
    reasons = {d["reason"] for d in disks}
    reason = (
        disks[0]["reason"] if len(reasons) == 1 else "; ".join(f"{d['name']}: {d['reason']}" for d in disks)
    )
    stores = [d["store"] for d in disks]
    store = {**stores[0], **{k: sum(int(s.get(k, 0)) for s in stores) for k in _SUMMED if k in stores[0]}}
    return {
        "mode": "incremental" if any(d["mode"] == "incremental" for d in disks) else "full",
        "reason": reason,
        "consistency": disks[0]["consistency"],
        "size": sum(d["size"] for d in disks),
        "bytes_read": sum(d["bytes_read"] for d in disks),
        "chunks_changed": sum(d["chunks_changed"] for d in disks),
        "changed_bytes": sum(d["changed_bytes"] for d in disks),
        "store": store,
        "disks": disks,
    }


async def restore_disk(
    driver: ComputeDriver, instance_id: str, request: RestoreDisk, report: Progress | None
) -> dict[str, Any]:
    """Write a snapshot's disks back into the stopped VM: its root disk (a standalone qcow2, no
    backing file) and each volume of ``request.volumes`` (written in place into the volume's qcow2
    file or RBD image)."""
    d = backer(driver)
    if d.pid(instance_id) is not None:
        raise DriverError("the VM is running: stop it before restoring over its disk")
    store = agent_store(request.secrets)
    disk = d.disk_path(instance_id)
    disk.parent.mkdir(parents=True, exist_ok=True)
    raw = disk.parent / f"restore-{request.snapshot_id}.raw"
    steps = ([(DISK, None)] if request.root else []) + list(
        zip(request.sources, request.volumes, strict=True)
    )
    done: list[str] = []
    try:
        for name, volume in steps:
            if volume is not None and volume.driver not in FORMATS:
                raise DriverError(
                    f"restoring into a {volume.driver} volume is not built (volume {volume.volume_id})"
                )
            await _restore_one(store, request, name, raw, report, (len(done), len(steps)))
            if volume is None:
                tmp = disk.with_suffix(".restoring")
                await raw_to_qcow2(raw, tmp)  # -f raw: the bytes are the guest's
                tmp.replace(disk)
            else:  # in place: the volume keeps its file or RBD image (and its snapshots)
                await _run_tool(
                    "qemu-img", "convert", "-n", "-f", "raw", "-O", FORMATS[volume.driver], str(raw),
                    volume.path,
                )  # fmt: skip
            done.append(name)
            raw.unlink(missing_ok=True)
    finally:
        raw.unlink(missing_ok=True)
    return {"size": request.size, "disk": str(disk.name), "disks": done}


async def _restore_one(  # noqa: PLR0913 - one disk of the restore, and where its progress goes
    store: Any, request: RestoreDisk, name: str, raw: Path, report: Progress | None, place: tuple[int, int]
) -> None:
    """The snapshot's disk ``name`` into the sparse raw file ``raw``."""
    size = max(request.size, 1)

    def restore() -> Any:
        return store.restore_to(str(request.secrets["tenant_id"]), request.snapshot_id, name, raw)

    def poll() -> dict[str, Any]:
        written = raw.stat().st_blocks * 512 if raw.exists() else 0
        fraction = (place[0] + min(written / size, 1.0)) / max(place[1], 1)
        return {"phase": "restore", "disk": name, "bytes_written": written, "fraction": min(fraction, 1.0)}

    await _with_progress(restore, poll, report)


async def _run_tool(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise DriverError(f"{argv[0]} {argv[1]} failed: {err.decode(errors='replace').strip()}")


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

"""Backups of a detached volume on its own, and their restore as a new volume.

A volume attached to a VM is backed up with its VM (``virt/cbt.py``: one point in time for all of
the VM's disks). A detached (``available``) ``file`` or ``rbd`` volume is backed up alone by the
control plane, which reaches the pool's files and images (it made them, ``compute/pools.py``):
``POST /v1/backups {"volume": ...}`` makes a catalogue row like a VM's backup (``vm_id`` empty,
``vm_name`` the volume's name, ``source.volume_id``) and a durable task ``backup.volume``. The volume is
``backing-up`` meanwhile (attach, extend, delete wait). ``qemu-nbd`` exports its qcow2 read-only;
when the file holds the persistent bitmap of the volume's previous backup of its own (kept in the
file, and recording while a VM used the volume in between: QEMU loads and stores persistent
bitmaps with the qcow2), the export carries it (``-B``) and only the dirty spans are read, as for
a running VM; a VM's backup of the volume meanwhile replaces that bitmap (then: a full read).
An ``rbd`` volume's backup takes an RBD snapshot ``nc-<backup>`` of its image and reads it over
NBD (a point in time); from the parent backup's snapshot, only what ``rbd diff`` lists is read
(a VM's writes in between included), and the older snapshots are dropped once it is stored.
The snapshot's one disk is named by the volume id. ``POST
/v1/backups/{id}/restore {"new_volume": name}`` makes a new volume of the backup's project
(in the original's pool, charged like any volume) and a task ``backup.restore_volume`` that
creates its file or image and writes the backed-up bytes into it.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events
from novacron.backup import vmstore
from novacron.backup.tasks import _snapshot, record_backup, set_result
from novacron.compute.pools import BACKUP_SNAPSHOT, RbdPool, pool_for
from novacron.db.base import new_id, utcnow
from novacron.db.models import BackupSnapshot, BackupTarget, Project, RestoreJob, Task, Volume
from novacron.db.resolve import Named, resolve
from novacron.errors import Conflict, InvalidInput, NameTaken, NotFound
from novacron.identity.principal import Principal
from novacron.private import mkdir_private
from novacron.quota import enforce as quota
from novacron.quota.registry import volume_amounts
from novacron.tasks.runner import StepFailed, TaskHandler, create_task

if TYPE_CHECKING:
    from novacron.context import Context

STATUS = "backing-up"
#: the format of a volume of each pool, as ``qemu-nbd`` reads it and ``qemu-img`` writes it
FORMATS = {"file": "qcow2", "rbd": "raw"}
GIB = 1 << 30


def volume_of(snap: BackupSnapshot) -> str | None:
    """The volume a backup is of, when it is a volume's own backup (not a VM's)."""
    source = snap.source or {}
    return str(source["volume_id"]) if source.get("volume_id") else None


def _parent(session: Session, volume_id: str, target_id: str) -> str | None:
    """The volume's newest available backup of its own on the target."""
    rows = session.scalars(
        select(BackupSnapshot)
        .where(
            BackupSnapshot.vm_id.is_(None),
            BackupSnapshot.target_id == target_id,
            BackupSnapshot.state == "available",
        )
        .order_by(BackupSnapshot.completed_at.desc())
    )
    return next((r.id for r in rows if volume_of(r) == volume_id), None)


def request_volume_backup(
    session: Session, principal: Principal, ref: str, target: BackupTarget, full: bool
) -> tuple[BackupSnapshot, Task]:
    """A pending backup of the detached volume ``ref`` (404 on ``volume`` when the caller cannot
    see it), and its task; refused while it is attached or busy, or the project is full."""
    volume = resolve(session, principal, Volume, ref, named=Named("volume", missing=NotFound))
    if volume.vm_id is not None:
        raise Conflict(
            f"Volume '{volume.name}' is attached to a VM: back the VM up, which holds its volumes."
        )
    if volume.status != "available":
        raise Conflict(
            f"Volume '{volume.name}' is {volume.status}; only an available volume is backed up alone."
        )
    if volume.pool not in FORMATS:
        raise Conflict(
            f"Volume '{volume.name}' is in the {volume.pool} pool: backing it up alone is not built."
        )
    project = session.get(Project, volume.project_id)
    assert project is not None
    quota.require_room(session, project, "backup_storage_gb", f"a new backup of volume '{volume.name}'")
    snap = BackupSnapshot(
        id=new_id("bk"),
        tenant_id=volume.tenant_id,
        project_id=volume.project_id,
        vm_id=None,
        vm_name=volume.name,
        target_id=target.id,
        state="pending",
        source={"volume_id": volume.id, "size_gb": volume.size_gb, "pool": volume.pool},
    )
    session.add(snap)
    volume.status = STATUS
    session.flush()
    params = {
        "snapshot_id": snap.id,
        "full": full,
        "parent_id": None if full else _parent(session, volume.id, target.id),
    }
    task = create_task(
        session, BackupVolume, "volume", volume.id,
        tenant_id=volume.tenant_id, project_id=volume.project_id, params=params,
    )  # fmt: skip
    snap.task_id = task.id
    return snap, task


async def _qemu_img_info(path: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "qemu-img",
        "info",
        "-U",
        "--output=json",
        path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise StepFailed(f"qemu-img info {path} failed: {err.decode(errors='replace').strip()}")
    return dict(json.loads(out))


def bitmap_name(snapshot_id: str) -> str:
    """The change tracking a backup leaves (``virt/cbt.bitmap_name``): a qcow2's bitmap, an RBD snapshot."""
    return BACKUP_SNAPSHOT + snapshot_id


@dataclass
class VolumeRead:
    """How a volume's own backup reads it: a socket-activated read-only export, and what changed."""

    argv: list[str]
    size: int
    #: why it is read whole, or how its changes are known
    reason: str
    #: the qcow2's bitmap of the parent backup, exported with it (``-B``)
    bitmap: str | None = None
    #: the changed spans of each chunk, known beforehand (``rbd diff``); None: read it whole
    dirty: dict[int, list[tuple[int, int]]] | None = None


def _nbd(fmt: str, *more: str) -> list[str]:
    from novacron.virt.nbdread import EXPORT  # libnbd: only where disks are read

    return ["qemu-nbd", "--read-only", f"--format={fmt}", f"--export-name={EXPORT}", "--shared=1", *more]


async def qcow2_read(path: str, parent_id: str | None) -> VolumeRead:
    """A ``file`` volume: incremental when the file holds the parent's bitmap, else whole (and why)."""
    info = await _qemu_img_info(path)
    size = int(info["virtual-size"])
    found = {b["name"]: b for b in info.get("format-specific", {}).get("data", {}).get("bitmaps", [])}
    wanted = bitmap_name(parent_id) if parent_id else ""
    bitmap = found.get(wanted) if wanted else None
    if parent_id is None:
        return VolumeRead(_nbd("qcow2", path), size, "first backup of this volume, or a full one asked for")
    if bitmap is None or "in-use" in bitmap.get("flags", []):
        why = "no usable change-tracking bitmap of the previous backup in the volume's file"
        return VolumeRead(_nbd("qcow2", path), size, why)
    why = "changed chunks from the dirty bitmap of the previous backup"
    return VolumeRead(_nbd("qcow2", "-B", wanted, path), size, why, bitmap=wanted)


async def rbd_read(
    pool: RbdPool, volume_id: str, snapshot_id: str, parent_id: str | None, chunk: int
) -> VolumeRead:
    """An ``rbd`` volume: its RBD snapshot ``nc-<backup>`` (taken now, kept for the next backup)
    read over NBD; incremental (``rbd diff`` from the parent's snapshot) when that is still there."""
    from novacron.virt.nbdread import DIRTY, dirty_spans  # libnbd: only where disks are read

    snap = bitmap_name(snapshot_id)
    await pool.snapshot(volume_id, snap)
    size = await pool.size(f"{volume_id}@{snap}")
    argv = _nbd("raw", pool.location(f"{volume_id}@{snap}"))
    since = bitmap_name(parent_id) if parent_id else ""
    if not since:
        return VolumeRead(argv, size, "first backup of this volume, or a full one asked for")
    if since not in await pool.snapshots(volume_id):
        return VolumeRead(argv, size, "the RBD snapshot of the previous backup is gone")
    extents = [(o, n, DIRTY) for o, n in await pool.diff(volume_id, snap, since)]
    why = "changed extents since the previous backup's RBD snapshot (rbd diff)"
    return VolumeRead(argv, size, why, dirty=dirty_spans(extents, chunk))


async def read_volume(  # noqa: PLR0913
    read: VolumeRead, snapshot_id: str, parent_id: str | None, chunk: int, store: Any, tenant: str, name: str
) -> dict[str, Any]:
    """Store the volume's export as the snapshot's disk ``name``: its changed spans, or all of it."""
    from novacron.virt.nbdread import open_reader  # libnbd: only where disks are read

    reader, found = await asyncio.to_thread(open_reader, read.size, chunk, read.bitmap, None, read.argv)
    dirty = found if read.bitmap else read.dirty
    size, mode = read.size, "full" if dirty is None else "incremental"
    try:
        await asyncio.to_thread(
            store.write_snapshot, tenant, snapshot_id, name, reader, size,
            None if dirty is None else sorted(dirty), parent_id if dirty is not None else None,
            {"volume_id": name, "mode": mode, "reason": read.reason if dirty is None else ""},
            dirty=dirty,
        )  # fmt: skip
    finally:
        await asyncio.to_thread(reader.close)
    dirty_bytes = size if dirty is None else sum(e - s for spans in dirty.values() for s, e in spans)
    disk = {
        "name": name,
        "device": "",
        "volume_id": name,
        "size": size,
        "mode": mode,
        "reason": read.reason,
        "bytes_read": reader.bytes_read,
    }
    return {
        "mode": mode, "reason": read.reason, "consistency": "application", "size": size,
        "bytes_read": reader.bytes_read, "changed_bytes": dirty_bytes,
        "chunks_changed": -(-size // chunk) if dirty is None else len(dirty),
        "store": store.get_snapshot(tenant, snapshot_id).disks[name].stats, "disks": [disk],
    }  # fmt: skip


async def _read_and_commit(  # noqa: PLR0913
    ctx: Context,
    pool_name: str,
    path: str,
    volume_id: str,
    snap: BackupSnapshot,
    parent_id: str | None,
    chunk: int,
    store: Any,
) -> dict[str, Any]:
    """Read the volume of its pool, then keep only this backup's change tracking for the next."""
    keep = bitmap_name(snap.id)
    pool = pool_for(ctx.settings, pool_name)
    if not isinstance(pool, RbdPool):
        read = await qcow2_read(path, parent_id)
        result = await read_volume(read, snap.id, parent_id, chunk, store, snap.tenant_id, volume_id)
        from novacron.virt import cbt  # libnbd: only where disks are read

        await cbt.commit_file(path, keep, chunk)
        return result
    read = await rbd_read(pool, volume_id, snap.id, parent_id, chunk)
    result = await read_volume(read, snap.id, parent_id, chunk, store, snap.tenant_id, volume_id)
    for older in await pool.snapshots(volume_id):  # the next diff starts from this backup's snapshot
        if older.startswith(BACKUP_SNAPSHOT) and older != keep:
            await pool.snapshot(volume_id, older, delete=True)
    return result


def _set_status(ctx: Context, volume_id: str, status: str) -> None:
    with ctx.db.session() as s:
        volume = s.get(Volume, volume_id)
        if volume is not None and volume.status in (STATUS, "creating"):
            volume.status = status


class BackupVolume(TaskHandler):
    """Back a detached volume up on the control plane (incremental from its bitmap when it has one)."""

    kind = "backup.volume"
    steps: ClassVar[list[str]] = ["backup"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        snap, target = _snapshot(ctx, task.params["snapshot_id"])
        with ctx.db.session() as s:
            volume = s.get(Volume, task.resource_id)
            if volume is None:
                raise StepFailed(f"Volume {task.resource_id} no longer exists.")
            path, name, volume_id, pool_name = volume.location, volume.name, volume.id, volume.pool
            row = s.get(BackupSnapshot, snap.id)
            assert row is not None
            row.state, row.parent_id = "running", task.params.get("parent_id")
        store = vmstore.server_store(ctx.settings, target)
        started = time.monotonic()
        result = await _read_and_commit(
            ctx, pool_name, path, volume_id, snap, task.params.get("parent_id"), target.chunk_size, store
        )
        record_backup(ctx, snap.id, target, name, result, time.monotonic() - started)
        set_result(ctx, task, {"snapshot_id": snap.id, "parent_id": task.params.get("parent_id"), **result})

    async def on_success(self, ctx: Context, task: Task) -> None:
        _set_status(ctx, task.resource_id, "available")

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        _set_status(ctx, task.resource_id, "available")
        with ctx.db.session() as s:
            row = s.get(BackupSnapshot, task.params["snapshot_id"])
            if row is not None and row.state != "available":
                row.state, row.error = "failed", error


def request_volume_restore(
    session: Session, principal: Principal, snap: BackupSnapshot, name: str
) -> tuple[RestoreJob, Task, Volume]:
    """A new volume of the backup's project (charged) and the task that writes the backup into it."""
    volume_id = volume_of(snap)
    if volume_id is None:
        raise InvalidInput("new_volume", f"backup {snap.id} is of VM '{snap.vm_name}': restore it as a VM")
    if snap.state != "available":
        raise Conflict(f"Backup {snap.id} is {snap.state}; only an available backup can be used.")
    project = session.get(Project, snap.project_id)
    assert project is not None
    size_gb = int((snap.source or {}).get("size_gb") or -(-snap.size_bytes // GIB))
    if session.scalar(select(Volume.id).where(Volume.project_id == project.id, Volume.name == name)):
        raise NameTaken("volume", name, "new_volume")
    volume = Volume(
        id=new_id("vol"), project_id=project.id, tenant_id=project.tenant_id, name=name, size_gb=size_gb,
        pool=str((snap.source or {}).get("pool") or "file"), location="", status="creating",
        source_volume_id=volume_id,
    )  # fmt: skip
    session.add(volume)
    session.flush()
    quota.charge(session, principal, project, "volume", volume.id, volume_amounts(size_gb))
    job = RestoreJob(
        id=new_id("rst"), tenant_id=snap.tenant_id, project_id=snap.project_id, snapshot_id=snap.id,
        mode="volume", state="running",
    )  # fmt: skip
    session.add(job)
    session.flush()
    task = create_task(
        session, RestoreVolume, "volume", volume.id, tenant_id=snap.tenant_id, project_id=snap.project_id,
        params={"snapshot_id": snap.id, "job_id": job.id, "disk": volume_id},
    )  # fmt: skip
    job.task_id = task.id
    events.publish(
        session, "volume.created", "volume", volume.id, tenant_id=volume.tenant_id,
        project_id=volume.project_id, size_gb=size_gb, restored_from=snap.id,
    )  # fmt: skip
    return job, task, volume


class RestoreVolume(TaskHandler):
    """Make the new volume's file and write the backed-up volume into it."""

    kind = "backup.restore_volume"
    steps: ClassVar[list[str]] = ["restore"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        snap, target = _snapshot(ctx, task.params["snapshot_id"])
        with ctx.db.session() as s:
            volume = s.get(Volume, task.resource_id)
            assert volume is not None
            pool = pool_for(ctx.settings, volume.pool)
            volume.location = volume.location or pool.location(volume.id)
            path, size_gb, fmt = volume.location, volume.size_gb, FORMATS[volume.pool]
        await pool.create(task.resource_id, size_gb, None)  # nothing when made already
        # the sparse raw file beside a file volume; with the pools' directory for an RBD image
        beside = Path(path) if volume.pool == "file" else ctx.settings.volumes_dir / task.resource_id
        mkdir_private(beside.parent)
        raw = beside.with_suffix(".restoring.raw")
        store = vmstore.server_store(ctx.settings, target)
        try:
            await asyncio.to_thread(store.restore_to, snap.tenant_id, snap.id, task.params["disk"], raw)
            # into the qcow2, or the RBD image by its location (the keyring's path, not the key)
            proc = await asyncio.create_subprocess_exec(
                "qemu-img", "convert", "-n", "-f", "raw", "-O", fmt, str(raw), path,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await proc.communicate()
            if proc.returncode != 0:
                raise StepFailed(f"writing the volume failed: {err.decode(errors='replace').strip()}")
        finally:
            raw.unlink(missing_ok=True)
        result = {"volume_id": task.resource_id, "size_gb": size_gb}
        set_result(ctx, task, result)
        with ctx.db.session() as s:
            job = s.get(RestoreJob, task.params["job_id"])
            if job is not None:
                job.state, job.result, job.finished_at = "succeeded", result, utcnow()
            volume = s.get(Volume, task.resource_id)
            assert volume is not None
            volume.status = "available"
            events.publish(
                s,
                "volume.available",
                "volume",
                volume.id,
                tenant_id=volume.tenant_id,
                project_id=volume.project_id,
            )

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        with ctx.db.session() as s:
            volume = s.get(Volume, task.resource_id)
            if volume is not None:
                volume.status, volume.error = "error", error
            job = s.get(RestoreJob, task.params["job_id"])
            if job is not None:
                job.state, job.error, job.finished_at = "failed", error, utcnow()


HANDLERS: list[TaskHandler] = [BackupVolume(), RestoreVolume()]

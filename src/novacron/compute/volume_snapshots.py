"""Volume snapshots: points in time of one volume, of an attached volume (its guest running or not)
as of a detached one.

A snapshot is a qcow2 internal snapshot inside the volume's file, named by the snapshot's id
(``compute/pools.py`` says why internal): taken and dropped by durable tasks, through QMP on the
VM's host while a guest runs the volume (``blockdev-snapshot-internal-sync``, atomic for the guest)
and with ``qemu-img snapshot`` otherwise. A new volume is made from one with
``VolumeService.create(snapshot=...)``. Quota: one ``volume_snapshots`` each, charged at the request;
the volume's size counts once, in its ``volume_gb``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from novacron import events
from novacron.compute.volume_tasks import snapshot_op
from novacron.compute.volumes import ensure_idle
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import Project, Task, Volume, VolumeSnapshot
from novacron.db.resolve import Named, resolve, scoped
from novacron.errors import Conflict, NameTaken
from novacron.quota import enforce as quota
from novacron.service import Service
from novacron.tasks.runner import StepFailed, TaskHandler, create_task
from novacron.tasks.service import wake_on_commit

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from novacron.context import Context

AMOUNTS = {"volume_snapshots": 1}


class VolumeSnapshotService(Service):
    """Create, read and delete the snapshots of the volumes of the caller's projects."""

    def list(
        self, params: ListParams, *, volume_id: str | None = None, name: str | None = None
    ) -> tuple[list[VolumeSnapshot], str | None]:
        stmt = scoped(select(VolumeSnapshot), VolumeSnapshot, self.principal)
        stmt = where_equal(stmt, (VolumeSnapshot.volume_id, volume_id), (VolumeSnapshot.name, name))
        return paginate(self.session, stmt, VolumeSnapshot, params)

    def get(self, ref: str) -> VolumeSnapshot:
        return resolve(self.session, self.principal, VolumeSnapshot, ref)

    def create(self, volume_ref: str, name: str) -> tuple[VolumeSnapshot, Task]:
        """The snapshot's row, its quota and the task taking it; the volume is busy meanwhile."""
        volume = resolve(self.session, self.principal, Volume, volume_ref, named=Named("volume"))
        ensure_idle(volume)
        if volume.status not in ("available", "in-use"):
            raise Conflict(f"Volume '{volume.name}' is {volume.status}: only a usable volume has snapshots.")
        snap = VolumeSnapshot(
            id=new_id("vsnap"),
            project_id=volume.project_id,
            tenant_id=volume.tenant_id,
            volume_id=volume.id,
            name=name,
            size_gb=volume.size_gb,
            status="creating",
        )
        self.session.add(snap)
        try:
            self.session.flush()
        except IntegrityError as exc:
            raise NameTaken("volume snapshot", name, "name") from exc
        project = self.session.get(Project, volume.project_id)
        assert project is not None  # the volume's project, cascaded with it
        quota.charge(self.session, self.principal, project, "volume_snapshot", snap.id, AMOUNTS)
        _publish(self.session, "volume_snapshot.created", snap, volume_id=volume.id)
        return snap, self._task(TakeSnapshot, snap, volume)

    def delete(self, snap: VolumeSnapshot) -> Task:
        """Drop the snapshot from its volume's file (a task: it may be the running guest's)."""
        if snap.status in ("creating", "deleting"):
            raise Conflict(f"Snapshot '{snap.name}' is busy ({snap.status}); wait for its task to finish.")
        volume = self.session.get(Volume, snap.volume_id)
        assert volume is not None  # a volume's snapshots cascade with it
        ensure_idle(volume)
        snap.status, snap.error = "deleting", None
        return self._task(DeleteSnapshot, snap, volume)

    def _task(self, handler: type[TaskHandler], snap: VolumeSnapshot, volume: Volume) -> Task:
        """The task, with the volume busy meanwhile (one writer of its file at a time)."""
        params = {"volume_id": volume.id, "status": volume.status}
        volume.status = "snapshotting"
        self.session.flush()
        task = create_task(
            self.session,
            handler,
            "volume_snapshot",
            snap.id,
            tenant_id=snap.tenant_id,
            project_id=snap.project_id,
            params=params,
        )
        wake_on_commit(self.session, self.ctx)
        return task


def _publish(s: Session, kind: str, snap: VolumeSnapshot, **detail: object) -> None:
    events.publish(
        s, kind, "volume_snapshot", snap.id, tenant_id=snap.tenant_id, project_id=snap.project_id,
        name=snap.name, **detail,
    )  # fmt: skip


def _volume_idle(s: Session, task: Task) -> None:
    volume = s.get(Volume, task.params["volume_id"])
    if volume is not None and volume.status == "snapshotting":
        volume.status = task.params["status"]


def _snap(s: Session, task: Task) -> VolumeSnapshot:
    snap = s.get(VolumeSnapshot, task.resource_id)
    if snap is None:
        raise StepFailed(f"Volume snapshot {task.resource_id} no longer exists.")
    return snap


class TakeSnapshot(TaskHandler):
    """Take the internal snapshot in the volume's file (live on the VM's host, or offline)."""

    kind = "volume_snapshot.create"
    steps: ClassVar[list[str]] = ["snapshot"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        await snapshot_op(ctx, task, task.params["volume_id"], task.resource_id)

    async def on_success(self, ctx: Context, task: Task) -> None:
        with ctx.db.session() as s:
            _volume_idle(s, task)
            snap = _snap(s, task)
            snap.status = "available"
            _publish(s, "volume_snapshot.available", snap, volume_id=snap.volume_id)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        with ctx.db.session() as s:
            _volume_idle(s, task)
            snap = s.get(VolumeSnapshot, task.resource_id)
            if snap is not None:
                snap.status, snap.error = "error", error
                quota.release(s, "volume_snapshot", snap.id)


class DeleteSnapshot(TaskHandler):
    """Drop the internal snapshot (its clusters return to the volume), then the row and its quota."""

    kind = "volume_snapshot.delete"
    steps: ClassVar[list[str]] = ["drop"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        await snapshot_op(ctx, task, task.params["volume_id"], task.resource_id, delete=True)

    async def on_success(self, ctx: Context, task: Task) -> None:
        with ctx.db.session() as s:
            _volume_idle(s, task)
            snap = s.get(VolumeSnapshot, task.resource_id)
            if snap is not None:
                quota.release(s, "volume_snapshot", snap.id)
                _publish(s, "volume_snapshot.deleted", snap, volume_id=snap.volume_id)
                s.delete(snap)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        with ctx.db.session() as s:
            _volume_idle(s, task)
            snap = s.get(VolumeSnapshot, task.resource_id)
            if snap is not None:
                snap.status, snap.error = "available", error


HANDLERS: list[TaskHandler] = [TakeSnapshot(), DeleteSnapshot()]

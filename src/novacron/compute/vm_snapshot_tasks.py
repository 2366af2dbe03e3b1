"""Task handlers of VM snapshots: take, revert to and delete one on the VM's host.

Each step queues one operation for the agent of the VM's host (``hostops.call``), which runs it
with the driver (``virt/snapshots.py`` for QEMU); the agent's progress (a RAM snapshot's job)
shows on the task. A step may run again after a crash: the driver skips what is done already
(the snapshot exists, or is gone). The rows and the tree change only once the host has answered.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import select, update

from novacron import events
from novacron.agent.protocol import VmSnapshotCreate, VmSnapshotDelete, VmSnapshotRevert
from novacron.compute import hostops
from novacron.compute.tasks import VMOperation, end_operation
from novacron.db.models import VM, Task, VmSnapshot
from novacron.quota import enforce as quota
from novacron.tasks.runner import StepFailed, TaskHandler

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from novacron.context import Context

QUOTA_KIND = "vm_snapshot"
#: a RAM snapshot of a big guest, or a revert that restarts it, takes a while
HOST_TIMEOUT_S = 1800.0


def _snap(s: Session, task: Task) -> VmSnapshot:
    snap = s.get(VmSnapshot, task.params["snapshot_id"])
    if snap is None:
        raise StepFailed(f"Snapshot {task.params['snapshot_id']} no longer exists.")
    return snap


def _publish(s: Session, kind: str, snap: VmSnapshot, **detail: object) -> None:
    events.publish(
        s, kind, "vm", snap.vm_id, tenant_id=snap.tenant_id, project_id=snap.project_id,
        snapshot_id=snap.id, name=snap.name, **detail,
    )  # fmt: skip


async def _on_host(ctx: Context, task: Task, request: VmSnapshotCreate | VmSnapshotRevert | VmSnapshotDelete,
                   key: str = "") -> dict[str, object]:  # fmt: skip
    with ctx.db.session() as s:
        vm = s.get(VM, task.resource_id)
        if vm is None or vm.host_id is None:
            raise StepFailed(f"VM {task.resource_id} no longer exists or is on no host.")
        host_id, vm_id = vm.host_id, vm.id
    return await hostops.call(ctx, host_id, task, request, vm_id, timeout_s=HOST_TIMEOUT_S, key=key)


def _make_current(s: Session, snap: VmSnapshot) -> None:
    """``snap`` is what the VM's disk stands on now: the only current one of its VM."""
    s.execute(update(VmSnapshot).where(VmSnapshot.vm_id == snap.vm_id).values(current=False))
    snap.current = True


class CreateSnapshot(TaskHandler):
    """Take the snapshot on the VM's host (live: an internal qcow2 snapshot, with RAM on request)."""

    kind = "vm.snapshot_create"
    steps: ClassVar[list[str]] = ["snapshot"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        with ctx.db.session() as s:
            snap = _snap(s, task)
            request = VmSnapshotCreate(snap.id, snap.memory, snap.quiesce)
        result = await _on_host(ctx, task, request)
        with ctx.db.session() as s:
            snap = _snap(s, task)
            snap.consistency = str(result.get("consistency", "crash"))
            snap.vm_state_bytes = int(str(result.get("vm_state_bytes", 0)))

    async def on_success(self, ctx: Context, task: Task) -> None:
        with ctx.db.session() as s:
            snap = _snap(s, task)
            snap.status = "available"
            _make_current(s, snap)
            _publish(s, "vm_snapshot.created", snap, consistency=snap.consistency, memory=snap.memory)
        end_operation(ctx, task.resource_id)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        # half a snapshot (the host took it, then the answer was lost) would hold disk space unseen
        with contextlib.suppress(StepFailed):
            await _on_host(ctx, task, VmSnapshotDelete(task.params["snapshot_id"]), key="undo")
        with ctx.db.session() as s:
            snap = s.get(VmSnapshot, task.params["snapshot_id"])
            if snap is not None:
                quota.release(s, QUOTA_KIND, snap.id)
                s.delete(snap)
        end_operation(ctx, task.resource_id, error=None)


class RevertSnapshot(VMOperation):
    """Revert the VM to the snapshot; the VM's observed state is recorded after (a restart)."""

    kind = "vm.snapshot_revert"
    steps: ClassVar[list[str]] = ["revert"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        result = await _on_host(ctx, task, VmSnapshotRevert(task.params["snapshot_id"]))
        with ctx.db.session() as s:
            snap = _snap(s, task)
            _publish(s, "vm_snapshot.reverted", snap, **result)

    async def on_success(self, ctx: Context, task: Task) -> None:
        with ctx.db.session() as s:
            snap = _snap(s, task)
            snap.status, snap.error = "available", None
            _make_current(s, snap)
        await self._observe_and_finish(ctx, task)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        with ctx.db.session() as s:
            snap = s.get(VmSnapshot, task.params["snapshot_id"])
            if snap is not None:
                snap.status, snap.error = "available", error
        await self._observe_and_finish(ctx, task, error)


class DeleteSnapshot(TaskHandler):
    """Delete the snapshot on the VM's host; its children take its parent in the tree."""

    kind = "vm.snapshot_delete"
    steps: ClassVar[list[str]] = ["delete"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        await _on_host(ctx, task, VmSnapshotDelete(task.params["snapshot_id"]))

    async def on_success(self, ctx: Context, task: Task) -> None:
        with ctx.db.session() as s:
            snap = _snap(s, task)
            children = select(VmSnapshot).where(VmSnapshot.parent_id == snap.id)
            for child in list(s.scalars(children)):
                child.parent_id = snap.parent_id
            if snap.current and snap.parent_id is not None:
                parent = s.get(VmSnapshot, snap.parent_id)
                if parent is not None:
                    parent.current = True
            quota.release(s, QUOTA_KIND, snap.id)
            _publish(s, "vm_snapshot.deleted", snap)
            s.delete(snap)
        end_operation(ctx, task.resource_id)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        with ctx.db.session() as s:
            snap = s.get(VmSnapshot, task.params["snapshot_id"])
            if snap is not None:
                snap.status, snap.error = "available", error
        end_operation(ctx, task.resource_id)


HANDLERS: list[TaskHandler] = [CreateSnapshot(), RevertSnapshot(), DeleteSnapshot()]

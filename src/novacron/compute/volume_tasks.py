"""Task handlers of volumes: make one in its pool, and plug, unplug or grow it on its VM's host.

A step that touches a running guest queues an operation for the agent of the VM's host
(``hostops.call``), as every VM operation does, so a remote host works the same as the embedded
agent. Each step may run again after a crash: the pool and the driver skip what is done already.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import select

from novacron import events
from novacron.agent.protocol import (
    Request,
    VolumeAttach,
    VolumeDetach,
    VolumeExtend,
    VolumeLimits,
    VolumeSnapshot,
)
from novacron.compute import hostops, storage
from novacron.compute.pools import GIB, attachment, pool_for
from novacron.compute.reports import announce_idle
from novacron.db.models import VM, Image, Task, Volume
from novacron.db.models import VolumeSnapshot as VolumeSnapshotRow
from novacron.quota import enforce as quota
from novacron.quota.registry import volume_amounts
from novacron.tasks.runner import StepFailed, TaskHandler

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from novacron.context import Context

#: how long a guest has to let an unplugged disk go
DETACH_TIMEOUT_S = 60.0
#: the VM states a volume is plugged into a process (else it waits for the next start)
LIVE = ("running", "paused")


def _volume(s: Session, task: Task) -> Volume:
    volume = s.get(Volume, task.resource_id)
    if volume is None:
        raise StepFailed(f"Volume {task.resource_id} no longer exists.")
    return volume


def _publish(s: Session, kind: str, volume: Volume, **detail: Any) -> None:
    events.publish(
        s, kind, "volume", volume.id, tenant_id=volume.tenant_id, project_id=volume.project_id,
        name=volume.name, **detail,
    )  # fmt: skip


async def _on_live_vm(ctx: Context, task: Task, make: Any, key: str = "") -> bool:
    """Send ``make(volume)`` to the host of the task's VM when the VM runs; False when it does not."""
    with ctx.db.session() as s:
        volume = _volume(s, task)
        vm = s.get(VM, task.params["vm_id"]) if task.params.get("vm_id") else None
        if vm is None or vm.host_id is None or vm.state not in LIVE:
            return False
        request: Request = make(volume)
        host_id, vm_id = vm.host_id, vm.id
    await hostops.call(ctx, host_id, task, request, vm_id, timeout_s=DETACH_TIMEOUT_S + 60, key=key)
    return True


def plug(v: Volume) -> VolumeAttach:
    return VolumeAttach(attachment(v.pool, v.id, v.location, v.io_limits, v.boot))


async def snapshot_op(ctx: Context, task: Task, volume_id: str, name: str, delete: bool = False) -> None:
    """Take (or drop) the internal snapshot ``name`` of a volume: through the host of its VM when a
    guest runs it (QMP, atomic for the guest), else with ``qemu-img`` on the pool. An ``rbd``
    volume's snapshot is always the cluster's (``rbd snap``): Ceph takes it consistently while a
    guest has the image open (librbd's watchers are told), as OpenStack Cinder does."""
    with ctx.db.session() as s:
        volume = s.get(Volume, volume_id)
        if volume is None:
            raise StepFailed(f"Volume {volume_id} no longer exists.")
        vm = s.get(VM, volume.vm_id) if volume.vm_id else None
        pool = volume.pool
        live = pool == "file" and vm is not None and vm.host_id is not None and vm.state in LIVE
        host_id, vm_id = (vm.host_id or "", vm.id) if vm is not None else ("", "")
    if live:
        request = VolumeSnapshot(volume_id, name, delete)
        await hostops.call(ctx, host_id, task, request, vm_id, timeout_s=300, key=f"{name}:{delete}")
    else:
        await pool_for(ctx.settings, pool).snapshot(volume_id, name, delete)


def _vm_idle(s: Session, task: Task) -> None:
    vm = s.get(VM, task.params.get("vm_id", ""))
    if vm is not None and vm.task_state in ("attaching_volume", "detaching_volume"):
        announce_idle(s, vm, vm.task_state)
        vm.task_state = None


class CreateVolume(TaskHandler):
    """Make the volume in its pool: blank, a standalone copy of its image or of a volume snapshot,
    or a clone of a volume (read out of a snapshot taken for it, dropped at the end)."""

    kind = "volume.create"
    steps: ClassVar[list[str]] = ["prepare", "allocate", "release"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        with ctx.db.session() as s:
            volume = _volume(s, task)
            pool, size_gb, image_id = volume.pool, volume.size_gb, volume.source_image_id
            snap_id, clone_of = volume.source_snapshot_id, volume.source_volume_id
            row = s.get(Image, image_id) if image_id else None
            image_format = (row.disk_format or "") if row is not None else ""
            snap = s.get(VolumeSnapshotRow, snap_id) if snap_id else None
            snap_of = snap.volume_id if snap is not None else None
        clone_snap = f"clone-{task.resource_id}"
        if clone_of and step in ("prepare", "release"):  # a clone reads a point in time of its source
            await snapshot_op(ctx, task, clone_of, clone_snap, delete=step == "release")
            return
        if step != "allocate":
            return
        if snap_id:
            if snap_of is None:
                raise StepFailed(f"Volume snapshot {snap_id} no longer exists.")
            await pool_for(ctx.settings, pool).copy(task.resource_id, size_gb, snap_of, snap_id)
        elif clone_of:
            await pool_for(ctx.settings, pool).copy(task.resource_id, size_gb, clone_of, clone_snap)
        else:
            image = storage.image_disk(ctx.settings, image_id) if image_id else None
            if image is not None and not image.exists():
                raise StepFailed(f"The disk file of image {image_id} is missing from the image store.")
            await pool_for(ctx.settings, pool).create(task.resource_id, size_gb, image, image_format)

    async def on_success(self, ctx: Context, task: Task) -> None:
        with ctx.db.session() as s:
            volume = _volume(s, task)
            volume.status = "available"
            _source_idle(s, volume.source_volume_id)
            _publish(s, "volume.available", volume, size_gb=volume.size_gb)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        with ctx.db.session() as s:
            volume = s.get(Volume, task.resource_id)
            if volume is None:
                return
            pool_for(ctx.settings, volume.pool).delete(volume.id, volume.location)
            volume.status, volume.error = "error", error
            quota.release(s, "volume", volume.id)  # a volume that failed to be made holds nothing
            clone_of = volume.source_volume_id
        if clone_of:  # the clone's snapshot of its source goes too (best effort: a rollback never fails)
            with contextlib.suppress(Exception):
                await snapshot_op(ctx, task, clone_of, f"clone-{task.resource_id}", delete=True)
            with ctx.db.session() as s:
                _source_idle(s, clone_of)


def _source_idle(s: Session, source_id: str | None) -> None:
    """A clone's source is usable again once the clone's snapshot of it is dropped."""
    source = s.get(Volume, source_id) if source_id else None
    if source is not None and source.status == "cloning":
        source.status = "in-use" if source.vm_id else "available"


class AttachVolume(TaskHandler):
    """Hot-plug into the running VM (``blockdev-add`` + ``device_add``), or record it for its next start."""

    kind = "volume.attach"
    steps: ClassVar[list[str]] = ["plug"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        await _on_live_vm(ctx, task, plug)

    async def on_success(self, ctx: Context, task: Task) -> None:
        with ctx.db.session() as s:
            volume = _volume(s, task)
            volume.status = "in-use"
            _vm_idle(s, task)
            _publish(s, "volume.attached", volume, vm_id=task.params["vm_id"])

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        # half a plug (the node added, the device refused) would keep the file open in that QEMU
        with contextlib.suppress(StepFailed):
            await _on_live_vm(ctx, task, lambda v: VolumeDetach(v.id, 10.0), key="undo")
        with ctx.db.session() as s:
            volume = s.get(Volume, task.resource_id)
            if volume is not None:
                volume.vm_id, volume.status, volume.error = None, "available", error
            _vm_idle(s, task)


class DetachVolume(TaskHandler):
    """Hot-unplug from the running VM (``device_del``, ``DEVICE_DELETED``, ``blockdev-del``)."""

    kind = "volume.detach"
    steps: ClassVar[list[str]] = ["unplug"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        await _on_live_vm(ctx, task, lambda v: VolumeDetach(v.id, DETACH_TIMEOUT_S))

    async def on_success(self, ctx: Context, task: Task) -> None:
        with ctx.db.session() as s:
            volume = _volume(s, task)
            volume.vm_id, volume.status = None, "available"
            _vm_idle(s, task)
            _publish(s, "volume.detached", volume, vm_id=task.params["vm_id"])

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        with ctx.db.session() as s:
            volume = s.get(Volume, task.resource_id)
            if volume is not None:  # still the VM's: the guest kept it
                volume.status, volume.error = "in-use", error
            _vm_idle(s, task)


class ExtendVolume(TaskHandler):
    """Grow the volume: ``block_resize`` on its VM's host when the VM runs, else in the pool."""

    kind = "volume.extend"
    steps: ClassVar[list[str]] = ["grow"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        size_gb = int(task.params["size_gb"])
        with ctx.db.session() as s:
            pool, location = _volume(s, task).pool, _volume(s, task).location
        if not await _on_live_vm(ctx, task, lambda v: VolumeExtend(v.id, size_gb * GIB)):
            await pool_for(ctx.settings, pool).extend(task.resource_id, size_gb, location)

    async def on_success(self, ctx: Context, task: Task) -> None:
        with ctx.db.session() as s:
            volume = _volume(s, task)
            volume.size_gb, volume.status = int(task.params["size_gb"]), task.params["status"]
            _publish(s, "volume.extended", volume, size_gb=volume.size_gb)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        with ctx.db.session() as s:
            volume = s.get(Volume, task.resource_id)
            if volume is not None:
                volume.status, volume.error = task.params["status"], error
                # the room asked for is given back (a shrink never fails a limit)
                quota.resize(s, "volume", volume.id, volume_amounts(volume.size_gb), None)


class LimitVolume(TaskHandler):
    """Give the running guest's throttle group the volume's new limits (``qom-set``); a volume no
    guest runs takes them at its next plug or start."""

    kind = "volume.limits"
    steps: ClassVar[list[str]] = ["apply"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        await _on_live_vm(ctx, task, lambda v: VolumeLimits(plug(v).volume))

    async def on_success(self, ctx: Context, task: Task) -> None:
        with ctx.db.session() as s:
            volume = _volume(s, task)
            volume.status = task.params["status"]

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        with ctx.db.session() as s:
            volume = s.get(Volume, task.resource_id)
            if volume is not None:  # the guest runs with the old ones still
                volume.io_limits, volume.status, volume.error = (
                    task.params["old"],
                    task.params["status"],
                    error,
                )


def release_vm_volumes(s: Session, vm_id: str) -> None:
    """A deleted VM's volumes are detached (its process is gone): they stay, available (a boot
    volume too, no longer anyone's root disk)."""
    for volume in list(s.scalars(select(Volume).where(Volume.vm_id == vm_id))):
        volume.vm_id, volume.boot = None, False
        if volume.status != "cloning":  # a clone's source stays busy until its clone is made
            volume.status = "available"
        _publish(s, "volume.detached", volume, vm_id=vm_id)


HANDLERS: list[TaskHandler] = [CreateVolume(), AttachVolume(), DetachVolume(), ExtendVolume(), LimitVolume()]

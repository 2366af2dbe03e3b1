"""Volumes: block devices of a project in a storage pool, attached to at most one VM at a time.

The service owns the rows and their checks; the storage work runs in durable tasks
(``volume_tasks``): making the volume in its pool, and plugging, unplugging or growing it through
the agent of the VM's host (the operation path of every VM operation, so a remote host works the
same). A volume attached to a stopped VM is only recorded: the VM's spec carries it to its next
start. Quota: one ``volumes`` and ``size_gb`` ``volume_gb`` per volume, charged at the request.

A volume is made blank, as a copy of an image, of one of its snapshots (``volume_snapshots``) or
as a clone of another volume; it carries its I/O limits (``volume_limits``), changed live on a
running guest. A boot volume (``boot``) is a VM's root disk, attached by the VM's create.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from novacron import events
from novacron.compute import volume_limits
from novacron.compute import volume_tasks as tasks
from novacron.compute.pools import GIB, kinds, pool_for
from novacron.compute.scope import resolve_project
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import VM, Image, Project, Task, Volume, VolumeSnapshot
from novacron.db.resolve import Named, resolve, scoped
from novacron.errors import Conflict, InvalidInput, NameTaken
from novacron.quota import enforce as quota
from novacron.quota.registry import volume_amounts
from novacron.service import Service
from novacron.tasks.runner import TaskHandler, create_task
from novacron.tasks.service import wake_on_commit

MAX_SIZE_GB = 16384
#: a volume in one of these is being worked on: every other change waits
#: (``cloning``: a clone reads it through a snapshot taken for the clone and dropped at its end;
#: ``backing-up``: a detached volume's own backup reads it)
BUSY = (
    "creating",
    "attaching",
    "detaching",
    "extending",
    "deleting",
    "limiting",
    "snapshotting",
    "cloning",
    "backing-up",
)
#: what a hot-plug needs the VM to be (a stopped VM takes the volume at its next start)
ATTACHABLE_VM = ("running", "stopped")


@dataclass(frozen=True)
class VolumeSpec:
    """A volume to create: blank of ``size_gb``, or a copy of ``image``, of the volume snapshot
    ``snapshot`` or of the volume ``source_volume`` (a clone), grown to ``size_gb``."""

    name: str
    size_gb: int | None = None
    image: str | None = None
    project_id: str | None = None
    snapshot: str | None = None
    source_volume: str | None = None
    io_limits: dict[str, int | None] | None = None
    #: the storage pool (``compute/pools.py``): ``file``, or ``rbd`` when Ceph is configured; None:
    #: the source volume's (or snapshot's), else ``file``
    pool: str | None = None


@dataclass(frozen=True)
class _Source:
    """Where a new volume's content comes from, and the least size it needs."""

    image: Image | None = None
    snapshot: VolumeSnapshot | None = None
    volume: Volume | None = None
    min_gb: int = 0
    #: the pool of the volume read (a copy is made by that pool: ``rbd cp``, ``qemu-img convert``)
    pool: str | None = None


class VolumeService(Service):
    """Create, read, attach, detach, extend and delete the volumes of the caller's projects."""

    def list(
        self,
        params: ListParams,
        *,
        name: str | None = None,
        project_id: str | None = None,
        vm_id: str | None = None,
        status: str | None = None,
    ) -> tuple[list[Volume], str | None]:
        stmt = scoped(select(Volume), Volume, self.principal)
        stmt = where_equal(
            stmt,
            (Volume.name, name),
            (Volume.project_id, project_id),
            (Volume.vm_id, vm_id),
            (Volume.status, status),
        )
        return paginate(self.session, stmt, Volume, params)

    def get(self, ref: str) -> Volume:
        return resolve(self.session, self.principal, Volume, ref)

    def create(self, spec: VolumeSpec) -> tuple[Volume, Task]:
        """The volume's row, its quota and the task that makes it in its pool (one transaction)."""
        project = resolve_project(self.session, self.principal, spec.project_id)
        source = self._source(spec, project)
        pool = spec.pool or source.pool or "file"
        if pool not in kinds(self.ctx.settings):
            raise InvalidInput(
                "pool", f"no storage pool {pool!r} here; pools: {', '.join(kinds(self.ctx.settings))}"
            )
        if source.pool not in (None, pool):
            raise InvalidInput("pool", f"a copy stays in its source's pool {source.pool!r}: leave 'pool' out")
        limits = volume_limits.validate(spec.io_limits or {})
        size_gb = _size_gb(spec.size_gb, source)
        volume_id = new_id("vol")
        volume = Volume(
            id=volume_id,
            project_id=project.id,
            tenant_id=project.tenant_id,
            name=spec.name,
            size_gb=size_gb,
            pool=pool,
            location=pool_for(self.ctx.settings, pool).location(volume_id),
            status="creating",
            source_image_id=source.image.id if source.image is not None else None,
            source_snapshot_id=source.snapshot.id if source.snapshot is not None else None,
            source_volume_id=source.volume.id if source.volume is not None else None,
            io_limits=limits,
        )
        if source.volume is not None:  # busy while the clone's snapshot of it exists (volume_tasks)
            source.volume.status = "cloning"
        self.session.add(volume)
        try:
            self.session.flush()
        except IntegrityError as exc:
            raise NameTaken("volume", spec.name, "name") from exc
        quota.charge(self.session, self.principal, project, "volume", volume.id, volume_amounts(size_gb))
        self._publish("volume.created", volume, size_gb=size_gb, io_limits=limits)
        return volume, self._task(tasks.CreateVolume, volume)

    def _source(self, spec: VolumeSpec, project: Project) -> _Source:
        """The one source the spec names (image, snapshot or volume), usable, of the same project."""
        if sum(x is not None for x in (spec.image, spec.snapshot, spec.source_volume)) > 1:
            raise InvalidInput("image", "give at most one of image, snapshot and source_volume")
        project_id = project.id
        if spec.image is not None:
            image = resolve(
                self.session, self.principal, Image, spec.image, project=project, named=Named("image")
            )
            if image.status != "active" or image.virtual_size_bytes is None:
                raise InvalidInput("image", f"image '{image.name}' is {image.status}, not active")
            return _Source(image=image, min_gb=-(-image.virtual_size_bytes // GIB))
        if spec.snapshot is not None:
            snap = resolve(
                self.session, self.principal, VolumeSnapshot, spec.snapshot, named=Named("snapshot")
            )
            if snap.project_id != project_id or snap.status != "available":
                raise InvalidInput(
                    "snapshot", f"snapshot '{snap.name}' is {snap.status} or of another project"
                )
            of = self.session.get(Volume, snap.volume_id)
            return _Source(snapshot=snap, min_gb=snap.size_gb, pool=of.pool if of is not None else None)
        if spec.source_volume is not None:
            vol = resolve(
                self.session, self.principal, Volume, spec.source_volume, named=Named("source_volume")
            )
            ensure_idle(vol)  # one clone at a time: each one's snapshot is a write to its file
            if vol.project_id != project_id or vol.status not in ("available", "in-use"):
                raise InvalidInput(
                    "source_volume", f"volume '{vol.name}' is {vol.status} or of another project"
                )
            return _Source(volume=vol, min_gb=vol.size_gb, pool=vol.pool)
        return _Source()

    def set_limits(self, volume: Volume, limits: dict[str, int | None]) -> Task:
        """New I/O limits (all of them: those left out are lifted), given to a running guest at once."""
        ensure_idle(volume)
        new = volume_limits.validate(limits)
        params: dict[str, object] = {
            "old": dict(volume.io_limits or {}),
            "status": volume.status,
            "vm_id": volume.vm_id or "",
        }
        volume.io_limits, volume.status, volume.error = new, "limiting", None
        self._publish("volume.limits_changed", volume, io_limits=new)
        return self._task(tasks.LimitVolume, volume, params)

    def delete(self, volume: Volume) -> None:
        """Remove the volume and its storage; an attached one is refused (detach it first)."""
        if volume.vm_id is not None:
            vm = self.session.get(VM, volume.vm_id)
            raise Conflict(
                f"Volume '{volume.name}' is attached to VM '{vm.name if vm else volume.vm_id}'; detach it "
                f"first (novacron volume detach {volume.name})."
            )
        ensure_idle(volume)
        if self.session.scalar(
            select(VolumeSnapshot.id).where(VolumeSnapshot.volume_id == volume.id).limit(1)
        ):
            raise Conflict(
                f"Volume '{volume.name}' has snapshots (inside its file); delete them first "
                f"(novacron volume snapshot list --volume {volume.name})."
            )
        pool_for(self.ctx.settings, volume.pool).delete(volume.id, volume.location)
        quota.release(self.session, "volume", volume.id)
        self._publish("volume.deleted", volume)
        self.session.delete(volume)

    def attach(self, volume: Volume, vm_ref: str) -> Task:
        """Attach to a VM of the same project: hot-plugged when it runs, at its next start if stopped."""
        ensure_idle(volume)
        vm = resolve(self.session, self.principal, VM, vm_ref, named=Named("vm"))
        if vm.project_id != volume.project_id:
            raise InvalidInput("vm", f"VM '{vm.name}' is in another project than volume '{volume.name}'")
        if volume.vm_id is not None:
            raise Conflict(f"Volume '{volume.name}' is attached already; detach it first.")
        _ensure_vm_ready(vm)
        volume.vm_id, volume.status, volume.error = vm.id, "attaching", None
        vm.task_state = "attaching_volume"
        return self._task(tasks.AttachVolume, volume, {"vm_id": vm.id})

    def detach(self, volume: Volume) -> Task:
        """Detach from its VM: hot-unplugged when it runs (the guest must release the disk)."""
        ensure_idle(volume)
        vm = self.session.get(VM, volume.vm_id) if volume.vm_id else None
        if vm is None:
            raise Conflict(f"Volume '{volume.name}' is not attached to any VM.")
        if volume.boot:
            raise Conflict(
                f"Volume '{volume.name}' is the root disk of VM '{vm.name}': "
                "it is released when the VM is deleted."
            )
        _ensure_vm_ready(vm)
        volume.status, volume.error = "detaching", None
        vm.task_state = "detaching_volume"
        return self._task(tasks.DetachVolume, volume, {"vm_id": vm.id})

    def extend(self, volume: Volume, size_gb: int) -> Task:
        """Grow the volume (online when its VM runs); the new size is charged at once."""
        ensure_idle(volume)
        if size_gb <= volume.size_gb:
            raise InvalidInput(
                "size_gb", f"must be larger than the volume's {volume.size_gb} GiB (no shrink)"
            )
        vm = self.session.get(VM, volume.vm_id) if volume.vm_id else None
        if vm is not None:
            _ensure_vm_ready(vm)
        quota.resize(self.session, "volume", volume.id, volume_amounts(size_gb), self.principal.role)
        params = {"size_gb": size_gb, "status": volume.status, "vm_id": volume.vm_id or ""}
        volume.status, volume.error = "extending", None
        return self._task(tasks.ExtendVolume, volume, params)

    def _task(
        self, handler: type[TaskHandler], volume: Volume, params: dict[str, object] | None = None
    ) -> Task:
        self.session.flush()
        task = create_task(
            self.session,
            handler,
            "volume",
            volume.id,
            tenant_id=volume.tenant_id,
            project_id=volume.project_id,
            params=dict(params or {}),
        )
        wake_on_commit(self.session, self.ctx)
        return task

    def _publish(self, kind: str, volume: Volume, **detail: object) -> None:
        events.publish(
            self.session,
            kind,
            "volume",
            volume.id,
            tenant_id=volume.tenant_id,
            project_id=volume.project_id,
            name=volume.name,
            **detail,
        )


def _size_gb(size_gb: int | None, source: _Source) -> int:
    """The size asked for, or the source's rounded up; never smaller than the source."""
    if size_gb is None:
        if source == _Source():
            raise InvalidInput("size_gb", "give the size of a blank volume (or a source to copy)")
        return max(1, source.min_gb)
    if size_gb < source.min_gb:
        raise InvalidInput("size_gb", f"smaller than the source's size ({source.min_gb} GiB)")
    if not 1 <= size_gb <= MAX_SIZE_GB:
        raise InvalidInput("size_gb", f"must be between 1 and {MAX_SIZE_GB} GiB")
    return size_gb


def ensure_idle(volume: Volume) -> None:
    if volume.status in BUSY:
        raise Conflict(f"Volume '{volume.name}' is busy ({volume.status}); wait for its task to finish.")


def ensure_vm_volumes_idle(session: Session, vm: VM) -> None:
    """Refuse (409) to move a VM while one of its volumes is being cloned (read through a snapshot
    of its file, which a move would copy or drop under the clone)."""
    busy = session.scalar(select(Volume).where(Volume.vm_id == vm.id, Volume.status == "cloning").limit(1))
    if busy is not None:
        raise Conflict(
            f"Volume '{busy.name}' of VM '{vm.name}' is being cloned; move the VM once the clone is made "
            f"(novacron volume list --vm {vm.name})."
        )


def _ensure_vm_ready(vm: VM) -> None:
    if vm.task_state is not None:
        raise Conflict(f"VM '{vm.name}' is busy ({vm.task_state}); wait for its task to finish.")
    if vm.state not in ATTACHABLE_VM:
        raise Conflict(
            f"VM '{vm.name}' is {vm.state}; volumes attach to and detach from running or stopped VMs."
        )

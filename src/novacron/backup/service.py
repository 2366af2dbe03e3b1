"""Backups as callers request them: catalogue rows and durable tasks in one transaction.

The ``request_*`` functions, ``new_vm_row`` and ``delete_snapshot`` are shared with the backup
scheduler and the DR tasks; ``BackupService`` is what the API calls on behalf of one caller.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events
from novacron.backup import tasks as backup_tasks
from novacron.backup import vmstore, volbackup, volrestore
from novacron.compute import hardware
from novacron.compute.vms import new_derived_image
from novacron.db.base import new_id, utcnow
from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import VM, BackupSnapshot, BackupTarget, Image, Project, RestoreJob, Task
from novacron.db.resolve import Named, resolve, scoped
from novacron.errors import Conflict, InvalidInput, NameTaken, NotFound, on_field
from novacron.identity.principal import Principal
from novacron.quota import enforce as quota
from novacron.quota.registry import vm_amounts
from novacron.quota.tree import node_for_ref
from novacron.service import Service
from novacron.tasks.runner import TaskHandler, create_task

if TYPE_CHECKING:
    from novacron.backup.store import ChunkStore


def default_target(
    session: Session, principal: Principal, ref: str | None, field: str = "target"
) -> BackupTarget:
    """The named target, or the only one there is."""
    if ref is not None:
        return resolve(session, principal, BackupTarget, ref, named=Named(field))
    targets = list(session.scalars(select(BackupTarget).order_by(BackupTarget.name).limit(4)))
    if not targets:
        raise InvalidInput(field, NO_TARGET)
    if len(targets) > 1:
        names = ", ".join(t.name for t in targets[:3]) + (", ..." if len(targets) > 3 else "")
        raise InvalidInput(field, f"there are several backup targets ({names}): name one")
    return targets[0]


#: what a backup without any target says: how to make one (an administrator's job)
NO_TARGET = (
    "there is no backup target yet: create one with `novacron backup target create NAME --kind local "
    "--set path=/var/lib/novacron/backups` (or s3, azure, gcs: see `novacron backup target create "
    "--help`), or on the dashboard's Backup targets page"
)


def _busy(session: Session, resource_id: str) -> None:
    if session.scalar(
        select(Task.id)
        .where(Task.resource_id == resource_id, Task.state.in_(("pending", "running")))
        .limit(1)
    ):
        raise Conflict("A task on this resource is still running; wait for it (novacron task list).")


def visible_vm(session: Session, principal: Principal, ref: str, project: Project | None = None) -> VM:
    """The VM a request body names (``vm``; one ``project`` may use, when given); 404 on that field
    when the caller cannot see it."""
    return resolve(session, principal, VM, ref, project=project, named=Named("vm", missing=NotFound))


def request_backup(
    session: Session, vm: VM, target: BackupTarget, full: bool, policy_id: str | None = None
) -> tuple[BackupSnapshot, Task]:
    """A pending backup of the VM to the target, and its durable task (refused when quota is full)."""
    if vm.host_id is None or vm.state in ("building", "error", "deleted"):
        raise Conflict(f"VM '{vm.name}' is {vm.state} and has no disk to back up yet.")
    project = session.get(Project, vm.project_id)
    assert project is not None
    # its size is known only once taken (charged then, BackupVM): refused while the project is full
    quota.require_room(session, project, "backup_storage_gb", f"a new backup of VM '{vm.name}'")
    image = session.get(Image, vm.image_id) if vm.image_id else None
    snap = BackupSnapshot(
        id=new_id("bk"),
        tenant_id=vm.tenant_id,
        project_id=vm.project_id,
        vm_id=vm.id,
        vm_name=vm.name,
        target_id=target.id,
        policy_id=policy_id,
        state="pending",
        source={
            "image_id": image.id if image else None,
            "flavor_id": vm.flavor_id,
            "vcpus": vm.vcpus,
            "ram_mb": vm.ram_mb,
            "disk_gb": vm.disk_gb,
            "user_data": vm.user_data,
            "metadata": dict(vm.meta or {}),
            "hardware": dict(vm.hardware or {}),
        },
    )
    session.add(snap)
    session.flush()
    task = create_task(
        session,
        backup_tasks.BackupVM,
        "vm",
        vm.id,
        tenant_id=vm.tenant_id,
        project_id=vm.project_id,
        params={"snapshot_id": snap.id, "full": full},
    )
    snap.task_id = task.id
    return snap, task


def _available(snap: BackupSnapshot) -> None:
    if snap.state != "available":
        raise Conflict(f"Backup {snap.id} is {snap.state}; only an available backup can be used.")


def new_vm_row(
    session: Session,
    snap: BackupSnapshot,
    name: str,
    field: str = "new_vm",
    principal: Principal | None = None,
    *,
    part: str = "body",
) -> VM:
    """A VM to restore into, shaped like the one backed up (image for its kernel, sizes, user-data),
    charged to the project's quota like any VM: checked for a user's request, counted unchecked for
    a DR drill (a recovery is not refused)."""
    src = snap.source
    image = session.get(Image, src.get("image_id")) if src.get("image_id") else None
    if image is None or image.status != "active":
        raise Conflict(f"The image of the backed-up VM is gone; backup {snap.id} cannot make a new VM.")
    if session.scalar(select(VM.id).where(VM.project_id == snap.project_id, VM.name == name)):
        raise NameTaken("VM", name, field, part=part)
    vm = VM(
        id=new_id("vm"),
        project_id=snap.project_id,
        tenant_id=snap.tenant_id,
        name=name,
        image_id=image.id,
        flavor_id=src.get("flavor_id"),
        vcpus=int(src["vcpus"]),
        ram_mb=int(src["ram_mb"]),
        # the root disk's size (a snapshot's size_bytes counts its volumes too)
        disk_gb=max(int(src["disk_gb"]), -(-volrestore.root_size(snap) // 2**30)),
        user_data=str(src.get("user_data") or ""),
        meta={**dict(src.get("metadata") or {}), "restored_from": snap.id},
        placement={},
        # the backed-up VM's machine (its firmware's NVRAM is not in the backup: a fresh store)
        hardware=hardware.of_vm(src.get("hardware") or image.hardware),
        desired_state="running",
        state="building",
        task_state="restoring",
    )
    session.add(vm)
    session.flush()
    amounts = vm_amounts(vm.vcpus, vm.ram_mb, vm.disk_gb)
    if principal is not None:
        project = session.get(Project, snap.project_id)
        assert project is not None
        quota.charge(session, principal, project, "vm", vm.id, amounts)
    else:
        quota.charge_node(session, node_for_ref(session, project_id=snap.project_id), "vm", vm.id, amounts)
    events.publish(
        session, "vm.created", "vm", vm.id, tenant_id=vm.tenant_id, project_id=vm.project_id, name=name
    )
    return vm


def request_restore(
    session: Session,
    snap: BackupSnapshot,
    principal: Principal,
    new_vm: str | None,
    vm: VM | None,
    instant: bool = False,
    copy_rate_mib: int | None = None,
) -> tuple[RestoreJob, Task, VM]:
    """Restore the backup into a new VM (``new_vm``, ``instant``: booted at once) or over a stopped ``vm``."""
    _available(snap)
    job = RestoreJob(
        id=new_id("rst"),
        tenant_id=snap.tenant_id,
        project_id=snap.project_id,
        snapshot_id=snap.id,
        mode=("instant" if instant else "new_vm") if new_vm else "existing_vm",
        state="running",
    )
    volumes: list[dict[str, str]] = []
    if new_vm:
        target_vm = new_vm_row(session, snap, new_vm, principal=principal)
        volumes = volrestore.new_volumes(session, snap, target_vm, principal)
        handler: type[TaskHandler] = (
            backup_tasks.InstantRestoreNewVM if instant else backup_tasks.RestoreNewVM
        )
    else:
        assert vm is not None
        if vm.tenant_id != snap.tenant_id:
            why = "the VM belongs to another tenant than the backup"
            raise on_field(NotFound, "vm", why)
        if vm.task_state is not None or vm.state != "stopped":
            raise Conflict(
                f"VM '{vm.name}' is {vm.task_state or vm.state}: stop it before restoring over it."
            )
        vm.task_state = "restoring"
        target_vm, handler = vm, backup_tasks.RestoreOverVM
    job.vm_id = target_vm.id
    session.add(job)
    session.flush()
    task = create_task(
        session,
        handler,
        "vm",
        target_vm.id,
        tenant_id=snap.tenant_id,
        project_id=snap.project_id,
        params={"snapshot_id": snap.id, "job_id": job.id, "copy_rate_mib": copy_rate_mib, "volumes": volumes},
    )
    job.task_id = task.id
    return job, task, target_vm


def request_restore_image(
    session: Session, snap: BackupSnapshot, image_name: str
) -> tuple[RestoreJob, Task, Image]:
    """Restore the backup's disk as a new image of its project (the ``--disk`` restore)."""
    _available(snap)
    image = new_derived_image(session, snap.tenant_id, snap.project_id, image_name)
    job = RestoreJob(
        id=new_id("rst"), tenant_id=snap.tenant_id, project_id=snap.project_id, snapshot_id=snap.id,
        mode="image", state="running",
    )  # fmt: skip
    session.add(job)
    session.flush()
    task = create_task(
        session,
        backup_tasks.RestoreImage,
        "image",
        image.id,
        tenant_id=snap.tenant_id,
        project_id=snap.project_id,
        params={"snapshot_id": snap.id, "job_id": job.id},
    )
    job.task_id = task.id
    return job, task, image


def request_verify(session: Session, snap: BackupSnapshot) -> Task:
    """A task re-reading every chunk of the backup."""
    _available(snap)
    _busy(session, snap.id)
    return create_task(
        session,
        backup_tasks.VerifySnapshot,
        "backup",
        snap.id,
        tenant_id=snap.tenant_id,
        project_id=snap.project_id,
    )


def request_restore_test(
    session: Session, snap: BackupSnapshot, marker: str | None, principal: Principal | None = None
) -> Task:
    """A task restoring the backup into a throw-away VM and booting it (until ``marker``)."""
    _available(snap)
    _busy(session, snap.id)
    vm = new_vm_row(session, snap, f"restore-test-{snap.id[-8:]}", "snapshot_id", principal, part="path")
    volumes = volrestore.new_volumes(session, snap, vm, principal)  # deleted again by its cleanup
    return create_task(
        session,
        backup_tasks.RestoreTest,
        "backup",
        snap.id,
        tenant_id=snap.tenant_id,
        project_id=snap.project_id,
        params={"vm_id": vm.id, "marker": marker, "volumes": volumes},
    )


def deletable(snap: BackupSnapshot, now: datetime | None = None) -> str | None:
    """Why nobody (admins included) may delete the snapshot now, or None."""
    if snap.legal_hold:
        reason = snap.hold_reason or "no reason given"
        return f"it is under legal hold ({reason}); the compliance role releases it"
    now = now or utcnow()
    until = snap.immutable_until
    if until is not None and until.replace(tzinfo=until.tzinfo or UTC) > now:
        return f"it is immutable until {until.isoformat()} (its policy's immutability window)"
    return None


def delete_snapshot(session: Session, snap: BackupSnapshot, store: ChunkStore | None) -> None:
    """Delete the backup from the catalogue and its store, and free its quota."""
    why = deletable(snap)
    if why:
        raise Conflict(f"Backup {snap.id} cannot be deleted: {why}.")
    if snap.state in ("pending", "running"):
        raise Conflict(f"Backup {snap.id} is still being taken.")
    if store is not None and snap.state == "available":
        from novacron.backup.model import SnapshotNotFound

        with contextlib.suppress(SnapshotNotFound):
            store.delete_snapshot(snap.tenant_id, snap.id)
    session.delete(snap)
    quota.release(session, "backup", snap.id)


@dataclass(frozen=True)
class BackupFilter:
    """What a list of backups is narrowed to (each filter that is set must match)."""

    vm_id: str | None = None
    vm_name: str | None = None
    state: str | None = None
    project_id: str | None = None
    policy_id: str | None = None


@dataclass(frozen=True)
class RestoreSpec:
    """Where to restore a backup: exactly one of a new VM, a stopped VM, or a new image."""

    new_vm: str | None = None
    vm: str | None = None
    image_name: str | None = None
    instant: bool = False
    copy_rate_mib: int | None = None
    new_volume: str | None = None


@dataclass(frozen=True)
class Restore:
    """A restore under way: its job and task, and the VM or the image it makes."""

    job: RestoreJob
    task: Task
    vm_id: str | None = None
    image_id: str | None = None
    volume_id: str | None = None


class BackupService(Service):
    """Take, list, restore, verify, hold and delete the backups of the VMs the caller sees."""

    def list(self, params: ListParams, where: BackupFilter) -> tuple[list[BackupSnapshot], str | None]:
        """One page of the caller's backups."""
        stmt = scoped(select(BackupSnapshot), BackupSnapshot, self.principal)
        stmt = where_equal(
            stmt,
            (BackupSnapshot.vm_id, where.vm_id),
            (BackupSnapshot.vm_name, where.vm_name),
            (BackupSnapshot.state, where.state),
            (BackupSnapshot.project_id, where.project_id),
            (BackupSnapshot.policy_id, where.policy_id),
        )
        return paginate(self.session, stmt, BackupSnapshot, params)

    def get(self, ref: str) -> BackupSnapshot:
        """The backup of this id or name, if the caller sees it."""
        return resolve(self.session, self.principal, BackupSnapshot, ref)

    def create(
        self, vm_ref: str | None, target_ref: str | None, full: bool, volume_ref: str | None = None
    ) -> tuple[BackupSnapshot, Task]:
        """Back up a VM (with its volumes), or a detached volume alone, to a target (the only one
        when none is named): the pending backup, its task."""
        if (vm_ref is None) == (volume_ref is None):
            raise InvalidInput("vm", "give the VM to back up, or a detached volume (volume); one of them")
        target = default_target(self.session, self.principal, target_ref)  # none yet: say how to make one
        if volume_ref is not None:
            snap, task = volbackup.request_volume_backup(
                self.session, self.principal, volume_ref, target, full
            )
            self.session.flush()
            return snap, task
        assert vm_ref is not None
        vm = visible_vm(self.session, self.principal, vm_ref)
        snap, task = request_backup(self.session, vm, target, full)
        self.session.flush()
        return snap, task

    def delete(self, snap: BackupSnapshot) -> None:
        """Delete a backup nothing holds, from its store too."""
        target = self.session.get(BackupTarget, snap.target_id)
        store = vmstore.server_store(self.ctx.settings, target) if target is not None else None
        delete_snapshot(self.session, snap, store)

    def restore(self, snap: BackupSnapshot, spec: RestoreSpec) -> Restore:
        """Restore a backup as ``spec`` says; the task does the work."""
        if spec.instant and spec.new_vm is None:
            raise InvalidInput("instant", "an instant restore makes a new VM: give new_vm")
        if spec.copy_rate_mib is not None and not spec.instant:
            raise InvalidInput("copy_rate_mib", "the copy rate applies to an instant restore only")
        if spec.new_volume is not None or volbackup.volume_of(snap):
            if spec.new_volume is None or spec.new_vm or spec.vm or spec.image_name:
                why = "a volume's backup restores as a new volume: give new_volume only"
                raise InvalidInput("new_volume", why)
            job, task, volume = volbackup.request_volume_restore(
                self.session, self.principal, snap, spec.new_volume
            )
            self.session.flush()
            return Restore(job, task, volume_id=volume.id)
        if spec.image_name is not None:
            job, task, image = request_restore_image(self.session, snap, spec.image_name)
            self.session.flush()
            return Restore(job, task, image_id=image.id)
        vm = None
        if spec.vm is not None:
            vm = visible_vm(self.session, self.principal, spec.vm, self.session.get(Project, snap.project_id))
        job, task, target_vm = request_restore(
            self.session, snap, self.principal, spec.new_vm, vm, spec.instant, spec.copy_rate_mib
        )
        self.session.flush()
        return Restore(job, task, vm_id=target_vm.id)

    def verify(self, snap: BackupSnapshot) -> Task:
        """Queue a verification of every chunk of the backup."""
        return request_verify(self.session, snap)

    def restore_test(self, snap: BackupSnapshot, marker: str | None) -> Task:
        """Queue a restore test: the backup restored into a VM that must boot (and print ``marker``)."""
        return request_restore_test(self.session, snap, marker, self.principal)

    def hold(self, ref: str, reason: str) -> BackupSnapshot:
        """Put the backup under legal hold: nobody may delete it until it is released."""
        snap = self.get(ref)
        self._store_hold(snap, True, reason)
        snap.legal_hold, snap.hold_reason = True, reason
        self.session.flush()
        return snap

    def release(self, ref: str) -> BackupSnapshot:
        """Release the backup's legal hold."""
        snap = self.get(ref)
        self._store_hold(snap, False, "")
        snap.legal_hold, snap.hold_reason = False, None
        self.session.flush()
        return snap

    def _store_hold(self, snap: BackupSnapshot, hold: bool, reason: str) -> None:
        """Mirror the hold into the store, so pruning by the store itself refuses it too."""
        target = self.session.get(BackupTarget, snap.target_id)
        if target is None or snap.state != "available":
            return
        store = vmstore.server_store(self.ctx.settings, target)
        who = self.principal.username
        if hold:
            store.place_hold(snap.tenant_id, snap.id, "legal", reason, who)
        else:
            with contextlib.suppress(LookupError):
                store.release_hold(snap.tenant_id, snap.id, "legal", who)

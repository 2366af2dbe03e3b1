"""Backup requests as the API makes them: catalogue rows and durable tasks in one transaction."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events
from novacron.api.errors import Problem, conflict, invalid, name_taken
from novacron.backup import tasks as backup_tasks
from novacron.compute.vms import new_derived_image
from novacron.db.base import new_id, utcnow
from novacron.db.models import VM, BackupSnapshot, BackupTarget, Image, Project, RestoreJob, Task
from novacron.identity.principal import Principal
from novacron.quota import enforce as quota
from novacron.quota.registry import vm_amounts
from novacron.quota.tree import node_for_ref
from novacron.tasks.runner import create_task

if TYPE_CHECKING:
    from novacron.backup.store import ChunkStore


def default_target(session: Session, ref: str | None, field: str = "body.target") -> BackupTarget:
    """The named target, or the only one there is."""
    if ref is not None:
        target = session.scalar(
            select(BackupTarget).where((BackupTarget.id == ref) | (BackupTarget.name == ref))
        )
        if target is None:
            raise invalid(field, f"no backup target '{ref}'; see GET /v1/backup-targets")
        return target
    targets = list(session.scalars(select(BackupTarget).limit(2)))
    if len(targets) != 1:
        raise invalid(field, "name a backup target (there are several, or none: an admin creates one)")
    return targets[0]


def _busy(session: Session, resource_id: str) -> None:
    if session.scalar(
        select(Task.id)
        .where(Task.resource_id == resource_id, Task.state.in_(("pending", "running")))
        .limit(1)
    ):
        raise conflict("A task on this resource is still running; wait for it (novacron task list).")


def request_backup(
    session: Session, vm: VM, target: BackupTarget, full: bool, policy_id: str | None = None
) -> tuple[BackupSnapshot, Task]:
    if vm.host_id is None or vm.state in ("building", "error", "deleted"):
        raise conflict(f"VM '{vm.name}' is {vm.state} and has no disk to back up yet.")
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
        raise conflict(f"Backup {snap.id} is {snap.state}; only an available backup can be used.")


def new_vm_row(
    session: Session,
    snap: BackupSnapshot,
    name: str,
    field: str = "body.new_vm",
    principal: Principal | None = None,
) -> VM:
    """A VM to restore into, shaped like the one backed up (image for its kernel, sizes, user-data),
    charged to the project's quota like any VM: checked for a user's request, counted unchecked for
    a DR drill (a recovery is not refused)."""
    src = snap.source
    image = session.get(Image, src.get("image_id")) if src.get("image_id") else None
    if image is None or image.status != "active":
        raise conflict(f"The image of the backed-up VM is gone; backup {snap.id} cannot make a new VM.")
    if session.scalar(select(VM.id).where(VM.project_id == snap.project_id, VM.name == name)):
        raise name_taken("VM", name, field)
    vm = VM(
        id=new_id("vm"),
        project_id=snap.project_id,
        tenant_id=snap.tenant_id,
        name=name,
        image_id=image.id,
        flavor_id=src.get("flavor_id"),
        vcpus=int(src["vcpus"]),
        ram_mb=int(src["ram_mb"]),
        disk_gb=max(int(src["disk_gb"]), -(-snap.size_bytes // 2**30)),
        user_data=str(src.get("user_data") or ""),
        meta={**dict(src.get("metadata") or {}), "restored_from": snap.id},
        placement={},
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
    _available(snap)
    job = RestoreJob(
        id=new_id("rst"),
        tenant_id=snap.tenant_id,
        project_id=snap.project_id,
        snapshot_id=snap.id,
        mode=("instant" if instant else "new_vm") if new_vm else "existing_vm",
        state="running",
    )
    if new_vm:
        target_vm = new_vm_row(session, snap, new_vm, principal=principal)
        handler: type[backup_tasks.TaskHandler] = (
            backup_tasks.InstantRestoreNewVM if instant else backup_tasks.RestoreNewVM
        )
    else:
        assert vm is not None
        if vm.tenant_id != snap.tenant_id:
            raise invalid("body.vm", "the VM belongs to another tenant than the backup", 404)
        if vm.task_state is not None or vm.state != "stopped":
            raise conflict(
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
        params={"snapshot_id": snap.id, "job_id": job.id, "copy_rate_mib": copy_rate_mib},
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
    _available(snap)
    _busy(session, snap.id)
    vm = new_vm_row(session, snap, f"restore-test-{snap.id[-8:]}", "path.snapshot_id", principal)
    return create_task(
        session,
        backup_tasks.RestoreTest,
        "backup",
        snap.id,
        tenant_id=snap.tenant_id,
        project_id=snap.project_id,
        params={"vm_id": vm.id, "marker": marker},
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
    why = deletable(snap)
    if why:
        raise Problem(409, "Conflict", f"Backup {snap.id} cannot be deleted: {why}.")
    if snap.state in ("pending", "running"):
        raise conflict(f"Backup {snap.id} is still being taken.")
    if store is not None and snap.state == "available":
        from novacron.backup.store import SnapshotNotFound

        with contextlib.suppress(SnapshotNotFound):
            store.delete_snapshot(snap.tenant_id, snap.id)
    session.delete(snap)
    quota.release(session, "backup", snap.id)


def set_hold(snap: BackupSnapshot, hold: bool, reason: str | None, principal: Principal) -> dict[str, Any]:
    snap.legal_hold = hold
    snap.hold_reason = reason if hold else None
    return {"legal_hold": hold, "by": principal.username}

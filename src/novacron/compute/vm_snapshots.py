"""VM snapshots: a tree of points in time of each VM's root disk (and RAM), taken live.

The service owns the rows, the tree and the checks; the disk work runs in durable tasks
(``vm_snapshot_tasks``) through the agent of the VM's host, as every VM operation does. While one
runs the VM is busy (``task_state``), so a backup, a migration or a power operation waits.

The tree: a new snapshot's parent is the VM's ``current`` one (what its disk stood on), and it
becomes current; a revert makes its target current; a deleted snapshot's children take its parent.
Quota: each snapshot counts one ``snapshots`` (the quota the stopped-VM-to-image snapshot uses).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from novacron import events
from novacron.compute import boot_volume
from novacron.compute import vm_snapshot_tasks as tasks
from novacron.db.base import new_id
from novacron.db.models import VM, Project, Task, VmSnapshot
from novacron.db.resolve import resolve
from novacron.errors import Conflict, InvalidInput, NameTaken, NotFound
from novacron.quota import enforce as quota
from novacron.service import Service
from novacron.tasks.runner import TaskHandler, create_task
from novacron.tasks.service import wake_on_commit

#: the quota kind of a VM snapshot row (the amounts go to the ``snapshots`` resource)
QUOTA_KIND = "vm_snapshot"
#: what a snapshot can be taken of (a paused VM's RAM is taken as it stands)
SNAPSHOTTABLE = ("running", "paused", "stopped")
#: a snapshot in one of these is being worked on
BUSY = ("creating", "reverting", "deleting")


@dataclass(frozen=True)
class SnapshotSpec:
    """A snapshot to take: ``memory`` adds the guest's RAM (running VMs), ``quiesce`` freezes its
    filesystems through the guest agent when it has one."""

    name: str
    description: str = ""
    memory: bool = False
    quiesce: bool = True


class VmSnapshotService(Service):
    """Take, list, revert to and delete the snapshots of the caller's VMs."""

    def vm(self, vm_ref: str) -> VM:
        return resolve(self.session, self.principal, VM, vm_ref)

    def list(self, vm: VM) -> list[VmSnapshot]:
        stmt = (
            select(VmSnapshot).where(VmSnapshot.vm_id == vm.id).order_by(VmSnapshot.created_at, VmSnapshot.id)
        )
        return list(self.session.scalars(stmt))

    def get(self, vm: VM, ref: str) -> VmSnapshot:
        """A snapshot of ``vm`` by id or name (404 naming the path's ``snapshot_id``)."""
        stmt = select(VmSnapshot).where(VmSnapshot.vm_id == vm.id)
        row = self.session.scalar(stmt.where(VmSnapshot.id == ref)) or self.session.scalar(
            stmt.where(VmSnapshot.name == ref)
        )
        if row is None:
            raise NotFound("snapshot", ref, detail=f"VM '{vm.name}' has no snapshot '{ref}'.")
        return row

    def create(self, vm: VM, spec: SnapshotSpec) -> tuple[VmSnapshot, Task]:
        """The snapshot's row (a child of the current one), its quota and the task taking it."""
        _ensure_vm_ready(vm)
        if spec.memory and vm.state == "stopped":
            raise InvalidInput("memory", f"VM '{vm.name}' is stopped: it has no RAM to snapshot")
        parent = self._current(vm)
        snap = VmSnapshot(
            id=new_id("vsnap"),
            vm_id=vm.id,
            project_id=vm.project_id,
            tenant_id=vm.tenant_id,
            name=spec.name,
            description=spec.description,
            parent_id=parent.id if parent is not None else None,
            current=False,
            memory=spec.memory,
            quiesce=spec.quiesce,
            consistency="",
            vm_state_bytes=0,
            status="creating",
        )
        self.session.add(snap)
        try:
            self.session.flush()
        except IntegrityError as exc:
            raise NameTaken("snapshot", spec.name, "name", "on this VM") from exc
        project = self.session.get(Project, vm.project_id)
        assert project is not None
        quota.charge(self.session, self.principal, project, QUOTA_KIND, snap.id, {"snapshots": 1})
        self._publish("vm_snapshot.creating", snap, memory=spec.memory)
        return snap, self._task(tasks.CreateSnapshot, vm, snap, "snapshotting")

    def revert(self, vm: VM, snap: VmSnapshot) -> Task:
        """Revert the VM to ``snap``: its disk (and, with RAM, the running guest) goes back there."""
        _ensure_vm_ready(vm)
        _ensure_available(snap)
        snap.status = "reverting"
        return self._task(tasks.RevertSnapshot, vm, snap, "reverting_snapshot")

    def delete(self, vm: VM, snap: VmSnapshot) -> Task:
        """Delete ``snap`` (online); its children take its parent, the others keep their data."""
        _ensure_vm_ready(vm)
        if snap.status in BUSY:
            raise Conflict(f"Snapshot '{snap.name}' is busy ({snap.status}); wait for its task to finish.")
        snap.status = "deleting"
        return self._task(tasks.DeleteSnapshot, vm, snap, "deleting_snapshot")

    def _current(self, vm: VM) -> VmSnapshot | None:
        stmt = select(VmSnapshot).where(VmSnapshot.vm_id == vm.id, VmSnapshot.current.is_(True))
        return self.session.scalar(stmt)

    def _task(self, handler: type[TaskHandler], vm: VM, snap: VmSnapshot, task_state: str) -> Task:
        vm.task_state = task_state
        self.session.flush()
        task = create_task(
            self.session,
            handler,
            "vm",
            vm.id,
            tenant_id=vm.tenant_id,
            project_id=vm.project_id,
            params={"snapshot_id": snap.id},
        )
        wake_on_commit(self.session, self.ctx)
        return task

    def _publish(self, kind: str, snap: VmSnapshot, **detail: object) -> None:
        events.publish(
            self.session, kind, "vm", snap.vm_id, tenant_id=snap.tenant_id, project_id=snap.project_id,
            snapshot_id=snap.id, name=snap.name, **detail,
        )  # fmt: skip


def _ensure_vm_ready(vm: VM) -> None:
    if vm.task_state is not None:
        raise Conflict(f"VM '{vm.name}' is busy ({vm.task_state}); wait for its task to finish.")
    if vm.state not in SNAPSHOTTABLE or vm.host_id is None:
        raise Conflict(f"VM '{vm.name}' is {vm.state}; snapshots are of running, paused or stopped VMs.")
    if boot_volume.on_volume(vm):
        raise Conflict(
            f"VM '{vm.name}' boots from a volume: snapshot the volume (novacron volume snapshot create)."
        )


def _ensure_available(snap: VmSnapshot) -> None:
    if snap.status != "available":
        raise Conflict(f"Snapshot '{snap.name}' is {snap.status}, not available.")

"""Clones of a VM: a new VM whose disk starts as a copy of another's.

- ``full``: an independent copy of the source's disk, a standalone qcow2 with no backing file
  (``virt/clonedisk.py``): of a stopped source by ``qemu-img convert``, of a running one by a QEMU
  ``drive-mirror`` block job while its guest runs on, of one of its snapshots by ``qemu-img
  convert`` out of that internal snapshot (running or not). The clone goes on the source's host (where
  its disk is), with the source's size and hardware, and boots on its own.
- ``linked``: from a template (a VM created from a template image is a linked clone,
  ``compute/templates.py``) or from one of the VM's snapshots (``snapshot``): a snapshot never
  changes, so the clone's disk is an overlay on it (``virt/snapclone.py``: the snapshot written out
  once as a thin base shared by all its clones). A VM's live disk changes while it lives, so a
  linked clone of the VM itself is refused, saying to name a snapshot, make a template or a full clone.

A clone is created like any VM (``VMService.create``: quota, name, placement spec, audit) and built
by ``CloneVM``, the create task with a ``copy_disk`` step before ``prepare`` (which keeps a disk
that exists). The source is held (``task_state`` ``cloning``) while its disk is read, so it is not
started, stopped, resized or migrated under the copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import select

from novacron.agent.protocol import CloneDisk
from novacron.compute import boot_volume, hostops, placement, templates
from novacron.compute import tasks as vm_tasks
from novacron.compute.imagesvc import ImageService
from novacron.compute.reports import announce_idle
from novacron.compute.vm_snapshots import VmSnapshotService
from novacron.compute.vms import VMService, VMSpec, ensure_idle
from novacron.db.models import VM, Image, Task
from novacron.errors import Conflict, InvalidInput
from novacron.network.sync import syncing_vm
from novacron.tasks.runner import StepFailed
from novacron.tasks.service import wake_on_commit

if TYPE_CHECKING:
    from novacron.context import Context
    from novacron.quota.policy import Decisions

COPY_TIMEOUT_S = 3600.0


def _refuse_linked(vm: VM) -> Conflict:
    return Conflict(
        f"A linked clone is made from a snapshot or a template, not from VM '{vm.name}' (its disk "
        f"still changes): name one of its snapshots ('snapshot'), or turn it into a template "
        f"(POST /v1/vms/{vm.id}/template) and create VMs from that image, or clone it with mode 'full'.",
    )


def _snapshot(vms: VMService, vm: VM, ref: str) -> str:
    """The id of ``vm``'s snapshot ``ref`` (id or name), ready to be cloned from."""
    snap = VmSnapshotService(vms.session, vms.principal).get(vm, ref)
    if snap.status != "available":
        raise Conflict(
            f"Snapshot '{snap.name}' of VM '{vm.name}' is {snap.status}; clone it once it is available."
        )
    return snap.id


def request_clone(
    vms: VMService, vm: VM, name: str, mode: str | None, snapshot: str | None, user_data: str | None,
    decisions: Decisions,
) -> tuple[VM, Task]:  # fmt: skip
    """The clone ``name`` of ``vm`` (in its project, of its ``snapshot`` when given) and its task."""
    mode = mode or ("linked" if snapshot else "full")
    snapshot_id = _snapshot(vms, vm, snapshot) if snapshot else None
    if mode == "linked" and snapshot_id is None:
        raise _refuse_linked(vm)
    if vm.task_state != "cloning":  # clones of one VM may copy its disk side by side
        ensure_idle(vm)
    if boot_volume.on_volume(vm):
        raise Conflict(
            f"VM '{vm.name}' boots from a volume: clone the volume (novacron volume create --from-volume) "
            f"and create a VM with it as its boot volume."
        )
    if vm.state not in ("running", "stopped") or vm.host_id is None:
        raise Conflict(f"Only a running or stopped VM can be cloned; '{vm.name}' is {vm.state}.")
    if vm.image_id is None or vm.flavor_id is None:
        raise InvalidInput("name", f"VM '{vm.name}' has no image or flavor left to describe a clone by")
    project = vms.project(vm.project_id)
    spec = VMSpec(
        name=name,
        image=vm.image_id,
        flavor=vm.flavor_id,
        user_data=vm.user_data if user_data is None else user_data,
        metadata=dict(vm.meta or {}),
        labels=dict(vm.labels or {}),
        ha=vm.ha,
        ha_priority=vm.ha_priority,
        like=vm,
    )
    params = {
        "source_id": vm.id,
        "source_host_id": vm.host_id,
        "mode": mode,
        "live": vm.state == "running",
        "snapshot_id": snapshot_id,
    }
    clone, task = vms.create(project, spec, decisions, CloneVM, params)
    vm.task_state = "cloning"
    vms.session.flush()
    return clone, task


def _release_source(ctx: Context, task: Task) -> None:
    """The source is free again once no clone still copies its disk (this one has, or gave up)."""
    source_id = task.params["source_id"]
    with ctx.db.session() as s:
        source = s.get(VM, source_id)
        if source is None or source.task_state != "cloning":
            return
        others = s.scalars(
            select(Task).where(
                Task.kind == CloneVM.kind, Task.state.in_(("pending", "running")), Task.id != task.id
            )
        )
        copying = CloneVM.steps.index("copy_disk")
        if not any(t.params.get("source_id") == source_id and t.step_index <= copying for t in others):
            announce_idle(s, source, source.task_state or "cloning")
            source.task_state = None


class CloneVM(vm_tasks.CreateVM):
    """Build a full clone: placed on its source's host, the disk copied, then prepared and booted."""

    kind = "vm.clone"
    steps: ClassVar[list[str]] = ["validate", "place", "copy_disk", "prepare", "launch", "wait_running"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        if step == "place":
            self._place(ctx, task)
        elif step == "copy_disk":
            with ctx.db.session() as s:
                if s.get(VM, task.params["source_id"]) is None:
                    raise StepFailed(f"The clone's source VM {task.params['source_id']} no longer exists.")
            full = task.params.get("mode") == "full"  # of a snapshot: a copy, not an overlay
            request = CloneDisk(task.params["source_id"], task.params.get("snapshot_id"), full)
            await hostops.call(
                ctx, task.params["source_host_id"], task, request, task.resource_id, COPY_TIMEOUT_S
            )
            _release_source(ctx, task)
        else:
            await super().run_step(ctx, task, step)

    @staticmethod
    def _place(ctx: Context, task: Task) -> None:
        with ctx.db.session() as s:
            row = s.get(VM, task.resource_id)
            assert row is not None
            try:
                with syncing_vm(s, row):
                    placement.claim_on(s, row, task.params["source_host_id"])
            except placement.NoValidHost as exc:
                raise StepFailed(str(exc)) from exc

    async def on_success(self, ctx: Context, task: Task) -> None:
        # again: clones whose copies ended at the same moment may each have seen the other copying
        _release_source(ctx, task)
        await super().on_success(ctx, task)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        _release_source(ctx, task)
        await super().rollback(ctx, task, error)


class CloneService(VMService):
    """The caller's VMs, cloned or turned into templates."""

    def clone(
        self, ref: str, name: str, mode: str | None, snapshot: str | None, user_data: str | None,
        decisions: Decisions,
    ) -> tuple[VM, Task]:  # fmt: skip
        """A clone ``name`` of the VM ``ref`` (or of its ``snapshot``) in its project, and its task."""
        return request_clone(self, self.get(ref), name, mode, snapshot, user_data, decisions)

    def to_template(self, ref: str, image_name: str) -> tuple[Image, Task]:
        """Turn the stopped VM ``ref`` into the template image ``image_name`` (the VM is consumed)."""
        image, task = templates.request_template(self.session, self.principal, self.get(ref), image_name)
        wake_on_commit(self.session, self.ctx)
        return image, task


class TemplateImages(ImageService):
    """Mark the caller's images as templates, or unmark them."""

    def mark(self, ref: str, template: bool) -> Image:
        """The image ``ref``, marked (or unmarked) as a template."""
        return templates.mark(self.session, self.owned(ref), template)

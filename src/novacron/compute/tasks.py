"""Task handlers of VM lifecycle operations: each step is idempotent and safe to re-run.

Steps that touch the hypervisor queue an operation for the agent of the VM's host
(``hostops.call``) and wait for its answer; the same path serves the embedded agent of an
all-in-one node and remote agents.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import select

from novacron import events
from novacron.agent.protocol import (
    Destroy,
    Launch,
    Observe,
    Pause,
    PowerOff,
    Prepare,
    Reboot,
    Request,
    Resume,
    Shutdown,
    Snapshot,
    VmSpec,
    WaitState,
    vm_spec,
)
from novacron.compute import hostops, live_resize, scheduler, storage
from novacron.compute.images import describe_derived, remove_files
from novacron.compute.reports import STATE_OF
from novacron.compute.spec import spec_payload
from novacron.compute.volume_tasks import release_vm_volumes
from novacron.db.models import VM, Image, QuotaCharge, Task, VmSnapshot
from novacron.network.service import delete_vm_ports
from novacron.network.sync import syncing_vm
from novacron.quota import enforce as quota
from novacron.quota.registry import vm_amounts
from novacron.quota.tree import node_for_ref
from novacron.tasks.runner import StepFailed, TaskHandler
from novacron.virt.base import InvalidImage
from novacron.virt.images import inspect_image

if TYPE_CHECKING:
    from novacron.context import Context

BOOT_TIMEOUT_S = 120.0


def _load_vm(ctx: Context, task: Task) -> VM:
    with ctx.db.session() as s:
        vm = s.get(VM, task.resource_id)
        if vm is None:
            raise StepFailed(f"VM {task.resource_id} no longer exists.")
        return vm


def _host_of(vm: VM) -> str:
    if vm.host_id is None:
        raise StepFailed(f"VM {vm.name} is not placed on any host.")
    return vm.host_id


async def _on_host(
    ctx: Context, task: Task, vm: VM, request: Request, timeout_s: float = 300
) -> dict[str, Any]:
    return await hostops.call(ctx, _host_of(vm), task, request, vm.id, timeout_s)


#: the steps that send the VM's spec, and their requests
SPEC_STEPS: dict[str, Callable[[VmSpec], Request]] = {"prepare": Prepare, "launch": Launch}


def _payload(ctx: Context, vm: VM, fresh: bool = False) -> dict[str, Any]:
    """The VM's spec; ``fresh``: it boots afresh, with new live-resize headroom (compute.live_resize)."""
    with ctx.db.session() as s:
        if fresh:
            live_resize.fresh_boot(s, vm.id, ctx.settings.hotplug_factor)
            vm = s.get(VM, vm.id) or vm
        try:
            return spec_payload(s, vm)
        except ValueError as exc:
            raise StepFailed(str(exc)) from exc


def _spec_request(ctx: Context, step: str, vm: VM) -> Request:
    """The prepare or launch request of the VM; prepare carries the tenant's secrets the VM was
    created with (cloud-init vendor-data, sealed in the host operation until the agent has it)."""
    spec = vm_spec(_payload(ctx, vm, fresh=True))
    if step != "prepare":
        return SPEC_STEPS[step](spec)
    from novacron.identity.encryption import encryption_for
    from novacron.identity.kms_secrets import vendor_data_of

    try:
        vendor = vendor_data_of(ctx.db, encryption_for(ctx.settings), vm.id)
    except ValueError as exc:
        raise StepFailed(str(exc)) from exc
    return Prepare(spec, secrets={"vendor_data": vendor}) if vendor else Prepare(spec)


def end_operation(ctx: Context, vm_id: str, power_state: str | None = None, error: str | None = None) -> None:
    """End the VM's operation: clear ``task_state`` and record the state the host observed."""
    from novacron.compute.reports import announce_idle, record_state

    with ctx.db.session() as s:
        vm = s.get(VM, vm_id)
        if vm is None:
            return
        ended = vm.task_state
        vm.task_state = None
        vm.error = error
        before = vm.state
        if power_state is not None:
            record_state(s, vm, STATE_OF.get(power_state, power_state), error)
        if ended is not None and vm.state == before:
            announce_idle(s, vm, ended, error)


class VMOperation(TaskHandler):
    """A power operation: on success the observed state is recorded and ``task_state`` cleared."""

    async def _observe_and_finish(self, ctx: Context, task: Task, error: str | None = None) -> None:
        vm = _load_vm(ctx, task)
        power = None
        if vm.host_id is not None:
            try:
                power = (await _on_host(ctx, task, vm, Observe(), timeout_s=30))["power_state"]
            except StepFailed:
                power = None
        end_operation(ctx, vm.id, power, error if power in (None, "absent") else None)

    async def on_success(self, ctx: Context, task: Task) -> None:
        await self._observe_and_finish(ctx, task)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        await self._observe_and_finish(ctx, task, error)


class CreateVM(VMOperation):
    kind = "vm.create"
    steps: ClassVar[list[str]] = ["validate", "place", "prepare", "launch", "wait_running"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        vm = _load_vm(ctx, task)
        if step == "validate":
            payload = _payload(ctx, vm)
            if not storage.image_disk(ctx.settings, payload["spec"]["image_id"]).exists():
                raise StepFailed(f"The disk file of image {vm.image_id} is missing from the image store.")
        elif step == "place":
            with ctx.db.session() as s:
                row = s.get(VM, task.resource_id)
                assert row is not None
                if row.host_id is None:
                    try:
                        with syncing_vm(s, row):  # the host gets the VM's ports before prepare
                            host = scheduler.claim(s, row, ctx.settings.placement_strategy)
                    except scheduler.NoValidHost as exc:
                        raise StepFailed(str(exc)) from exc
                    events.publish(
                        s,
                        "vm.placed",
                        "vm",
                        row.id,
                        tenant_id=row.tenant_id,
                        project_id=row.project_id,
                        host=host.name,
                    )
        elif step in ("prepare", "launch"):
            await _on_host(ctx, task, vm, _spec_request(ctx, step, vm))
        elif step == "wait_running":
            await _on_host(ctx, task, vm, WaitState(("running",), BOOT_TIMEOUT_S))

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        """A failed create leaves no process, disk or claim: only the VM row in ``error`` with the reason."""
        vm = _load_vm(ctx, task)
        if vm.host_id is not None:
            # if the agent cannot, its orphan sweep removes the instance once the claim is gone
            with contextlib.suppress(StepFailed):
                await _on_host(ctx, task, vm, Destroy(), timeout_s=60)
        with ctx.db.session() as s:
            row = s.get(VM, task.resource_id)
            if row is not None:
                with syncing_vm(s, row):
                    row.host_id = None
            quota.release(s, "vm", task.resource_id)  # a VM in error from a failed create holds nothing
        end_operation(ctx, task.resource_id, "absent", error)


class StartVM(VMOperation):
    kind = "vm.start"
    steps: ClassVar[list[str]] = ["prepare", "launch", "wait_running"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        vm = _load_vm(ctx, task)
        if step == "wait_running":
            await _on_host(ctx, task, vm, WaitState(("running",), BOOT_TIMEOUT_S))
        else:
            # prepare rebuilds the seed (name, user-data) and keeps the disk; a resize applies here
            await _on_host(ctx, task, vm, _spec_request(ctx, step, vm))


class StopVM(VMOperation):
    kind = "vm.stop"
    steps: ClassVar[list[str]] = ["shutdown"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        vm = _load_vm(ctx, task)
        if task.params.get("force"):
            await _on_host(ctx, task, vm, PowerOff())
        else:
            timeout = float(task.params.get("timeout_s", 60))
            await _on_host(ctx, task, vm, Shutdown(timeout), timeout_s=timeout + 60)


class _SimpleOp(VMOperation):
    op: ClassVar[Request]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        await _on_host(ctx, task, _load_vm(ctx, task), self.op)


class RebootVM(_SimpleOp):
    kind = "vm.reboot"
    op = Reboot()
    steps: ClassVar[list[str]] = ["reboot"]


class PauseVM(_SimpleOp):
    kind = "vm.pause"
    op = Pause()
    steps: ClassVar[list[str]] = ["pause"]


class ResumeVM(_SimpleOp):
    kind = "vm.resume"
    op = Resume()
    steps: ClassVar[list[str]] = ["resume"]


def forget_vm(ctx: Context, s: Any, vm: VM) -> None:
    """Drop a VM's row and all it holds: its ports (their hosts synced), its quota, its metrics."""
    with syncing_vm(s, vm):  # its ports and addresses go with it
        delete_vm_ports(s, vm.id)
    quota.release(s, "vm", vm.id)  # a deleted VM gave it back at the request: then nothing is left
    release_vm_volumes(s, vm.id)
    for snap_id in list(s.scalars(select(VmSnapshot.id).where(VmSnapshot.vm_id == vm.id))):
        quota.release(s, "vm_snapshot", snap_id)  # its snapshots were in its disk: gone with it
    events.publish(
        s, "vm.deleted", "vm", vm.id, tenant_id=vm.tenant_id, project_id=vm.project_id, name=vm.name
    )
    s.delete(vm)
    ctx.live_samples.forget(vm.id)
    if ctx.monitoring is not None:
        ctx.monitoring.forget_vm(vm.id)


async def remove_vm(ctx: Context, task: Task, vm_id: str, key: str) -> None:
    """Remove a VM a task made for itself (a restore test's, a DR run's): its process and disk on the
    host, then its row and all it holds."""
    with ctx.db.session() as s:
        vm = s.get(VM, vm_id)
        host_id = vm.host_id if vm is not None else None
    if host_id is not None:
        with contextlib.suppress(StepFailed):  # the agent's orphan sweep removes it once the row is gone
            await hostops.call(ctx, host_id, task, Destroy(), vm_id, timeout_s=120, key=f"rm{key}")
    with ctx.db.session() as s:
        vm = s.get(VM, vm_id)
        if vm is not None:
            forget_vm(ctx, s, vm)


class DeleteVM(TaskHandler):
    kind = "vm.delete"
    steps: ClassVar[list[str]] = ["destroy", "forget"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        with ctx.db.session() as s:
            vm = s.get(VM, task.resource_id)
            if vm is None:
                return
            if step == "forget":
                forget_vm(ctx, s, vm)
                return
        if vm.host_id is not None:
            await _on_host(ctx, task, vm, Destroy(), timeout_s=120)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        """The VM stays: it holds its quota again (without a limit check: it never stopped existing)."""
        with ctx.db.session() as s:
            vm = s.get(VM, task.resource_id)
            if vm is not None:
                vm.desired_state = "running" if vm.state in ("running", "paused") else "stopped"
                if s.get(QuotaCharge, ("vm", vm.id)) is None:
                    node = node_for_ref(s, project_id=vm.project_id)
                    quota.charge_node(s, node, "vm", vm.id, vm_amounts(vm.vcpus, vm.ram_mb, vm.disk_gb))
        end_operation(ctx, task.resource_id, None, error)


class SnapshotVM(TaskHandler):
    """Flatten a stopped VM's disk into a new image (kernel and initrd carried over)."""

    kind = "vm.snapshot"
    steps: ClassVar[list[str]] = ["copy_disk", "activate"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        vm = _load_vm(ctx, task)
        image_id = task.params["image_id"]
        settings = ctx.settings
        if step == "copy_disk":
            storage.image_dir(settings, image_id).mkdir(parents=True, exist_ok=True)
            # the host flattens the disk into the image store (its own, or uploaded to ours)
            await _on_host(ctx, task, vm, Snapshot(image_id), timeout_s=1800)
            # checked here, not taken from the host: a standalone raw or qcow2 file, no backing file
            try:
                info = await asyncio.to_thread(inspect_image, storage.image_disk(settings, image_id))
            except InvalidImage as exc:
                raise StepFailed(f"The snapshot's disk is not a valid image: {exc}") from exc
            with ctx.db.session() as s:
                image = s.get(Image, image_id)
                source = s.get(Image, vm.image_id) if vm.image_id else None
                assert image is not None
                describe_derived(settings, image, info, source)
        else:
            with ctx.db.session() as s:
                image = s.get(Image, image_id)
                assert image is not None
                image.status = "active"
                events.publish(
                    s, "image.active", "image", image.id, tenant_id=vm.tenant_id, project_id=image.project_id
                )

    async def on_success(self, ctx: Context, task: Task) -> None:
        end_operation(ctx, task.resource_id)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        image_id = task.params["image_id"]
        remove_files(ctx, image_id)
        with ctx.db.session() as s:
            image = s.get(Image, image_id)
            if image is not None:
                image.status = "error"
                image.error = error
            quota.release(s, "snapshot", image_id)  # a failed snapshot holds nothing
        end_operation(ctx, task.resource_id)


HANDLERS: list[TaskHandler] = [
    CreateVM(),
    StartVM(),
    StopVM(),
    RebootVM(),
    PauseVM(),
    ResumeVM(),
    DeleteVM(),
    SnapshotVM(),
]

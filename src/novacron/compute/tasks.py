"""Task handlers of VM lifecycle operations: each step is idempotent and safe to re-run."""

from __future__ import annotations

import asyncio
import shutil
from typing import TYPE_CHECKING, ClassVar

from novacron import events
from novacron.agent.agent import NodeAgent, observed_state
from novacron.compute import scheduler, storage
from novacron.compute.spec import instance_spec
from novacron.db.models import VM, Image, Task
from novacron.tasks.runner import StepFailed, TaskHandler
from novacron.virt.base import DriverError, PowerState

if TYPE_CHECKING:
    from novacron.context import Context

BOOT_TIMEOUT_S = 120.0


def _agent_for(ctx: Context, vm: VM) -> NodeAgent:
    agent = ctx.agent
    if agent is None or vm.host_id is None or agent.host_id != vm.host_id:
        raise StepFailed(f"The agent of host {vm.host_id} is not reachable from this server.")
    return agent


def _load_vm(ctx: Context, task: Task) -> VM:
    with ctx.db.session() as s:
        vm = s.get(VM, task.resource_id)
        if vm is None:
            raise StepFailed(f"VM {task.resource_id} no longer exists.")
        return vm


def _finish_op(ctx: Context, vm_id: str, state: str | None = None, error: str | None = None) -> None:
    with ctx.db.session() as s:
        vm = s.get(VM, vm_id)
        if vm is None:
            return
        vm.task_state = None
        vm.error = error
        if state is not None and vm.state != state:
            events.publish(
                s,
                "vm.state_changed",
                "vm",
                vm.id,
                tenant_id=vm.tenant_id,
                project_id=vm.project_id,
                old=vm.state,
                new=state,
            )
            vm.state = state


async def _observe(ctx: Context, vm: VM) -> PowerState:
    return (await _agent_for(ctx, vm).driver.observe(vm.id)).power_state


async def _wait_for(ctx: Context, vm: VM, wanted: set[PowerState], timeout_s: float) -> PowerState:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        power = await _observe(ctx, vm)
        if power in wanted:
            return power
        if power == PowerState.CRASHED or asyncio.get_running_loop().time() > deadline:
            raise StepFailed(f"VM {vm.name} is {power.value}, expected {', '.join(w.value for w in wanted)}.")
        await asyncio.sleep(0.2)


class VMOperation(TaskHandler):
    """A power operation: on success the observed state is recorded and ``task_state`` cleared."""

    async def on_success(self, ctx: Context, task: Task) -> None:
        vm = _load_vm(ctx, task)
        _finish_op(ctx, vm.id, observed_state(await _observe(ctx, vm)))

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        with ctx.db.session() as s:
            vm = s.get(VM, task.resource_id)
            host_known = vm is not None and ctx.agent is not None and vm.host_id == ctx.agent.host_id
        state = None
        if host_known and vm is not None:
            state = observed_state(await _observe(ctx, vm))
        _finish_op(ctx, task.resource_id, state)


class CreateVM(VMOperation):
    kind = "vm.create"
    steps: ClassVar[list[str]] = ["validate", "place", "prepare", "launch", "wait_running"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        if step == "validate":
            with ctx.db.session() as s:
                vm = s.get(VM, task.resource_id)
                if vm is None:
                    raise StepFailed("The VM was deleted before it was built.")
                try:
                    spec = instance_spec(ctx.settings, s, vm)
                except ValueError as exc:
                    raise StepFailed(str(exc)) from exc
                if not spec.image_path.exists():
                    raise StepFailed(f"The disk file of image {vm.image_id} is missing on this host.")
        elif step == "place":
            with ctx.db.session() as s:
                vm = s.get(VM, task.resource_id)
                assert vm is not None
                if vm.host_id is None:
                    try:
                        host = scheduler.claim(s, vm, ctx.settings.placement_strategy)
                    except scheduler.NoValidHost as exc:
                        raise StepFailed(str(exc)) from exc
                    events.publish(
                        s,
                        "vm.placed",
                        "vm",
                        vm.id,
                        tenant_id=vm.tenant_id,
                        project_id=vm.project_id,
                        host=host.name,
                    )
        elif step == "prepare":
            vm = _load_vm(ctx, task)
            with ctx.db.session() as s:
                spec = instance_spec(ctx.settings, s, vm)
            await _agent_for(ctx, vm).driver.prepare(spec)
        elif step == "launch":
            vm = _load_vm(ctx, task)
            with ctx.db.session() as s:
                spec = instance_spec(ctx.settings, s, vm)
            await _agent_for(ctx, vm).driver.launch(spec)
        elif step == "wait_running":
            vm = _load_vm(ctx, task)
            await _wait_for(ctx, vm, {PowerState.RUNNING}, BOOT_TIMEOUT_S)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        """A failed create leaves no process, disk or claim: only the VM row in ``error`` with the reason."""
        with ctx.db.session() as s:
            vm = s.get(VM, task.resource_id)
            if vm is None:
                return
            host_id = vm.host_id
        if ctx.agent is not None and host_id == ctx.agent.host_id:
            await ctx.agent.driver.destroy(task.resource_id)
        with ctx.db.session() as s:
            vm = s.get(VM, task.resource_id)
            if vm is not None:
                vm.host_id = None
        _finish_op(ctx, task.resource_id, "error", error)


class StartVM(VMOperation):
    kind = "vm.start"
    steps: ClassVar[list[str]] = ["launch", "wait_running"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        vm = _load_vm(ctx, task)
        if step == "launch":
            with ctx.db.session() as s:
                spec = instance_spec(ctx.settings, s, vm)
            driver = _agent_for(ctx, vm).driver
            # the seed carries the VM's current name and user-data; rebuild after a resize too
            await driver.prepare(spec)
            await driver.launch(spec)
        else:
            await _wait_for(ctx, vm, {PowerState.RUNNING}, BOOT_TIMEOUT_S)


class StopVM(VMOperation):
    kind = "vm.stop"
    steps: ClassVar[list[str]] = ["shutdown"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        vm = _load_vm(ctx, task)
        driver = _agent_for(ctx, vm).driver
        if task.params.get("force"):
            await driver.power_off(vm.id)
        else:
            await driver.shutdown(vm.id, float(task.params.get("timeout_s", 60)))


class RebootVM(VMOperation):
    kind = "vm.reboot"
    steps: ClassVar[list[str]] = ["reboot"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        vm = _load_vm(ctx, task)
        await _agent_for(ctx, vm).driver.reboot(vm.id)


class PauseVM(VMOperation):
    kind = "vm.pause"
    steps: ClassVar[list[str]] = ["pause"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        vm = _load_vm(ctx, task)
        await _agent_for(ctx, vm).driver.pause(vm.id)


class ResumeVM(VMOperation):
    kind = "vm.resume"
    steps: ClassVar[list[str]] = ["resume"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        vm = _load_vm(ctx, task)
        await _agent_for(ctx, vm).driver.resume(vm.id)


class DeleteVM(TaskHandler):
    kind = "vm.delete"
    steps: ClassVar[list[str]] = ["destroy", "forget"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        with ctx.db.session() as s:
            vm = s.get(VM, task.resource_id)
            if vm is None:
                return
            host_id = vm.host_id
        if step == "destroy":
            if ctx.agent is not None and (host_id is None or host_id == ctx.agent.host_id):
                await ctx.agent.driver.destroy(task.resource_id)
                ctx.agent.metrics.pop(task.resource_id, None)
            elif host_id is not None:
                raise StepFailed(f"The agent of host {host_id} is not reachable; retry when it is back.")
        else:
            with ctx.db.session() as s:
                vm = s.get(VM, task.resource_id)
                if vm is not None:
                    events.publish(
                        s,
                        "vm.deleted",
                        "vm",
                        vm.id,
                        tenant_id=vm.tenant_id,
                        project_id=vm.project_id,
                        name=vm.name,
                    )
                    s.delete(vm)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        _finish_op(ctx, task.resource_id, "error", error)


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
            try:
                info = await _agent_for(ctx, vm).driver.snapshot_disk(
                    vm.id, storage.image_disk(settings, image_id)
                )
            except DriverError as exc:
                raise StepFailed(str(exc)) from exc
            with ctx.db.session() as s:
                image = s.get(Image, image_id)
                source = s.get(Image, vm.image_id) if vm.image_id else None
                assert image is not None
                image.disk_format = info.format
                image.virtual_size_bytes = info.virtual_size_bytes
                image.size_bytes = info.actual_size_bytes
                if source is not None:
                    for flag, path_of in (
                        ("has_kernel", storage.image_kernel),
                        ("has_initrd", storage.image_initrd),
                    ):
                        if getattr(source, flag):
                            shutil.copyfile(path_of(settings, source.id), path_of(settings, image_id))
                            setattr(image, flag, True)
                    image.kernel_cmdline = source.kernel_cmdline
        else:
            with ctx.db.session() as s:
                image = s.get(Image, image_id)
                assert image is not None
                image.status = "active"
                events.publish(
                    s, "image.active", "image", image.id, tenant_id=vm.tenant_id, project_id=image.project_id
                )

    async def on_success(self, ctx: Context, task: Task) -> None:
        _finish_op(ctx, task.resource_id)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        image_id = task.params["image_id"]
        shutil.rmtree(storage.image_dir(ctx.settings, image_id), ignore_errors=True)
        with ctx.db.session() as s:
            image = s.get(Image, image_id)
            if image is not None:
                image.status = "error"
                image.error = error
        _finish_op(ctx, task.resource_id)


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

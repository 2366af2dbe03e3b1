"""Live migration of a running VM to another host, as a durable task.

The destination's resources are reserved first (a conditional UPDATE on its counters, like any
claim), the destination QEMU waits for the state with its disk exported over NBD, the source
mirrors the disk and migrates RAM (copy-storage-all), the destination runs the guest, and only
then does the VM row move and the source instance go. Any failure before the switch destroys the
half-built destination, returns the reservation, and leaves the VM running at the source.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ClassVar

from novacron import events
from novacron.compute import hostops
from novacron.compute.placement import NoValidHost
from novacron.compute.placement.claims import reserve_elsewhere, try_claim, unreserve
from novacron.compute.reports import record_state
from novacron.compute.spec import spec_payload
from novacron.compute.tasks import end_operation
from novacron.db.models import VM, Host, Task
from novacron.tasks.runner import StepFailed, TaskHandler

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from novacron.context import Context


def _save_params(ctx: Context, task: Task, **values: Any) -> None:
    with ctx.db.session() as s:
        row = s.get(Task, task.id)
        assert row is not None
        row.params = {**row.params, **values}
        task.params = row.params


class MigrateVM(TaskHandler):
    kind = "vm.migrate"
    steps: ClassVar[list[str]] = [
        "reserve",
        "prepare_target",
        "transfer",
        "start_target",
        "switch",
        "cleanup_source",
    ]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        with ctx.db.session() as s:
            vm = s.get(VM, task.resource_id)
            if vm is None:
                raise StepFailed("The VM no longer exists.")
        source: str = task.params["source_host_id"]
        if step == "reserve":
            if task.params.get("reserved"):
                return
            with ctx.db.session() as s:
                chosen = self._reserve(s, vm, source, task.params.get("target_host_id"))
            _save_params(ctx, task, target_host_id=chosen, reserved=True)
            return
        target: str = task.params["target_host_id"]
        if step == "prepare_target":
            with ctx.db.session() as s:
                payload = spec_payload(s, vm)
            answer = await hostops.call(ctx, target, task, "migrate_receive", vm.id, payload)
            _save_params(ctx, task, migration_target=answer)
        elif step == "transfer":
            stats = await hostops.call(
                ctx, source, task, "migrate_send", vm.id, {"target": task.params["migration_target"]}, 1800
            )
            _save_params(ctx, task, stats=stats)
        elif step == "start_target":
            await hostops.call(ctx, target, task, "migrate_finish", vm.id)
        elif step == "switch":
            with ctx.db.session() as s:
                row = s.get(VM, vm.id)
                assert row is not None
                if row.host_id != target:
                    # the reservation becomes the VM's allocation (the move re-counts it)
                    unreserve(s, target, row.vcpus, row.ram_mb)
                    row.host_id = target
                    row.task_state = None
                    record_state(s, row, "running")
                    events.publish(
                        s,
                        "vm.migrated",
                        "vm",
                        row.id,
                        tenant_id=row.tenant_id,
                        project_id=row.project_id,
                        source=source,
                        target=target,
                        **task.params.get("stats", {}),
                    )
        elif step == "cleanup_source":
            await hostops.call(ctx, source, task, "destroy", vm.id, timeout_s=120)

    def _reserve(self, s: Session, vm: VM, source: str, target: str | None) -> str:
        if target is not None:
            if target == source:
                raise StepFailed("The VM already runs on that host.")
            if not try_claim(s, target, vm.vcpus, vm.ram_mb):
                host = s.get(Host, target)
                name = host.name if host else target
                raise StepFailed(
                    f"Host {name} is down, in maintenance, or lacks room for {vm.vcpus} vCPU/{vm.ram_mb} MiB."
                )
            return target
        try:
            return reserve_elsewhere(s, vm).id
        except NoValidHost as exc:
            raise StepFailed(f"No other host can take this VM: {exc}") from exc

    async def on_success(self, ctx: Context, task: Task) -> None:
        ctx.metrics.forget(task.resource_id)
        with ctx.db.session() as s:
            row = s.get(Task, task.id)
            if row is not None:
                # total time, downtime and bytes, as QEMU measured them
                row.result = {**task.params.get("stats", {}), "target_host_id": task.params["target_host_id"]}

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        """Before the switch: the VM stays (or runs again) at the source; the destination goes."""
        source, target = task.params["source_host_id"], task.params.get("target_host_id")
        with ctx.db.session() as s:
            vm = s.get(VM, task.resource_id)
            switched = vm is not None and vm.host_id == target
        if switched or vm is None:
            end_operation(ctx, task.resource_id)
            return
        if target is not None and task.params.get("migration_target"):
            with contextlib.suppress(StepFailed):
                await hostops.call(ctx, target, task, "destroy", vm.id, timeout_s=120)
        with contextlib.suppress(StepFailed):
            state = (await hostops.call(ctx, source, task, "observe", vm.id, timeout_s=30))["power_state"]
            if state == "paused" and task.params.get("was") == "running":
                await hostops.call(ctx, source, task, "resume", vm.id, timeout_s=30)
        if target is not None and task.params.get("reserved"):
            with ctx.db.session() as s:
                row = s.get(VM, task.resource_id)
                if row is not None:
                    unreserve(s, target, row.vcpus, row.ram_mb)
        end_operation(ctx, task.resource_id)

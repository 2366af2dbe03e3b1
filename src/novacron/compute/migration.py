"""Moving a VM to another host, as a durable task: live (running VM) or cold (stopped VM).

Both reserve the destination's resources first (a conditional UPDATE on its counters, like any
claim) and ask the destination whether it reaches the VM's disk on shared storage (``storage``
"auto" picks shared then, local otherwise; "shared" and "local" insist).

Live: the destination QEMU waits for the state (its new overlay exported over NBD in local mode),
the source mirrors the disk (local mode) and migrates RAM with the requested downtime limit,
bandwidth and auto-converge, reporting progress every second; the destination runs the guest,
and only then does the VM row move and the source instance go. Cold: the stopped VM's overlay is
copied from host to host (nothing to copy on shared storage) and the row moves; the VM stays
stopped and boots on the destination at its next start.

Any failure or cancel before the switch destroys the half-built destination, returns the
reservation, and leaves the VM as it was at the source.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import select

from novacron import events
from novacron.agent.protocol import (
    Destroy,
    MigrateDropVolumes,
    MigrateFetchDisk,
    MigrateFinish,
    MigrateForget,
    MigrateReceive,
    MigrateSend,
    MigrateServeDisk,
    MigrateSourceDisk,
    MigrateStorage,
    Observe,
    PowerOff,
    Prepare,
    Request,
    Resume,
    vm_spec,
)
from novacron.compute import hostops, volmove
from novacron.compute.placement import NoValidHost
from novacron.compute.placement.claims import reserve_elsewhere, try_claim, unreserve
from novacron.compute.reports import record_state
from novacron.compute.spec import spec_payload
from novacron.compute.tasks import end_operation
from novacron.db.base import utcnow
from novacron.db.models import VM, Host, Task, VmSnapshot
from novacron.network.sync import push, syncing_vm, vm_has_ports
from novacron.network.wire import from_dict
from novacron.tasks.runner import StepFailed, TaskHandler
from novacron.virt.base import DiskSource
from novacron.virt.migration import MigrationSettings, MigrationTarget

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from novacron.context import Context

STORAGE_MODES = ("auto", "local", "shared")
#: one megabit per second in bytes per second (QEMU's max-bandwidth unit)
MBPS = 125_000
#: the pause allowed for the final copy when the request names none. QEMU's own default (300 ms)
#: let an idle guest pause 80-190 ms on a loaded host (docs/benchmarks.md); 30 ms keeps it under
#: the 50 ms goal. A guest dirtying RAM faster than the link carries may then not converge: ask for
#: a larger limit or auto_converge (or cancel the task).
DEFAULT_MAX_DOWNTIME_MS = 30


def _refuse_local_with_snapshots(ctx: Context, vm: VM) -> None:
    """A disk copied to another host's local storage carries its current content only: the VM's
    snapshots (qcow2 internal snapshots, virt/snapshots.py) would be lost without a word."""
    with ctx.db.session() as s:
        names = list(s.scalars(select(VmSnapshot.name).where(VmSnapshot.vm_id == vm.id)))
    if names:
        raise StepFailed(
            f"VM '{vm.name}' has {len(names)} snapshot(s) ({', '.join(names[:5])}) that a copy of its disk "
            "to another host's local storage would lose: delete them first "
            f"(novacron vm snapshot-delete {vm.name} NAME), or move it between hosts sharing its storage."
        )


def _save_params(ctx: Context, task: Task, **values: Any) -> None:
    with ctx.db.session() as s:
        row = s.get(Task, task.id)
        assert row is not None
        row.params = {**row.params, **values}
        task.params = row.params


def qemu_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The request's options as ``virt.migration.MigrationSettings`` fields."""
    mbps = options.get("max_bandwidth_mbps")
    return {
        "max_downtime_ms": options.get("max_downtime_ms") or DEFAULT_MAX_DOWNTIME_MS,
        "max_bandwidth_bps": int(mbps) * MBPS if mbps else None,
        "auto_converge": bool(options.get("auto_converge", False)),
    }


class _Move(TaskHandler):
    """What live and cold migration share: the reservation, the storage choice, the switch."""

    kind: ClassVar[str] = ""

    def _vm(self, ctx: Context, task: Task) -> VM:
        with ctx.db.session() as s:
            vm = s.get(VM, task.resource_id)
            if vm is None:
                raise StepFailed("The VM no longer exists.")
            return vm

    def _reserve(self, ctx: Context, task: Task, vm: VM) -> None:
        if task.params.get("reserved"):
            return
        source, target = task.params["source_host_id"], task.params.get("target_host_id")
        with ctx.db.session() as s:
            chosen = self._claim(s, vm, source, target)
        _save_params(ctx, task, target_host_id=chosen, reserved=True)

    def _claim(self, s: Session, vm: VM, source: str, target: str | None) -> str:
        if target is not None:
            if target == source:
                raise StepFailed("The VM already is on that host.")
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

    async def _choose_storage(self, ctx: Context, task: Task, vm: VM) -> str:
        """Ask the destination whether it reaches the source's disk on shared storage."""
        source, target = task.params["source_host_id"], task.params["target_host_id"]
        with ctx.db.session() as s:
            files = volmove.files(s, vm.id)
        where = await hostops.call(ctx, source, task, MigrateSourceDisk(files), vm.id, timeout_s=60)
        requested = task.params.get("options", {}).get("storage", "auto")
        answer = await hostops.call(ctx, target, task, MigrateStorage(requested, where), vm.id, 60)
        chosen = str(answer["storage"])
        if chosen == "local":
            _refuse_local_with_snapshots(ctx, vm)
            if where.get("snapshot_base"):  # virt/snapclone.py: the base is on the source host only
                raise StepFailed(
                    f"VM '{vm.name}' is a linked clone of a snapshot whose base disk stays on this host: "
                    "move it between hosts sharing its storage, or make a full clone of it and move that."
                )
        with ctx.db.session() as s:  # and, volume by volume, whether it reaches each one
            copies, sources = volmove.plan(s, vm.id, where, answer.get("volumes", {}))
        _save_params(ctx, task, storage=chosen, copy_volumes=copies, volume_sources=sources)
        return chosen

    def _switch(self, ctx: Context, task: Task, vm_id: str, state: str | None) -> None:
        source, target = task.params["source_host_id"], task.params["target_host_id"]
        with ctx.db.session() as s:
            row = s.get(VM, vm_id)
            assert row is not None
            if row.host_id == target:
                return
            # the reservation becomes the VM's allocation (the move re-counts it)
            unreserve(s, target, row.vcpus, row.ram_mb)
            with syncing_vm(s, row):  # its ports (and the rules naming it) follow it
                row.host_id = target
            row.moved_at = utcnow()
            row.task_state = None
            volmove.follow(s, task.params.get("migration_target", {}).get("volumes", {}), target)
            if state is not None:
                record_state(s, row, state)
                # what the switch recorded is newer than any report the target took before it (its
                # QEMU still paused for the incoming stream): apply_report lets such a report stand
                # only if it was observed after the state last changed
                row.state_changed_at = row.moved_at
            events.publish(
                s,
                "vm.migrated",
                "vm",
                row.id,
                tenant_id=row.tenant_id,
                project_id=row.project_id,
                source=source,
                target=target,
                **{
                    "live": state is not None,
                    "storage": task.params.get("storage"),
                    **task.params.get("stats", {}),
                },
            )

    def _release_op(self, task: Task) -> Request:
        """A disk on shared storage stays when an instance leaves a host; a local one goes."""
        return MigrateForget() if task.params.get("storage") == "shared" else Destroy()

    async def _drop_volumes(self, ctx: Context, task: Task, host: str, paths: list[str]) -> None:
        """Remove the copies of volumes left behind on ``host`` (the source's, or a half-copy)."""
        if paths:
            await hostops.call(ctx, host, task, MigrateDropVolumes(tuple(paths)), task.resource_id, 60)

    async def on_success(self, ctx: Context, task: Task) -> None:
        ctx.live_samples.forget(task.resource_id)
        with ctx.db.session() as s:
            row = s.get(Task, task.id)
            if row is not None:
                row.result = {
                    **task.params.get("stats", {}),
                    "storage": task.params.get("storage"),
                    "target_host_id": task.params["target_host_id"],
                    # the attached volumes copied to the destination (the others were reached there)
                    "volumes_copied": sorted(task.params.get("copy_volumes", {})),
                }

    async def _rollback(self, ctx: Context, task: Task, target_touched: bool) -> bool:
        """Destroy the destination's instance and return the reservation; False when already switched."""
        target = task.params.get("target_host_id")
        with ctx.db.session() as s:
            vm = s.get(VM, task.resource_id)
            if vm is None or vm.host_id == target:
                end_operation(ctx, task.resource_id)
                return False
            vcpus, ram_mb = vm.vcpus, vm.ram_mb
        if target is not None and target_touched:
            with contextlib.suppress(StepFailed):
                await hostops.call(ctx, target, task, self._release_op(task), task.resource_id, timeout_s=120)
                moved = task.params.get("migration_target", {}).get("volumes", {})
                await self._drop_volumes(ctx, task, target, list(moved.values()))
        if target is not None and task.params.get("reserved"):
            with ctx.db.session() as s:
                unreserve(s, target, vcpus, ram_mb)
        return True


class MigrateVM(_Move):
    kind = "vm.migrate"
    steps: ClassVar[list[str]] = [
        "reserve",
        "prepare_target",
        "transfer",
        "start_target",
        "switch",
        "cleanup_source",
    ]
    #: once the state has moved, the move goes on (on shared storage the destination owns the disk)
    cancellable_steps = frozenset({"reserve", "prepare_target", "transfer"})

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        vm = self._vm(ctx, task)
        if step == "reserve":
            self._reserve(ctx, task, vm)
            return
        source, target = task.params["source_host_id"], task.params["target_host_id"]
        if step == "prepare_target":
            storage = await self._choose_storage(ctx, task, vm)
            with ctx.db.session() as s:
                if vm_has_ports(s, vm.id):  # the destination has the VM's ports before it lands
                    push(s, [target], moving={vm.id: target})
                receive = MigrateReceive(vm_spec(spec_payload(s, vm)), storage, task.params["copy_volumes"])
            answer = await hostops.call(ctx, target, task, receive, vm.id)
            _save_params(ctx, task, migration_target=answer)
        elif step == "transfer":
            send = MigrateSend(
                MigrationTarget(**task.params["migration_target"]),
                MigrationSettings(**qemu_settings(task.params.get("options", {}))),
            )
            stats = await hostops.call(ctx, source, task, send, vm.id, 4 * 3600)
            _save_params(ctx, task, stats=stats)
        elif step == "start_target":
            finish = MigrateFinish(task.params.get("storage", "local"))
            answer = await hostops.call(ctx, target, task, finish, vm.id)
            stats = dict(task.params["stats"])
            # the pause the guest saw: source stopped -> destination running (the two hosts' clocks)
            stats["guest_pause_ms"] = round((float(answer["resumed_at"]) - float(stats["stopped_at"])) * 1000)
            _save_params(ctx, task, stats=stats)
        elif step == "switch":
            self._switch(ctx, task, vm.id, "running")
        elif step == "cleanup_source":
            await hostops.call(ctx, source, task, self._release_op(task), vm.id, timeout_s=120)
            await self._drop_volumes(ctx, task, source, list(task.params.get("volume_sources", {}).values()))

    async def _ran_at_target(self, ctx: Context, task: Task) -> bool:
        """On shared storage: may the destination have run the guest on the disk? It runs it by
        itself once the state is in, so from the transfer on, unless it says it is still paused."""
        if task.params.get("storage") != "shared" or task.step_index < self.steps.index("transfer"):
            return False
        if task.step_index >= self.steps.index("start_target"):
            return True
        try:
            observed = await hostops.call(
                ctx, task.params["target_host_id"], task, Observe(), task.resource_id, timeout_s=30
            )
        except StepFailed:
            return True  # cannot tell: never resume the source over a disk the destination wrote
        # still waiting for its state (paused), or gone with a failed transfer (absent)
        return observed["power_state"] not in ("paused", "absent")

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        """Before the switch: the VM stays (or runs again) at the source; the destination goes."""
        ran_at_target = await self._ran_at_target(ctx, task)
        if not await self._rollback(ctx, task, bool(task.params.get("migration_target"))):
            return
        source = task.params["source_host_id"]
        if ran_at_target:
            # the destination may have run the guest on the shared disk: the source's older state
            # resumed over it would corrupt it. Neither runs; the VM boots again from its disk.
            with contextlib.suppress(StepFailed):
                await hostops.call(ctx, source, task, PowerOff(), task.resource_id, timeout_s=60)
            reason = f"The migration failed after the guest's state had moved ({error}); start the VM again."
            end_operation(ctx, task.resource_id, "stopped", reason)
            return
        with contextlib.suppress(StepFailed):
            state = (await hostops.call(ctx, source, task, Observe(), task.resource_id, timeout_s=30))[
                "power_state"
            ]
            # after a completed transfer the source is paused ("postmigrate"): it runs again
            if state == "paused" and task.params.get("was") == "running":
                await hostops.call(ctx, source, task, Resume(), task.resource_id, timeout_s=30)
        end_operation(ctx, task.resource_id)


class ColdMigrateVM(_Move):
    kind = "vm.cold_migrate"
    steps: ClassVar[list[str]] = ["reserve", "copy_disk", "switch", "cleanup_source"]
    cancellable_steps = frozenset({"reserve", "copy_disk"})

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        vm = self._vm(ctx, task)
        if step == "reserve":
            self._reserve(ctx, task, vm)
            return
        source, target = task.params["source_host_id"], task.params["target_host_id"]
        if step == "copy_disk":
            with ctx.db.session() as s:
                spec = vm_spec(spec_payload(s, vm))
            storage = await self._choose_storage(ctx, task, vm)
            # the volumes the destination does not reach follow the disk (id order on both ends)
            ids = tuple(sorted(task.params.get("copy_volumes", {})))
            paths = tuple(task.params["volume_sources"][v] for v in ids)
            if storage == "shared" and not ids:
                # nothing to copy; the destination takes the instance now (its dir and seed, the
                # disk backed by its own image copy), so its reports show the VM there, stopped
                await hostops.call(ctx, target, task, Prepare(spec), vm.id, timeout_s=300)
                return
            # on shared storage the disk stays where both hosts see it: only the volumes move
            serve = MigrateServeDisk(paths, disk=storage != "shared")
            served = await hostops.call(ctx, source, task, serve, vm.id, timeout_s=60)
            _save_params(ctx, task, copying=True)
            fetch = MigrateFetchDisk(spec, from_dict(DiskSource, served), ids)
            moved = await hostops.call(ctx, target, task, fetch, vm.id, 4 * 3600)
            _save_params(ctx, task, migration_target={"volumes": dict(moved or {})})
        elif step == "switch":
            self._switch(ctx, task, vm.id, None)
        elif step == "cleanup_source":
            await hostops.call(ctx, source, task, self._release_op(task), vm.id, timeout_s=120)
            await self._drop_volumes(ctx, task, source, list(task.params.get("volume_sources", {}).values()))

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        if await self._rollback(ctx, task, bool(task.params.get("copying"))):
            end_operation(ctx, task.resource_id)

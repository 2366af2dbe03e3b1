"""Failover of a runbook's VMs to the recovery host group from the replicated store, and fail-back.

``dr.failover``: for each step in order, the VM's newest good *replicated* snapshot is restored from
the replica target into a new VM placed in the runbook's ``recovery_group`` (an aggregate), its NICs
on the mapped networks; the original VM is shut down first when its host still answers (no two
copies writing). Before/after hooks run around each step and a health check ends it. The runbook is
then ``failed-over`` and remembers which VM stands in for which.

``dr.dry_run``: the same restore into the recovery group, but the VMs get the runbook's test network
or no NIC, the originals are not touched, and everything made is removed at the end; the measured
RTO is kept as the runbook's ``last_test`` (a miss raises ``dr.rto_missed``).

``dr.failback``: each recovered VM is shut down and backed up at the recovery site (to the replica
target) with its attached volumes, that backup is restored over the original VM in its own group
(each volume over the original volume it was recovered from, or into a new one when that is gone:
``volrestore.home_volumes``), which boots and passes its health check; the recovered VMs are
removed with their volumes and the runbook is ``failed-back``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import or_, select

from novacron import events
from novacron.agent.protocol import BackupDisk, Launch, PowerOff, Prepare, RestoreDisk, Shutdown, vm_spec
from novacron.backup import drsteps, service, volrestore
from novacron.backup.drwatch import newest_replicated
from novacron.backup.tasks import attached_volumes, record_backup, restore_new_vm, secrets_for, set_result
from novacron.compute import hostops
from novacron.compute.spec import spec_payload
from novacron.compute.tasks import end_operation, remove_vm
from novacron.db.base import new_id, utcnow
from novacron.db.models import VM, BackupSnapshot, BackupTarget, DRRunbook, Host, Task
from novacron.errors import DomainError
from novacron.identity.encryption import encryption_for
from novacron.netguard import EgressPolicy
from novacron.tasks.runner import StepFailed, TaskHandler

if TYPE_CHECKING:
    from novacron.context import Context

SHUTDOWN_S = 60.0
StepWork = Callable[[int, dict[str, Any]], Awaitable[dict[str, Any]]]


def _runbook(session: Any, task: Task) -> DRRunbook:
    runbook: DRRunbook | None = session.get(DRRunbook, task.resource_id)
    if runbook is None:
        raise StepFailed("The runbook no longer exists.")
    return runbook


def _save(ctx: Context, task: Task, progress: int | None = None, **params: Any) -> None:
    """Keep what a step did in the task (a step run again after a crash skips what is done)."""
    with ctx.db.session() as s:
        row = s.get(Task, task.id)
        assert row is not None
        row.params = {**row.params, **params}
        if progress is not None:
            row.progress = max(row.progress, progress)
        task.params = row.params


def _env(runbook_name: str, phase: str, n: int, item: dict[str, Any]) -> dict[str, str]:
    return {
        "NOVACRON_RUNBOOK": runbook_name, "NOVACRON_PHASE": phase, "NOVACRON_STEP": str(n + 1),
        "NOVACRON_VM": str(item["vm"]), "NOVACRON_VM_ID": str(item.get("vm_id") or ""),
    }  # fmt: skip


async def _hooks(ctx: Context, task: Task, item: dict[str, Any], n: int, when: str) -> list[dict[str, Any]]:
    env, policy = _env(task.params["runbook"], task.kind, n, item), EgressPolicy.from_settings(ctx.settings)
    enc, aad = encryption_for(ctx.settings), drsteps.hook_url_aad(task.resource_id)
    results = await drsteps.run_hooks(item["hooks"], when, env, policy, lambda url: enc.open_text(url, aad))
    log = [*task.params.get("hook_log", []), *({"step": n + 1, "vm": item["vm"], **r} for r in results)]
    _save(ctx, task, hook_log=log)
    if (bad := drsteps.failed_hook(results)) is not None:
        raise StepFailed(f"step {n + 1} ({item['vm']}): {when} hook failed: {bad['output'][-300:]}")
    return results


async def _run_steps(ctx: Context, task: Task, start: int, span: int, work: StepWork) -> None:
    """The plan's steps not done yet, in order, each between its before and after hooks: `work` brings
    the VM back and returns its own fields of the step's result; progress goes from start over span."""
    done = {r["step"] for r in task.params.get("results", [])}
    plan = task.params["plan"]
    for n, item in enumerate(plan):
        if n + 1 in done:
            continue
        # in order: the next VM starts once this one is healthy (a database before its app servers)
        before = await _hooks(ctx, task, item, n, "before")
        fields = await work(n, item)
        after = await _hooks(ctx, task, item, n, "after")
        result = {
            "step": n + 1, "vm": item["vm"], **fields, "hooks": [*before, *after],
            "up_after_s": round(time.time() - float(task.params["t0"]), 1),
        }  # fmt: skip
        results = [*task.params.get("results", []), result]
        _save(ctx, task, progress=int(start + span * len(results) / len(plan)), results=results)


async def _shutdown(ctx: Context, task: Task, vm_id: str, key: str) -> str:
    """Stop a VM (ACPI, then power off); what it is now: stopped, or unreachable (a host that is down)."""
    with ctx.db.session() as s:
        vm = s.get(VM, vm_id)
        if vm is None or vm.host_id is None:
            return "absent"
        vm.desired_state, host_id = "stopped", vm.host_id
    try:
        clean = await hostops.call(
            ctx, host_id, task, Shutdown(SHUTDOWN_S), vm_id, SHUTDOWN_S + 30, f"s{key}"
        )
        if not clean.get("clean"):
            await hostops.call(ctx, host_id, task, PowerOff(), vm_id, 60, f"o{key}")
    except StepFailed as exc:
        return f"unreachable: {exc}"
    end_operation(ctx, vm_id, "stopped")
    return "stopped"


class _Recover(TaskHandler):
    """Restore a runbook's VMs into the recovery group, in order (failover and dry run)."""

    dry_run: ClassVar[bool]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        if step == "prepare":
            self._prepare(ctx, task)
        elif step == "recover":
            await self._recover(ctx, task)
        elif step == "cleanup":
            for n, item in enumerate(task.params["plan"]):
                await remove_vm(ctx, task, item["vm_id"], str(n))
                volrestore.release(ctx, item.get("volumes") or [])  # a dry run's volumes go too
        else:
            self._report(ctx, task)

    def _prepare(self, ctx: Context, task: Task) -> None:
        if task.params.get("plan"):
            return
        with ctx.db.session() as s:
            runbook = _runbook(s, task)
            if runbook.recovery_group is None:
                raise StepFailed("The runbook names no recovery_group (the host group to fail over to).")
            if not self.dry_run and runbook.state == "failed-over":
                raise StepFailed("The runbook is already failed over; fail it back first.")
            plan = []
            for n, step in enumerate(runbook.steps):
                snap = newest_replicated(s, runbook.project_id, step["vm"])
                if snap is None or snap.replica_target_id is None:
                    raise StepFailed(
                        f"Step {n + 1}: VM '{step['vm']}' has no replicated backup at the recovery site."
                    )
                source = s.scalar(
                    select(VM).where(
                        VM.project_id == runbook.project_id, or_(VM.id == step["vm"], VM.name == step["vm"])
                    )
                )
                suffix = f"drtest-{task.id[-6:]}" if self.dry_run else "dr"
                name = (None if self.dry_run else step.get("name")) or f"{snap.vm_name}-{suffix}"
                try:
                    vm = service.new_vm_row(s, snap, name, f"steps.{n}.name")
                except DomainError as exc:
                    raise StepFailed(f"Step {n + 1}: {exc.detail}") from exc
                volumes = volrestore.new_volumes(s, snap, vm, None)  # its backed-up volumes
                vm.placement = {"aggregate": runbook.recovery_group}
                vm.meta = {**vm.meta, "dr_runbook": runbook.id, "dr_task": task.id}
                networks = drsteps.map_ports(
                    s, runbook.tenant_id, vm, source, runbook.network_map, runbook.test_network, self.dry_run
                )
                health = step.get("health") or (
                    {"kind": "console", "marker": step["wait_for"]} if step.get("wait_for") else {}
                )
                plan.append(
                    {"vm": step["vm"], "source_vm_id": source.id if source else None, "backup_id": snap.id,
                     "target_id": snap.replica_target_id, "vm_id": vm.id, "volumes": volumes,
                     "name": name, "networks": networks,
                     "health": health, "hooks": step.get("hooks", []),
                     "rpo_s": round((utcnow() - snap.completed_at).total_seconds(), 1)
                     if snap.completed_at else None}
                )  # fmt: skip
            runbook_name = runbook.name
        _save(ctx, task, plan=plan, runbook=runbook_name, t0=time.time(), started_at=utcnow().isoformat())

    async def _recover(self, ctx: Context, task: Task) -> None:
        async def recover(n: int, item: dict[str, Any]) -> dict[str, Any]:
            source_state = None
            if not self.dry_run and item["source_vm_id"]:
                source_state = await _shutdown(ctx, task, item["source_vm_id"], str(n))
                if source_state == "stopped":  # known at once: a later failure of this step restarts it
                    _save(ctx, task, stopped=[*task.params.get("stopped", []), item["source_vm_id"]])
            restored = await restore_new_vm(
                ctx, task, item["backup_id"], item["vm_id"], None, key=str(n), target_id=item["target_id"],
                volumes=item.get("volumes") or [],
            )  # fmt: skip
            with ctx.db.session() as s:
                vm = s.get(VM, item["vm_id"])
                assert vm is not None and vm.host_id is not None
                host_id = vm.host_id
                host_row = s.get(Host, host_id)
                host = host_row.name if host_row is not None else host_id
            health = await drsteps.check_health(ctx, task, host_id, item["vm_id"], item["health"], str(n))
            return {
                "vm_id": item["vm_id"], "name": item["name"], "host": host, "backup_id": item["backup_id"],
                "source": source_state, "health": health, "restore_s": restored["restore_s"],
                "rpo_s": item["rpo_s"],
            }  # fmt: skip

        await _run_steps(ctx, task, 20, 60, recover)

    def _report(self, ctx: Context, task: Task) -> None:
        rto = round(time.time() - float(task.params["t0"]), 1)
        with ctx.db.session() as s:
            runbook = _runbook(s, task)
            report = {
                "task_id": task.id, "dry_run": self.dry_run, "started_at": task.params["started_at"],
                "rto_s": rto, "rto_target_s": runbook.rto_target_s, "rto_met": rto <= runbook.rto_target_s,
                "steps": task.params["results"], "ok": True,
            }  # fmt: skip
            common = {"tenant_id": runbook.tenant_id, "project_id": runbook.project_id}
            if self.dry_run:
                runbook.last_test = report
                events.publish(s, "dr.dry_run_passed", "dr-runbook", runbook.id, **common, rto_s=rto)
                if not report["rto_met"]:
                    events.publish(
                        s, "dr.rto_missed", "dr-runbook", runbook.id, **common, rto_s=rto,
                        rto_target_s=runbook.rto_target_s, runbook=runbook.name,
                    )  # fmt: skip
            else:
                runbook.state, runbook.state_changed_at = "failed-over", utcnow()
                runbook.failover = [
                    {"vm": r["vm"], "vm_id": i["source_vm_id"], "recovered_vm_id": r["vm_id"],
                     "name": r["name"], "backup_id": r["backup_id"], "target_id": i["target_id"]}
                    for r, i in zip(task.params["results"], task.params["plan"], strict=True)
                ]  # fmt: skip
                events.publish(s, "dr.failed_over", "dr-runbook", runbook.id, **common, rto_s=rto)
        set_result(ctx, task, report)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        """Remove what the run made; a failed failover starts the originals it had stopped again."""
        plan = task.params.get("plan") or []
        for n, item in enumerate(plan):
            with contextlib.suppress(Exception):
                await remove_vm(ctx, task, item["vm_id"], f"x{n}")
            with contextlib.suppress(Exception):
                volrestore.release(ctx, item.get("volumes") or [])
        restarted = []
        with ctx.db.session() as s:
            if not self.dry_run:
                from novacron.compute.vms import request_action

                for vm_id in task.params.get("stopped", []):
                    vm = s.get(VM, vm_id)
                    if vm is not None and vm.task_state is None:
                        request_action(s, vm, "start", {})
                        restarted.append(vm.name)
            runbook = s.get(DRRunbook, task.resource_id)
            if runbook is not None:
                events.publish(
                    s, "dr.run_failed", "dr-runbook", runbook.id, tenant_id=runbook.tenant_id,
                    project_id=runbook.project_id, kind=task.kind, error=error, restarted=restarted,
                )  # fmt: skip
                if self.dry_run:
                    runbook.last_test = {"task_id": task.id, "ok": False, "error": error}
        if restarted and ctx.tasks is not None:
            ctx.tasks.wake()
        set_result(ctx, task, {"ok": False, "error": error, "steps": task.params.get("results", [])})


class DRFailover(_Recover):
    kind = "dr.failover"
    dry_run = False
    steps: ClassVar[list[str]] = ["prepare", "recover", "report"]


class DRDryRun(_Recover):
    kind = "dr.dry_run"
    dry_run = True
    steps: ClassVar[list[str]] = ["prepare", "recover", "cleanup", "report"]


class DRFailback(TaskHandler):
    """Back the recovered VMs up at the recovery site and restore that over the originals."""

    kind = "dr.failback"
    steps: ClassVar[list[str]] = ["prepare", "backup", "restore", "report"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        if step == "prepare":
            self._prepare(ctx, task)
        elif step == "backup":
            await self._backup(ctx, task)
        elif step == "restore":
            await self._restore(ctx, task)
        else:
            await self._report(ctx, task)

    def _prepare(self, ctx: Context, task: Task) -> None:
        if task.params.get("plan"):
            return
        with ctx.db.session() as s:
            runbook = _runbook(s, task)
            if runbook.state != "failed-over" or not runbook.failover:
                raise StepFailed(f"The runbook is {runbook.state}, not failed over: nothing to fail back.")
            hooks = {st["vm"]: st.get("hooks", []) for st in runbook.steps}
            health = {st["vm"]: st.get("health") or (
                {"kind": "console", "marker": st["wait_for"]} if st.get("wait_for") else {}
            ) for st in runbook.steps}  # fmt: skip
            plan = []
            for n, entry in enumerate(runbook.failover):
                original = s.get(VM, entry["vm_id"]) if entry.get("vm_id") else None
                recovered = s.get(VM, entry["recovered_vm_id"])
                if original is None or recovered is None:
                    missing = "original" if original is None else "recovered"
                    raise StepFailed(f"Step {n + 1}: the {missing} VM of '{entry['vm']}' is gone.")
                used = s.get(BackupSnapshot, entry["backup_id"])
                snap = BackupSnapshot(
                    id=new_id("bk"), tenant_id=recovered.tenant_id, project_id=recovered.project_id,
                    vm_id=recovered.id, vm_name=recovered.name, target_id=entry["target_id"], state="running",
                    source=dict(used.source) if used is not None else {}, task_id=task.id,
                )  # fmt: skip
                s.add(snap)
                plan.append(
                    {"vm": entry["vm"], "vm_id": original.id, "recovered_vm_id": recovered.id,
                     "snapshot_id": snap.id, "target_id": entry["target_id"],
                     "volumes": volrestore.home_volumes(s, recovered.id, original),
                     "hooks": hooks.get(entry["vm"], []), "health": health.get(entry["vm"], {})}
                )  # fmt: skip
            runbook_name = runbook.name
        _save(ctx, task, plan=plan, runbook=runbook_name, t0=time.time())

    async def _backup(self, ctx: Context, task: Task) -> None:
        done = set(task.params.get("backed_up", []))
        for n, item in enumerate(task.params["plan"]):
            if item["snapshot_id"] in done:
                continue
            await _shutdown(ctx, task, item["recovered_vm_id"], str(n))  # its last changes are on disk
            with ctx.db.session() as s:
                vm = s.get(VM, item["recovered_vm_id"])
                target = s.get(BackupTarget, item["target_id"])
                if vm is None or vm.host_id is None or target is None:
                    raise StepFailed(f"Step {n + 1}: the recovered VM or the recovery-site target is gone.")
            backup = BackupDisk(  # the volumes with the root disk, at the same point in time
                item["snapshot_id"], secrets_for(ctx, target, vm.tenant_id), parent_id=None, full=True,
                volumes=attached_volumes(ctx, vm.id),
            )  # fmt: skip
            started = time.monotonic()
            result = await hostops.call(ctx, vm.host_id, task, backup, vm.id, 6 * 3600.0, f"b{n}")
            record_backup(ctx, item["snapshot_id"], target, vm.name, result, time.monotonic() - started)
            done.add(item["snapshot_id"])
            progress = int(10 + 40 * len(done) / len(task.params["plan"]))
            _save(ctx, task, progress=progress, backed_up=sorted(done))

    async def _restore(self, ctx: Context, task: Task) -> None:
        async def restore(n: int, item: dict[str, Any]) -> dict[str, Any]:
            await _shutdown(ctx, task, item["vm_id"], f"r{n}")  # normally already stopped by the failover
            with ctx.db.session() as s:
                vm = s.get(VM, item["vm_id"])
                target = s.get(BackupTarget, item["target_id"])
                snap = s.get(BackupSnapshot, item["snapshot_id"])
                if vm is None or vm.host_id is None or target is None or snap is None:
                    raise StepFailed(f"Step {n + 1}: the original VM, its host or the backup is gone.")
                vm.task_state, vm.desired_state = "restoring", "running"
                host_id, names = vm.host_id, [str(d.get("name")) for d in snap.disks or [{"name": "vda"}]]
            # volumes made for the original (its own one is gone) get their files and are attached
            await volrestore.allocate(ctx, [m for m in item.get("volumes") or [] if m["kind"] == "new"])
            attached = {v.volume_id: v for v in attached_volumes(ctx, vm.id)}
            pairs = [
                m for m in item.get("volumes") or [] if m["volume_id"] in attached and m["source"] in names
            ]
            restore_disk = RestoreDisk(
                snap.id, snap.size_bytes, secrets_for(ctx, target, snap.tenant_id),
                volumes=tuple(attached[m["volume_id"]] for m in pairs),
                sources=tuple(m["source"] for m in pairs), root="vda" in names,
            )  # fmt: skip
            await hostops.call(ctx, host_id, task, restore_disk, vm.id, 6 * 3600.0, f"r{n}")
            with ctx.db.session() as s:
                row = s.get(VM, vm.id)
                assert row is not None
                try:
                    spec = vm_spec(spec_payload(s, row))  # with the volumes now attached
                except ValueError as exc:
                    raise StepFailed(str(exc)) from exc
            await hostops.call(ctx, host_id, task, Prepare(spec), vm.id, 300, f"r{n}")
            # the original booted before: only what its console prints from now on counts
            since = await asyncio.to_thread(drsteps.console_end, ctx, host_id, vm.id)
            await hostops.call(ctx, host_id, task, Launch(spec), vm.id, 300, f"r{n}")
            health = await drsteps.check_health(ctx, task, host_id, vm.id, item["health"], f"r{n}", since)
            end_operation(ctx, vm.id, "running")
            return {"vm_id": vm.id, "backup_id": snap.id, "health": health, "volumes": len(pairs)}

        await _run_steps(ctx, task, 50, 40, restore)

    async def _report(self, ctx: Context, task: Task) -> None:
        for n, item in enumerate(task.params["plan"]):
            await remove_vm(ctx, task, item["recovered_vm_id"], f"f{n}")
            # the recovered VM's volumes: their bytes are home now, and they go with it
            volrestore.release(ctx, [{"volume_id": m["source"]} for m in item.get("volumes") or []])
        with ctx.db.session() as s:
            runbook = _runbook(s, task)
            runbook.state, runbook.state_changed_at, runbook.failover = "failed-back", utcnow(), None
            duration = round(time.time() - float(task.params["t0"]), 1)
            events.publish(
                s, "dr.failed_back", "dr-runbook", runbook.id, tenant_id=runbook.tenant_id,
                project_id=runbook.project_id, duration_s=duration,
            )  # fmt: skip
        set_result(ctx, task, {"ok": True, "duration_s": duration, "steps": task.params["results"]})

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        """The runbook stays failed over: the recovered VMs of the steps not failed back are started
        again (the backup step stopped them), an original whose restore broke off is left stopped, and
        a half-taken backup is failed."""
        from novacron.compute.vms import request_action

        back = {r["vm_id"] for r in task.params.get("results", [])}
        for item in task.params.get("plan") or []:
            if item["vm_id"] not in back:
                # the volumes made for the original go; its own ones keep what was written
                with contextlib.suppress(Exception):
                    volrestore.release(ctx, [m for m in item.get("volumes") or [] if m["kind"] == "new"])
                end_operation(ctx, item["vm_id"], "stopped")
        with ctx.db.session() as s:
            for item in task.params.get("plan") or []:
                snap = s.get(BackupSnapshot, item["snapshot_id"])
                if snap is not None and snap.state != "available":
                    snap.state, snap.error = "failed", error
                recovered = s.get(VM, item["recovered_vm_id"])
                if item["vm_id"] not in back and recovered is not None and recovered.task_state is None:
                    request_action(s, recovered, "start", {})
            runbook = s.get(DRRunbook, task.resource_id)
            if runbook is not None:
                events.publish(
                    s, "dr.run_failed", "dr-runbook", runbook.id, tenant_id=runbook.tenant_id,
                    project_id=runbook.project_id, kind=task.kind, error=error,
                )  # fmt: skip
        if ctx.tasks is not None:
            ctx.tasks.wake()
        set_result(ctx, task, {"ok": False, "error": error, "steps": task.params.get("results", [])})


HANDLERS: list[TaskHandler] = [DRFailover(), DRDryRun(), DRFailback()]

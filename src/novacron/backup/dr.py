"""Disaster-recovery runbooks: bring a set of VMs back from their backups, in order, and measure it.

A drill (``dr.drill`` task) takes, for each step in order, the newest available backup of the
named VM (the VM itself may be gone: backups are found by the recorded VM id or name), restores
it into a new VM and waits until that VM prints its console marker (or runs). RPO per VM is the
age of that backup when the drill began; RTO is the drill's measured duration. Both are compared
with the runbook's targets; a miss raises a ``dr.target_missed`` event (an alert).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from novacron import events
from novacron.backup import service, volrestore
from novacron.backup.tasks import restore_new_vm, set_result
from novacron.db.base import utcnow
from novacron.db.models import BackupSnapshot, DRRunbook, Task
from novacron.tasks.runner import StepFailed, TaskHandler

if TYPE_CHECKING:
    from novacron.context import Context


def newest_backup(session: Session, runbook: DRRunbook, vm_ref: str) -> BackupSnapshot | None:
    return session.scalar(
        select(BackupSnapshot)
        .where(
            BackupSnapshot.project_id == runbook.project_id,
            BackupSnapshot.state == "available",
            or_(BackupSnapshot.vm_id == vm_ref, BackupSnapshot.vm_name == vm_ref),
        )
        .order_by(BackupSnapshot.completed_at.desc())
        .limit(1)
    )


def rpo_status(session: Session, runbook: DRRunbook) -> list[dict[str, Any]]:
    """Each VM's current RPO: the age of its newest restorable backup, against the target."""
    now = utcnow()
    out = []
    for step in runbook.steps:
        snap = newest_backup(session, runbook, step["vm"])
        target = int(step.get("rpo_target_s") or runbook.rpo_target_s)
        age = (now - snap.completed_at).total_seconds() if snap and snap.completed_at else None
        out.append(
            {
                "vm": step["vm"],
                "backup_id": snap.id if snap else None,
                "rpo_s": round(age, 1) if age is not None else None,
                "rpo_met": age is not None and age <= target,
            }
        )
    return out


class DRDrill(TaskHandler):
    kind = "dr.drill"
    steps: ClassVar[list[str]] = ["prepare", "restore", "report"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        if step == "prepare":
            self._prepare(ctx, task)
        elif step == "restore":
            await self._restore(ctx, task)
        else:
            self._report(ctx, task)

    def _prepare(self, ctx: Context, task: Task) -> None:
        """Choose the backups and make the VM rows, once (the plan is kept in the task's params)."""
        if task.params.get("plan"):
            return
        started = utcnow()
        with ctx.db.session() as s:
            runbook = s.get(DRRunbook, task.resource_id)
            if runbook is None:
                raise StepFailed("The runbook no longer exists.")
            plan = []
            for n, step in enumerate(runbook.steps):
                snap = newest_backup(s, runbook, step["vm"])
                if snap is None:
                    raise StepFailed(f"Step {n + 1}: VM '{step['vm']}' has no available backup to restore.")
                assert snap.completed_at is not None
                name = step.get("name") or f"{snap.vm_name}-dr-{task.id[-6:]}"
                vm = service.new_vm_row(s, snap, name, f"steps.{n}.name")
                plan.append(
                    {
                        "vm": step["vm"],
                        "backup_id": snap.id,
                        "vm_id": vm.id,
                        "volumes": volrestore.new_volumes(s, snap, vm, None),  # its backed-up volumes
                        "name": name,
                        "wait_for": step.get("wait_for"),
                        "rpo_s": round((started - snap.completed_at).total_seconds(), 1),
                    }
                )
            row = s.get(Task, task.id)
            assert row is not None
            row.params = {**row.params, "plan": plan, "started_at": started.isoformat(), "t0": time.time()}
            task.params = row.params

    async def _restore(self, ctx: Context, task: Task) -> None:
        results = []
        for n, item in enumerate(task.params["plan"]):
            # in order: the next VM starts once this one is up (a database before its app servers)
            result = await restore_new_vm(
                ctx, task, item["backup_id"], item["vm_id"], item["wait_for"], key=str(n),
                volumes=item.get("volumes") or [],
            )  # fmt: skip
            results.append({**item, **result, "up_after_s": round(time.time() - float(task.params["t0"]), 1)})
        with ctx.db.session() as s:
            row = s.get(Task, task.id)
            assert row is not None
            row.params = {**row.params, "results": results}
            task.params = row.params

    def _report(self, ctx: Context, task: Task) -> None:
        rto = round(time.time() - float(task.params["t0"]), 1)
        with ctx.db.session() as s:
            runbook = s.get(DRRunbook, task.resource_id)
            if runbook is None:
                raise StepFailed("The runbook no longer exists.")
            vms = [{**r, "rpo_met": r["rpo_s"] <= runbook.rpo_target_s} for r in task.params["results"]]
            drill = {
                "task_id": task.id,
                "started_at": task.params["started_at"],
                "rto_s": rto,
                "rto_target_s": runbook.rto_target_s,
                "rto_met": rto <= runbook.rto_target_s,
                "rpo_target_s": runbook.rpo_target_s,
                "rpo_met": all(v["rpo_met"] for v in vms),
                "vms": vms,
                "ok": True,
            }
            runbook.last_drill, runbook.last_drill_at = drill, utcnow()
            if not (drill["rto_met"] and drill["rpo_met"]):
                events.publish(
                    s,
                    "dr.target_missed",
                    "dr-runbook",
                    runbook.id,
                    tenant_id=runbook.tenant_id,
                    project_id=runbook.project_id,
                    rto_s=rto,
                    rto_met=drill["rto_met"],
                    rpo_met=drill["rpo_met"],
                )
        set_result(ctx, task, drill)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        """A failed drill is recorded as such; the VMs it brought up stay for inspection."""
        with ctx.db.session() as s:
            runbook = s.get(DRRunbook, task.resource_id)
            if runbook is not None:
                runbook.last_drill = {"task_id": task.id, "ok": False, "error": error}
                runbook.last_drill_at = utcnow()
                events.publish(
                    s,
                    "dr.target_missed",
                    "dr-runbook",
                    runbook.id,
                    tenant_id=runbook.tenant_id,
                    project_id=runbook.project_id,
                    error=error,
                )

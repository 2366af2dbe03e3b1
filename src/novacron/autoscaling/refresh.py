"""Rolling instance refresh: ``scalinggroup.refresh`` replaces every member launched from an older
template version, in batches held within ``max_surge`` and ``max_unavailable``.

A template change (``PATCH`` of its fields) raises the group's ``template_version``; members keep
the version they were launched from. A refresh is explicit, as in AWS: ``start_refresh`` (``POST
/v1/scaling-groups/{id}/refresh``) records a ``refresh`` activity and starts the task, which is the
group's one task in flight (``groups.scale_in_flight``): a scale asked for meanwhile (a person, a
policy) changes ``desired`` and is handed to it, each batch is planned from the ``desired`` of
that moment, and a count left off ``desired`` at the end starts a ``converge`` (so does a delete
asked meanwhile: the refresh stops at the next batch and the delete's work follows).

Each batch, re-planned from the rows (a crash resumes at the next batch):

1. launch ``min(still needed, desired + max_surge - VMs)`` replacements from the current template
   and wait until they run and the group's pools report them serving (``join``, as the scale
   task does; one that does not serve within the warm-up stops the refresh: old members stay);
   the group's launching lifecycle hooks answer for them first (a batch whose replacements were
   all abandoned stops the refresh: another would be too);
2. take old members out: those not in service, then the oldest ones while more than ``desired -
   max_unavailable`` members stay in service; they are drained, the terminating hooks answer
   for them, they are deleted, and the batch ends when
   their VMs are gone (so the next launch never exceeds the surge).

Members protected from scale-in are skipped (the activity lists them, as AWS reports them). The
activity's numbers carry ``replaced``, ``remaining`` and each batch's counts; the task's progress
is the share replaced. A cancel (``POST /v1/tasks/{id}/cancel``) stops between steps of a batch;
the converge that follows finishes what the batch had begun.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events
from novacron.autoscaling import members as pool
from novacron.autoscaling.groups import request_scale, scale_in_flight
from novacron.autoscaling.tasks import (
    call_hooks,
    drain,
    joined,
    launch_hooks,
    launch_shortfall,
    note,
    pools_serving,
    task_activity,
    task_group,
    terminated,
    wait_until,
)
from novacron.compute.tasks import BOOT_TIMEOUT_S
from novacron.db.base import new_id, utcnow
from novacron.db.models import VM, ScalingActivity, ScalingGroup, ScalingGroupMember, Task
from novacron.errors import Conflict, InvalidInput
from novacron.tasks.runner import Cancelled, StepFailed, TaskHandler, create_task
from novacron.tasks.service import wake_on_commit

if TYPE_CHECKING:
    from novacron.context import Context

#: a replacement gets at least this long to be reported serving, whatever the warm-up
MIN_SERVE_WAIT_S = 30.0


def start_refresh(  # noqa: PLR0913  (the group, who asks, and the two bounds)
    session: Session, ctx: Context, group: ScalingGroup, who: str, max_surge: int, max_unavailable: int
) -> ScalingActivity:
    """Record the ``refresh`` activity and start the task; a 409 while the group has a task in
    flight, a 422 when the bounds could never let a member be replaced."""
    if group.status != "active":
        raise Conflict(f"Scaling group '{group.name}' is {group.status}.")
    if max_surge == 0 and max_unavailable == 0:
        raise InvalidInput(
            "max_unavailable",
            "with max_surge 0 and max_unavailable 0 no member could ever be replaced: allow one of them",
        )
    running = scale_in_flight(session, group)
    if running is not None:
        what = "a refresh" if running.kind == RefreshGroup.kind else f"a {running.kind} task"
        raise Conflict(f"Scaling group '{group.name}' has {what} in flight ({running.id}); try once it ends.")
    rows = list(session.scalars(select(ScalingGroupMember).where(ScalingGroupMember.group_id == group.id)))
    old = [m for m in rows if m.template_version < group.template_version]
    protected = sorted(m.vm_id for m in old if m.protected_from_scale_in)
    activity = ScalingActivity(
        id=new_id("sact"), group_id=group.id, tenant_id=group.tenant_id, action="refresh",
        reason=f"instance refresh to template version {group.template_version} by {who}",
        numbers={
            "template_version": group.template_version, "max_surge": max_surge,
            "max_unavailable": max_unavailable, "desired": group.desired,
            "to_replace": len(old) - len(protected), "replaced": 0,
            "remaining": len(old) - len(protected), "skipped_protected": protected,
            "launched": [], "to_launch": 0, "batches": [],
        },
    )  # fmt: skip
    session.add(activity)
    task = create_task(
        session, RefreshGroup, "scaling_group", group.id, tenant_id=group.tenant_id,
        project_id=group.project_id, params={"activity_id": activity.id},
    )  # fmt: skip
    activity.task_id = group.task_id = task.id
    session.flush()
    events.publish(
        session, "scaling_group.refreshing", "scaling_group", group.id, tenant_id=group.tenant_id,
        project_id=group.project_id, template_version=group.template_version, task_id=task.id,
    )  # fmt: skip
    wake_on_commit(session, ctx)
    return activity


def in_service(s: Session, group: ScalingGroup, member: ScalingGroupMember) -> bool:
    """In service: a healthy member whose VM runs and which every pool of the group reports serving."""
    if member.state != "in_service" or member.health != "healthy":
        return False
    vm = s.get(VM, member.vm_id)
    if vm is None or vm.state != "running":
        return False
    statuses = pool.pool_statuses(s, group, member.vm_id)
    return all(st in pool.SERVING for st in statuses) and len(statuses) >= len(group.lb_pools)


def _staying(s: Session, group: ScalingGroup) -> list[ScalingGroupMember]:
    stmt = select(ScalingGroupMember).where(
        ScalingGroupMember.group_id == group.id, ScalingGroupMember.state != "leaving"
    )
    return list(s.scalars(stmt.order_by(ScalingGroupMember.launched_at, ScalingGroupMember.vm_id)))


def _old(group: ScalingGroup, members: list[ScalingGroupMember]) -> list[ScalingGroupMember]:
    """The members still to replace (protected ones are skipped)."""
    return [
        m for m in members if m.template_version < group.template_version and not m.protected_from_scale_in
    ]


def plan_launch(s: Session, task: Task) -> int | None:
    """How many replacements this batch launches (None: nothing is left to replace or launch)."""
    group, activity = task_group(s, task), task_activity(s, task)
    assert activity is not None
    if group.status != "active":  # deleted meanwhile: the delete's scale task takes over at the end
        return None
    staying = _staying(s, group)
    old = _old(group, staying)
    vms = len(
        list(s.scalars(select(ScalingGroupMember.vm_id).where(ScalingGroupMember.group_id == group.id)))
    )
    protected_old = sum(1 for m in staying if m.template_version < group.template_version) - len(old)
    new = len(staying) - len(old) - protected_old
    surge = int(activity.numbers["max_surge"])
    launch = max(0, min(group.desired - protected_old - new, group.desired + surge - vms))
    if not old and launch == 0:  # the last batch may only have had room to take old ones out
        return None
    launched = list(activity.numbers.get("launched", []))
    note(activity, to_launch=len(launched) + launch, desired=group.desired)
    return launch


def mark_victims(s: Session, task: Task) -> tuple[list[str], int, int]:
    """Mark the old members this batch removes: the ones not in service, then the oldest while more
    than ``desired - max_unavailable`` stay in service. The victims, those in service after, VMs."""
    group, activity = task_group(s, task), task_activity(s, task)
    assert activity is not None
    staying = _staying(s, group)
    serving = {m.vm_id for m in staying if in_service(s, group, m)}
    room = len(serving) - (group.desired - int(activity.numbers["max_unavailable"]))
    victims = []
    for member in sorted(_old(group, staying), key=lambda m: m.vm_id in serving):
        if member.vm_id in serving:
            if room <= 0:
                continue
            room -= 1
        member.state = "leaving"
        victims.append(member.vm_id)
    return victims, len(serving - set(victims)), len(staying)


def _vms_gone(vm_ids: list[str]) -> Callable[[Session], bool]:
    def done(s: Session) -> bool:
        return s.scalar(select(VM.id).where(VM.id.in_(vm_ids)).limit(1)) is None

    return done


def _record_batch(ctx: Context, task: Task, batch: dict[str, Any]) -> None:
    """The batch in the activity, the share replaced as the task's progress."""
    with ctx.db.session() as s:
        activity, group, row = task_activity(s, task), task_group(s, task), s.get(Task, task.id)
        assert activity is not None and row is not None
        numbers = activity.numbers
        replaced = int(numbers["replaced"]) + len(batch["removed"])
        remaining = len(_old(group, _staying(s, group)))
        note(activity, replaced=replaced, remaining=remaining, batches=[*numbers["batches"], batch])
        row.progress = min(99, int(100 * replaced / max(replaced + remaining, 1)))
        events.publish(
            s, "task.progress", "task", row.id, tenant_id=row.tenant_id, project_id=row.project_id,
            step="replace", progress=row.progress, replaced=replaced, remaining=remaining,
        )  # fmt: skip
        events.publish(
            s, "scaling_group.refresh.progress", "scaling_group", group.id, tenant_id=group.tenant_id,
            project_id=group.project_id, replaced=replaced, remaining=remaining,
        )  # fmt: skip


def _check_cancel(ctx: Context, task: Task) -> None:
    with ctx.db.session() as s:
        if s.scalar(select(Task.cancel_requested).where(Task.id == task.id)):
            raise Cancelled


async def _batch(ctx: Context, task: Task) -> bool:
    """One batch (see the module's docstring); False when nothing is left to replace."""
    with ctx.db.session() as s:
        launch = plan_launch(s, task)
        warmup = task_group(s, task).warmup_s
    if launch is None:
        return False
    await launch_shortfall(ctx, task)
    abandoned = await launch_hooks(ctx, task)  # the group's launching hooks answer for each one
    if launch and len(abandoned) >= launch:  # every replacement refused: another batch would be too
        raise StepFailed(f"a launch hook abandoned this batch's replacements ({', '.join(abandoned)})")
    await wait_until(ctx, "the replacements to run and join the pools", joined(ctx, task), 2 * BOOT_TIMEOUT_S)
    await wait_until(
        ctx, "the pools to report the replacements up", pools_serving(task), max(warmup, MIN_SERVE_WAIT_S)
    )
    _check_cancel(ctx, task)
    with ctx.db.session() as s:
        victims, serving, vms = mark_victims(s, task)
    if launch == 0 and not victims:
        raise StepFailed(
            f"no member can be replaced: {serving} in service for desired {_desired(ctx, task)}; "
            "raise max_surge or max_unavailable"
        )
    await drain(ctx, task)
    await call_hooks(ctx, task, "terminating")  # answered (or timed out) before the VMs go
    await wait_until(ctx, "the old VMs to be idle", terminated(ctx, task))
    await wait_until(ctx, "the old VMs to be deleted", _vms_gone(victims))
    _record_batch(ctx, task, {"launched": launch, "removed": victims, "in_service": serving, "vms": vms})
    return True


def _desired(ctx: Context, task: Task) -> int:
    with ctx.db.session() as s:
        return task_group(s, task).desired


class RefreshGroup(TaskHandler):
    """Replace a group's members launched from an older template (see the module's docstring)."""

    kind = "scalinggroup.refresh"
    steps: ClassVar[list[str]] = ["replace"]
    cancellable_steps: ClassVar[frozenset[str]] = frozenset({"replace"})

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        while await _batch(ctx, task):
            _check_cancel(ctx, task)
            await asyncio.sleep(0)

    async def on_success(self, ctx: Context, task: Task) -> None:
        self._end(ctx, task, "succeeded", None)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        self._end(ctx, task, "cancelled" if error.startswith("Cancelled") else "failed", error)

    def _end(self, ctx: Context, task: Task, outcome: str, error: str | None) -> None:
        """The activity's outcome; then a ``converge`` if the count is off ``desired`` or a batch
        was cut short (members left launching or leaving)."""
        with ctx.db.session() as s:
            activity, group = task_activity(s, task), s.get(ScalingGroup, task.resource_id)
            if activity is not None:
                numbers = activity.numbers
                activity.outcome, activity.finished_at = outcome, utcnow()
                activity.detail = error or (
                    f"replaced {numbers['replaced']}, {numbers['remaining']} remaining"
                    + (
                        f", skipped {len(numbers['skipped_protected'])} protected"
                        if numbers["skipped_protected"]
                        else ""
                    )
                )
            if group is None:
                return
            rows = list(s.scalars(select(ScalingGroupMember).where(ScalingGroupMember.group_id == group.id)))
            off = len(rows) != group.desired or any(m.state != "in_service" for m in rows)
            if off or group.status == "deleting":
                group.task_id = None  # this task is ending: the converge (or the delete) may start
                why = "deleted during the refresh" if group.status == "deleting" else "after the refresh"
                request_scale(s, group, "converge", f"desired {group.desired} {why}")
                wake_on_commit(s, ctx)


HANDLERS: list[TaskHandler] = [RefreshGroup()]

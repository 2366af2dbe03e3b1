"""``scalinggroup.scale``: converge a scaling group to its desired count, one durable task.

Steps, each safe to run again after a crash (what they decided is on the member rows and in the
activity's numbers, both committed):

- ``plan``: unhealthy members (VM gone or in ERROR, down in a pool past the warm-up) and, on a
  scale-in, victims chosen by the termination policy (never a protected one) are marked
  ``leaving``; the shortfall to launch is written to the activity.
- ``drain``: every leaving member is drained (no new connections), then the step waits until
  HAProxy reports no session left on it (each leg's ``lb_status``) or the group's
  ``drain_timeout_s`` passed, whichever first (how long and why in the activity's ``drain``),
  and then takes it out of the group's pools.
- ``terminate_hooks``: the group's ``terminating`` lifecycle hooks are called for each drained
  member and their answers awaited (``autoscaling/lifecycle_wait.py``); whatever the result, the
  VM is deleted next (as AWS does), the result is recorded.
- ``terminate``: their VMs are deleted (``vm.delete`` tasks) and the member rows go.
- ``launch``: new VMs through the normal VM create path (quota, ports, the group's anti-affinity
  server group), each in its own transaction: a quota refusal ends the task with its words in the
  activity, the VMs launched before it stay.
- ``launch_hooks``: once the new VMs run, the group's ``launching`` hooks are called for each and
  their answers awaited; a VM whose hook says ``abandon`` is deleted and is no member.
- ``join``: each new VM that runs joins the group's pools; the step waits (up to the warm-up) for
  the load balancer to report it serving.
- ``finish``: a group being deleted goes, with its server group, once its VMs are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events
from novacron.agent.protocol import LbStatus
from novacron.autoscaling import members as pool
from novacron.autoscaling.groups import request_scale
from novacron.autoscaling.lifecycle import hooks_of
from novacron.autoscaling.lifecycle_wait import run_hooks
from novacron.compute import hostops
from novacron.compute.tasks import BOOT_TIMEOUT_S
from novacron.compute.vms import VMService, VMSpec, request_delete
from novacron.db.base import utcnow
from novacron.db.models import (
    VM,
    Project,
    ScalingActivity,
    ScalingGroup,
    ScalingGroupMember,
    ServerGroup,
    Task,
)
from novacron.errors import Conflict, DomainError
from novacron.lbaas.resolve import amphorae_of
from novacron.network.service import NicRequest
from novacron.quota.policy import Decisions
from novacron.tasks.runner import StepFailed, TaskHandler
from novacron.tasks.service import wake_on_commit

if TYPE_CHECKING:
    from novacron.context import Context

log = logging.getLogger(__name__)
#: how long a step waits for load balancers, VM deletes or boots before it gives up
WAIT_S = 300.0
POLL_S = 0.5
#: how often a drain reads the leaving members' sessions, and how long one read may take
SESSIONS_POLL_S = 1.0
STATUS_TIMEOUT_S = 10.0


def task_group(s: Session, task: Task) -> ScalingGroup:
    group = s.get(ScalingGroup, task.resource_id)
    if group is None:
        raise StepFailed(f"Scaling group {task.resource_id} no longer exists.")
    return group


def task_activity(s: Session, task: Task) -> ScalingActivity | None:
    return s.get(ScalingActivity, task.params.get("activity_id", ""))


def note(activity: ScalingActivity | None, **numbers: Any) -> None:
    """Add to the activity's numbers (a new dict: the JSON column sees the change)."""
    if activity is not None:
        activity.numbers = {**activity.numbers, **numbers}


async def wait_until(
    ctx: Context, what: str, done: Callable[[Session], bool], timeout_s: float = WAIT_S
) -> None:
    """Run ``done`` in a fresh transaction until it answers True; StepFailed after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        with ctx.db.session() as s:
            if done(s):
                return
        if time.monotonic() > deadline:
            raise StepFailed(f"gave up after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(POLL_S)


def _leaving(s: Session, group: ScalingGroup) -> list[ScalingGroupMember]:
    # pending_terminate too: one left so by a task that failed mid-wait still goes
    stmt = select(ScalingGroupMember).where(
        ScalingGroupMember.group_id == group.id, ScalingGroupMember.state.in_(pool.GOING)
    )
    return list(s.scalars(stmt))


def plan(s: Session, task: Task) -> None:
    """Mark who leaves (unhealthy first, then by the termination policy) and how many to launch."""
    group, activity = task_group(s, task), task_activity(s, task)
    unhealthy = pool.check_health(s, group, utcnow())
    for member in unhealthy:
        member.state = "leaving"
    rows = select(ScalingGroupMember).where(
        ScalingGroupMember.group_id == group.id, ScalingGroupMember.state.not_in(pool.GOING)
    )
    live = list(s.scalars(rows))
    excess = len(live) - group.desired
    victims = pool.choose_victims(s, live, excess, group.termination_policy)
    for member in victims:
        member.state = "leaving"
    to_launch = max(group.desired - (len(live) - len(victims)), 0)
    note(
        activity,
        desired_at_plan=group.desired,
        members_before=len(live),
        replacing={m.vm_id: m.health_reason for m in unhealthy},
        removing=[m.vm_id for m in victims],
        protected_kept=max(excess - len(victims), 0),
        to_launch=to_launch,
        launched=[],
    )


def drained(ctx: Context, task: Task) -> Callable[[Session], bool]:
    def done(s: Session) -> bool:
        group = task_group(s, task)
        return pool.drain_pools(s, ctx, group, [m.vm_id for m in _leaving(s, group)])

    return done


def _removed(ctx: Context, task: Task) -> Callable[[Session], bool]:
    def done(s: Session) -> bool:
        group = task_group(s, task)
        return pool.remove_from_pools(s, ctx, group, [m.vm_id for m in _leaving(s, group)])

    return done


def _sessions_on(ctx: Context, host_id: str, lb_id: str, keys: set[str]) -> int:
    """The members' current sessions on one leg of the load balancer (its agent's ``lb_status``,
    HAProxy's ``scur``; a data plane without sessions to report counts none)."""
    answer = hostops.call_blocking(ctx, host_id, LbStatus(loadbalancer_id=lb_id), lb_id, STATUS_TIMEOUT_S)
    sessions = answer.get("sessions") or {}
    return sum(int(sessions.get(key, 0)) for key in keys)


async def _active_sessions(ctx: Context, legs: dict[str, tuple[list[str], set[str]]]) -> int | None:
    """The leaving members' sessions over every leg of their load balancers; None: a leg did not
    answer (down, fenced, too slow), so they are not known to be idle."""
    total = 0
    for lb_id, (hosts, keys) in legs.items():
        for host_id in hosts:
            try:
                total += await asyncio.to_thread(_sessions_on, ctx, host_id, lb_id, keys)
            except (DomainError, StepFailed) as exc:
                log.info("drain: sessions of load balancer %s on host %s unknown: %s", lb_id, host_id, exc)
                return None
    return total


async def _wait_idle(ctx: Context, task: Task) -> None:
    """Wait until the drained members have no session left on any leg of their load balancers,
    or the group's ``drain_timeout_s`` passed, whichever first; the activity's ``drain`` says how
    long it waited and why it stopped (re-run after a crash, it waits again: the bound holds)."""
    with ctx.db.session() as s:
        group = task_group(s, task)
        timeout = float(group.drain_timeout_s)
        keys = pool.draining(s, group, [m.vm_id for m in _leaving(s, group)])
        legs = {
            lb_id: ([a.host_id for a in amphorae_of(s, lb_id) if a.host_id is not None], members)
            for lb_id, members in keys.items()
        }
    if not legs:
        return
    started = time.monotonic()
    while True:
        left = await _active_sessions(ctx, legs)
        waited = time.monotonic() - started
        if left == 0:
            stopped = "no active sessions"
            break
        if waited >= timeout:
            known = f"sessions still open: {left}" if left is not None else "sessions could not be read"
            stopped = f"drain timeout of {timeout:g} s: {known}"
            break
        await asyncio.sleep(SESSIONS_POLL_S)
    with ctx.db.session() as s:
        drain = {"waited_s": round(waited, 1), "stopped": stopped, "sessions_left": left}
        note(task_activity(s, task), drain=drain)


async def drain(ctx: Context, task: Task) -> None:
    """Take the leaving members out of the pools: drained, then idle (or the drain timeout), then
    removed."""
    await wait_until(ctx, "the load balancers to drain the leaving members", drained(ctx, task))
    await _wait_idle(ctx, task)
    await wait_until(ctx, "the load balancers to let the leaving members go", _removed(ctx, task))


def terminated(ctx: Context, task: Task) -> Callable[[Session], bool]:
    def done(s: Session) -> bool:
        group = task_group(s, task)
        busy = False
        for member in _leaving(s, group):
            vm = s.get(VM, member.vm_id)
            if vm is not None and vm.task_state != "deleting":
                try:
                    request_delete(s, vm)
                except Conflict:  # still being created or acted on: its task ends first
                    busy = True
                    continue
            s.delete(member)
        wake_on_commit(s, ctx)
        return not busy

    return done


def _launch_one(s: Session, ctx: Context, task: Task) -> bool:
    """Launch one VM of the shortfall (False when none is left to launch)."""
    group, activity = task_group(s, task), task_activity(s, task)
    numbers = activity.numbers if activity is not None else {}
    launched = list(numbers.get("launched", []))
    if len(launched) >= int(numbers.get("to_launch", 0)):
        return False
    project = s.get(Project, group.project_id)
    assert project is not None
    template = group.template
    spec = VMSpec(
        name=f"{group.name}-{secrets.token_hex(3)}",
        image=template["image_id"],
        flavor=template["flavor_id"],
        user_data=template.get("user_data", ""),
        metadata={"scaling_group": group.id},
        server_group=group.server_group_id,
        labels=dict(template.get("labels", {})),
        nics=tuple(
            NicRequest(network=n["network_id"], security_groups=tuple(n["security_groups"] or ()) or None)
            for n in template.get("networks", [])
        ),
    )
    vm, _ = VMService(s, pool.acting_for(group), ctx).create(project, spec, Decisions())
    s.add(
        ScalingGroupMember(
            vm_id=vm.id, group_id=group.id, state="launching", template_version=group.template_version
        )
    )
    note(activity, launched=[*launched, vm.id])
    wake_on_commit(s, ctx)
    return True


def _record_refusal(ctx: Context, task: Task, exc: DomainError) -> None:
    with ctx.db.session() as s:
        activity = task_activity(s, task)
        if activity is not None:
            activity.detail = f"scale-out refused: {exc.detail}"
            note(activity, refused={"detail": exc.detail, **exc.extra})


def _booted(s: Session, member: ScalingGroupMember) -> bool | None:
    """True when the member's VM runs, None while it boots; False (and the member marked unhealthy,
    for the next plan to replace) when it failed to launch."""
    vm = s.get(VM, member.vm_id)
    if vm is None or (vm.state == "error" and vm.task_state is None):
        member.health, member.health_reason = "unhealthy", "its VM failed to launch"
        member.state = "in_service"  # the next plan replaces it
        return False
    return True if vm.state == "running" else None


def _launching(s: Session, group: ScalingGroup) -> list[ScalingGroupMember]:
    stmt = select(ScalingGroupMember).where(
        ScalingGroupMember.group_id == group.id,
        ScalingGroupMember.state.in_(("launching", "pending_launch")),
    )
    return list(s.scalars(stmt))


def _all_booted(task: Task) -> Callable[[Session], bool]:
    def done(s: Session) -> bool:
        return all(_booted(s, m) is not None for m in _launching(s, task_group(s, task)))

    return done


def _discarded(ctx: Context, vm_ids: list[str]) -> Callable[[Session], bool]:
    """The abandoned VMs' deletes requested and their member rows gone."""

    def done(s: Session) -> bool:
        busy = False
        for vm_id in vm_ids:
            vm = s.get(VM, vm_id)
            if vm is not None and vm.task_state != "deleting":
                try:
                    request_delete(s, vm)
                except Conflict:
                    busy = True
                    continue
            if (member := s.get(ScalingGroupMember, vm_id)) is not None:
                s.delete(member)
        wake_on_commit(s, ctx)
        return not busy

    return done


async def call_hooks(ctx: Context, task: Task, transition: str) -> dict[str, str]:
    """Run the group's hooks of ``transition`` for each member concerned, all at once: {vm: result}."""
    with ctx.db.session() as s:
        group = task_group(s, task)
        if not hooks_of(s, group.id, transition):
            return {}
        if transition == "launching":
            members = [m for m in _launching(s, group) if _booted(s, m)]
        else:
            states = ("leaving", "pending_terminate")
            stmt = select(ScalingGroupMember).where(
                ScalingGroupMember.group_id == group.id, ScalingGroupMember.state.in_(states)
            )
            members = [m for m in s.scalars(stmt) if s.get(VM, m.vm_id) is not None]
        group_id, vm_ids = group.id, [m.vm_id for m in members]
        activity_id = task.params.get("activity_id")
    results = await asyncio.gather(*(run_hooks(ctx, group_id, v, transition, activity_id) for v in vm_ids))
    return dict(zip(vm_ids, results, strict=True))


async def launch_hooks(ctx: Context, task: Task) -> list[str]:
    """Wait for the new VMs to run, call the launch hooks; the abandoned VMs are deleted (their ids)."""
    with ctx.db.session() as s:
        if not hooks_of(s, task_group(s, task).id, "launching"):
            return []
    await wait_until(ctx, "the new VMs to run", _all_booted(task), 2 * BOOT_TIMEOUT_S)
    results = await call_hooks(ctx, task, "launching")
    abandoned = sorted(vm for vm, result in results.items() if result == "abandon")
    if abandoned:
        with ctx.db.session() as s:
            note(task_activity(s, task), abandoned=abandoned)
        await wait_until(ctx, "the abandoned VMs to be deleted", _discarded(ctx, abandoned))
    return abandoned


def joined(ctx: Context, task: Task) -> Callable[[Session], bool]:
    """Each launching member whose VM runs joins the pools; one in error or gone is unhealthy."""

    def done(s: Session) -> bool:
        group = task_group(s, task)
        waiting = False
        # pending_launch too: one a failed task left waiting (launch_hooks resumed it, or its hooks went)
        for member in _launching(s, group):
            booted = _booted(s, member)
            if booted and pool.join_pools(s, ctx, group, member.vm_id):
                member.state = "in_service"
            elif booted is not False:
                waiting = True
        return not waiting

    return done


def pools_serving(task: Task) -> Callable[[Session], bool]:
    def done(s: Session) -> bool:
        group, activity = task_group(s, task), task_activity(s, task)
        launched = activity.numbers.get("launched", []) if activity is not None else []
        statuses = {vm_id: pool.pool_statuses(s, group, vm_id) for vm_id in launched}
        note(activity, pool_status=statuses)
        return all(st in pool.SERVING for sts in statuses.values() for st in sts)

    return done


def _gone(task: Task) -> Callable[[Session], bool]:
    """A deleting group goes (with its server group) once no VM of it is left."""

    def done(s: Session) -> bool:
        group = s.get(ScalingGroup, task.resource_id)
        if group is None or group.status != "deleting":
            return True
        activity = task_activity(s, task)
        planned = activity.numbers.get("desired_at_plan") if activity is not None else None
        if planned not in (None, 0):
            return True  # deleted after this task's plan: the next task (see ``_end``) removes its VMs
        if group.server_group_id is not None:
            if s.scalar(select(VM.id).where(VM.server_group_id == group.server_group_id).limit(1)):
                return False
            spread = s.get(ServerGroup, group.server_group_id)
            if spread is not None:
                s.delete(spread)
        events.publish(
            s, "scaling_group.deleted", "scaling_group", group.id,
            tenant_id=group.tenant_id, project_id=group.project_id, name=group.name,
        )  # fmt: skip
        s.delete(group)
        return True

    return done


async def launch_shortfall(ctx: Context, task: Task) -> None:
    """Launch VMs until the activity's ``launched`` reaches its ``to_launch``, one transaction each."""
    while True:
        try:
            with ctx.db.session() as s:
                if not _launch_one(s, ctx, task):
                    return
        except DomainError as exc:  # the quota, a policy or the budget said no
            _record_refusal(ctx, task, exc)
            raise StepFailed(f"Scale-out refused: {exc.detail}") from exc
        await asyncio.sleep(0)


class ScaleGroup(TaskHandler):
    """Converge a scaling group to its desired count (see the module's docstring)."""

    kind = "scalinggroup.scale"
    steps: ClassVar[list[str]] = [
        "plan", "drain", "terminate_hooks", "terminate", "launch", "launch_hooks", "join", "finish",
    ]  # fmt: skip

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        if step == "plan":
            with ctx.db.session() as s:
                plan(s, task)
        elif step == "drain":
            await drain(ctx, task)
        elif step == "terminate_hooks":
            await call_hooks(ctx, task, "terminating")
        elif step == "launch_hooks":
            await launch_hooks(ctx, task)
        elif step == "terminate":
            await wait_until(ctx, "the leaving VMs to be idle", terminated(ctx, task))
        elif step == "launch":
            await launch_shortfall(ctx, task)
        elif step == "join":
            await wait_until(
                ctx, "the new VMs to run and join the pools", joined(ctx, task), 2 * BOOT_TIMEOUT_S
            )
            with ctx.db.session() as s:
                warmup = task_group(s, task).warmup_s
            # not yet serving after the warm-up: the health check replaces it if it stays down
            with contextlib.suppress(StepFailed):
                await wait_until(ctx, "the pools to report the new members up", pools_serving(task), warmup)
        elif step == "finish":
            await wait_until(ctx, "the group's VMs to be deleted", _gone(task))

    async def on_success(self, ctx: Context, task: Task) -> None:
        self._end(ctx, task, "succeeded", None)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        self._end(ctx, task, "failed", error)

    def _end(self, ctx: Context, task: Task, outcome: str, error: str | None) -> None:
        """The activity's outcome; a desired count changed while the task ran starts the next one."""
        with ctx.db.session() as s:
            activity = task_activity(s, task)
            if activity is not None:
                activity.outcome, activity.finished_at = outcome, utcnow()
                activity.detail = activity.detail or error
            group = s.get(ScalingGroup, task.resource_id)
            # a group being deleted too: a delete handed to this task after its plan needs the next
            if group is None or outcome != "succeeded" or activity is None:
                return
            planned = activity.numbers.get("desired_at_plan")
            if planned is not None and planned != group.desired:
                group.task_id = None  # this task is ending: the next one may start
                request_scale(s, group, "converge", f"desired changed to {group.desired} while scaling")
                wake_on_commit(s, ctx)


HANDLERS: list[TaskHandler] = [ScaleGroup()]

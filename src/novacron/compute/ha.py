"""High availability: a failed host's HA VMs restart on other hosts, never twice at once.

A host has failed when its agent stopped reporting for ``host_down_after_s`` (the host goes
``down``, its VMs show ``host_down``) *and* it is fenced. Fencing is the agent's own (see
``agent/watchdog.py``): its lease runs ``ha_lease_s`` from the last accepted report, and an agent
(or, if the agent died, its watchdog process) that could not renew it kills every VM of its host.
So once ``last_heartbeat + ha_lease_s + ha_fence_margin_s`` has passed, nothing of that host runs
any more, and only then does this monitor set ``fenced_at`` and restart the host's HA VMs (and
fail its load balancers' legs over: ``lbaas/failover.py``).

Restart needs the VM's disk: it lives on the failed host unless the host keeps disks on shared
storage (``NOVACRON_SHARED_STORAGE_DIR``; hosts reporting the same storage id carry the trait
``shared-storage:<id>``). A VM restarts only on a host of the same shared storage; an HA VM whose
disk was local is put in ``error`` with the reason (its data are on the dead host).

For each HA VM (highest ``ha_priority`` first) the monitor claims room on another host (all
placement filters and server-group policies apply), moves the VM row there and creates a durable
``vm.ha_restart`` task in one transaction. Each task waits until the restart before it (higher
priority) has launched, then prepares (the host's seed, the disk's backing pointed at its image
copy), launches and waits for the VM to run. The monitor is a controller: it runs on the leader
replica only.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import select, update

from novacron import events
from novacron.compute.placement import NoValidHost
from novacron.compute.placement.claims import reserve_elsewhere, unreserve
from novacron.compute.reports import SHARED_STORAGE_TRAIT, record_state
from novacron.compute.tasks import StartVM
from novacron.db.base import utcnow
from novacron.db.models import VM, Host, HostOperation, Task
from novacron.lbaas import failover as lb_failover
from novacron.network.sync import syncing_vm
from novacron.tasks.controller import ControllerLoop, Job
from novacron.tasks.runner import TERMINAL, create_task

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from novacron.context import Context

log = logging.getLogger(__name__)
CHECK_S = 1.0
HOST_DOWN = "host_down"
#: VM states a restart brings back (the VM was meant to run)
RESTARTABLE = ("running", "paused")


def fence_deadline(last_heartbeat: datetime, lease_s: float, margin_s: float) -> datetime:
    """When a silent host is surely fenced: its lease (renewed at the latest by the last heartbeat
    the server recorded, counted by the agent from before it sent that report) has run out, plus a
    margin for clock-rate differences and the time a kill takes."""
    return last_heartbeat + timedelta(seconds=lease_s + margin_s)


def is_down(last_heartbeat: datetime | None, now: datetime, down_after_s: float) -> bool:
    return last_heartbeat is not None and now - last_heartbeat > timedelta(seconds=down_after_s)


class HAMonitor:
    """The controller: every second, mark silent hosts down, fence them, restart their HA VMs."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.loop = ControllerLoop("HA monitor", [Job("HA check", self._check)], tick_s=CHECK_S)
        #: when this monitor began watching (its first pass)
        self.watching_since: datetime | None = None

    def _check(self) -> None:
        if self.watching_since is None:
            self.watching_since = utcnow()
        if self.check_once(since=self.watching_since) and self.ctx.tasks is not None:
            self.ctx.tasks.wake()  # the restarts it queued start now, not at the runner's next poll

    def check_once(self, now: datetime | None = None, since: datetime | None = None) -> bool:
        """One pass; True when it queued restarts. ``since``: when the monitor began watching; a
        host's silence before then is not counted (the control plane was down or restarting, not
        necessarily the host: its agent could not report), so a restart fences no live host."""
        now = now or utcnow()
        st = self.ctx.settings

        def heard(host: Host) -> datetime | None:
            last = host.last_heartbeat
            return max(last, since) if last is not None and since is not None else last

        with self.ctx.db.session() as s:
            for host in s.scalars(select(Host).where(Host.state.in_(("up", "maintenance")))):
                if is_down(heard(host), now, st.host_down_after_s):
                    self._mark_down(s, host)
        with self.ctx.db.session() as s:
            for host in s.scalars(select(Host).where(Host.state == "down", Host.fenced_at.is_(None))):
                last = heard(host)
                if last is None:
                    continue
                if now >= fence_deadline(last, st.ha_lease_s, st.ha_fence_margin_s):
                    self._mark_fenced(s, host, now)
        queued = False
        with self.ctx.db.session() as s:
            fenced = list(s.scalars(select(Host.id).where(Host.state == "down", Host.fenced_at.is_not(None))))
        for host_id in fenced:
            queued |= self._evacuate(host_id, now)
        # the load balancers' legs on fenced hosts fail over (and those waiting for a host retry)
        return lb_failover.recover(self.ctx, fenced, now) or queued

    def _mark_down(self, s: Session, host: Host) -> None:
        host.state = "down"
        events.publish(
            s,
            "host.down",
            "host",
            host.id,
            tenant_id=None,
            name=host.name,
            last_heartbeat=host.last_heartbeat.isoformat() if host.last_heartbeat else None,
        )
        log.warning("host %s is down (no report since %s)", host.name, host.last_heartbeat)
        for vm in s.scalars(select(VM).where(VM.host_id == host.id, VM.task_state.is_(None))):
            record_state(s, vm, HOST_DOWN)
            vm.error = f"Host {host.name} is down: no report from its agent since {host.last_heartbeat}."

    def _mark_fenced(self, s: Session, host: Host, now: datetime) -> None:
        host.fenced_at = now
        events.publish(s, "host.fenced", "host", host.id, tenant_id=None, name=host.name)
        log.warning("host %s is fenced (its lease ran out): restarting its HA VMs elsewhere", host.name)
        # nobody will answer these: tasks waiting on them fail now instead of at their timeout
        s.execute(
            update(HostOperation)
            .where(HostOperation.host_id == host.id, HostOperation.state.in_(("pending", "running")))
            .values(state="failed", error=f"Host {host.name} failed and was fenced.")
        )

    def _evacuate(self, host_id: str, now: datetime) -> bool:
        """Queue the restarts of the fenced host's idle HA VMs, highest priority first."""
        with self.ctx.db.session() as s:
            host = s.get(Host, host_id)
            assert host is not None
            vm_ids = list(
                s.scalars(
                    select(VM.id)
                    .where(
                        VM.host_id == host_id,
                        VM.ha.is_(True),
                        VM.task_state.is_(None),
                        VM.desired_state.in_(RESTARTABLE),
                    )
                    .order_by(VM.ha_priority.desc(), VM.created_at)
                )
            )
        previous = self._last_restart(host_id)
        queued = False
        for vm_id in vm_ids:
            with self.ctx.db.session() as s:
                task_id = self._restart(s, vm_id, host_id, previous, now)
            if task_id is not None:
                previous, queued = task_id, True
        return queued

    def _last_restart(self, source_host_id: str) -> str | None:
        """The newest unfinished restart from this host: the next one waits for it."""
        with self.ctx.db.session() as s:
            for task in s.scalars(
                select(Task)
                .where(Task.kind == HARestartVM.kind, Task.state.not_in(TERMINAL))
                .order_by(Task.created_at.desc())
            ):
                if task.params.get("source_host_id") == source_host_id:
                    return task.id
        return None

    def _restart(
        self, s: Session, vm_id: str, source_id: str, after: str | None, now: datetime
    ) -> str | None:
        vm = s.get(VM, vm_id)
        source = s.get(Host, source_id)
        if vm is None or source is None or vm.host_id != source_id or vm.task_state is not None:
            return None
        storage = [t for t in source.traits or [] if t.startswith(SHARED_STORAGE_TRAIT)]
        try:
            if not storage:
                raise NoValidHost(
                    f"its disk is on the local storage of failed host {source.name} (HA restart needs "
                    "shared storage: NOVACRON_SHARED_STORAGE_DIR on the hosts)"
                )
            target = reserve_elsewhere(s, vm, self.ctx.settings.placement_strategy, frozenset(storage))
        except NoValidHost as exc:
            reason = f"HA restart impossible: {exc}"
            if vm.error != reason:  # once, not every second
                record_state(s, vm, "error", reason)
                vm.error = reason
                events.publish(
                    s,
                    "vm.ha_failed",
                    "vm",
                    vm.id,
                    tenant_id=vm.tenant_id,
                    project_id=vm.project_id,
                    reason=reason,
                )
            return None
        # the reservation becomes the allocation when the row moves (the ORM hook re-counts it)
        unreserve(s, target.id, vm.vcpus, vm.ram_mb)
        with syncing_vm(s, vm):  # the new host gets its ports (a fenced host is pushed nothing)
            vm.host_id = target.id
        vm.moved_at = now
        vm.task_state = "ha_restarting"
        vm.error = None
        task = create_task(
            s,
            HARestartVM,
            "vm",
            vm.id,
            tenant_id=vm.tenant_id,
            project_id=vm.project_id,
            params={"source_host_id": source_id, "target_host_id": target.id, "after": after},
        )
        log.warning(
            "HA: restarting %s (priority %d) from %s on %s", vm.name, vm.ha_priority, source.name, target.name
        )
        return task.id


class HARestartVM(StartVM):
    """Boot a VM of a fenced host on the host the monitor moved it to, from its (shared) disk."""

    kind = "vm.ha_restart"
    steps: ClassVar[list[str]] = ["wait_turn", *StartVM.steps]
    #: a restart waiting for the previous one gives up waiting after this long
    TURN_TIMEOUT_S = 300.0

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        if step != "wait_turn":
            await super().run_step(ctx, task, step)
            return
        after = task.params.get("after")
        deadline = asyncio.get_running_loop().time() + self.TURN_TIMEOUT_S
        launched = self.steps.index("wait_running")
        while after is not None and asyncio.get_running_loop().time() < deadline:
            with ctx.db.session() as s:
                before = s.get(Task, after)
                if before is None or before.state in TERMINAL or before.step_index >= launched:
                    return
            await asyncio.sleep(0.2)

    async def on_success(self, ctx: Context, task: Task) -> None:
        await super().on_success(ctx, task)
        with ctx.db.session() as s:
            vm = s.get(VM, task.resource_id)
            if vm is None:
                return
            events.publish(
                s,
                "vm.ha_restarted",
                "vm",
                vm.id,
                tenant_id=vm.tenant_id,
                project_id=vm.project_id,
                source=task.params["source_host_id"],
                target=task.params["target_host_id"],
                priority=vm.ha_priority,
            )

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        # the VM stays on the new host (its claim too), in error with the reason: start it again there
        await super().rollback(ctx, task, f"HA restart failed: {error}")

"""Load balancers survive the loss of a host: Octavia's amphora failover.

Once the HA monitor (``compute/ha.py``) has fenced a host nothing of it runs any more, so every
leg of an ACTIVE load balancer on it is lost: :func:`recover` takes the leg off the host (its
port too) and, ACTIVE_STANDBY, makes the surviving side the MASTER (keepalived already moved the
VIP to it) and the lost side the BACKUP to re-create. The load balancer is then DEGRADED (a side
still serves) or ERROR (SINGLE: nothing serves; see ``health.legs_status``) and one durable
``loadbalancer.failover`` task (``PENDING_UPDATE``, its reason in ``params``) places the lost legs
on other up hosts (never the survivor's), pushes their network state (the VIP's port is re-bound
there), applies the load balancer on every leg and confirms: ACTIVE, ``failover.completed``.

A failover that fails (no host up, a host that refused) ends ACTIVE with its lost legs unplaced
again (stopped on the host that took one), the reason in the task and in ``failover.failed``; the
monitor tries again once a placement is possible (a host came up), at most every RETRY_AFTER_S.

A fenced host that comes back (it was cut off, not dead) may still run the legs that moved away:
its network state no longer has their namespaces, and :func:`remove_strays` (on each agent report
that lists load balancers not placed on that host) queues an ``lb_remove`` for each, so no VIP
answers from two hosts.

``POST /v1/loadbalancers/{id}/failover`` asks for the same by hand (:func:`request`): legs on a
fenced host are re-placed, the others applied again where they are; asked again while it runs,
it answers the failover in flight.
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from novacron.agent.protocol import LbRemove, encode
from novacron.compute import hostops
from novacron.db.models import Host, HostOperation, LbAmphora, LoadBalancer, Port, Task
from novacron.errors import Conflict
from novacron.lbaas import changes, placement
from novacron.lbaas.health import roll_up
from novacron.lbaas.resolve import amphorae_of
from novacron.lbaas.tasks import ApplyLoadBalancer, reachable
from novacron.network.specs import affected_hosts
from novacron.network.sync import push
from novacron.tasks.runner import TERMINAL, StepFailed, TaskHandler

if TYPE_CHECKING:
    from novacron.context import Context

log = logging.getLogger(__name__)
#: a failover that failed is tried again at most this often (and only when hosts can take it)
RETRY_AFTER_S = 10.0
UNDO_TIMEOUT_S = 30.0


def lose_legs(session: Session, lb: LoadBalancer, legs: Collection[LbAmphora]) -> None:
    """Take ``legs`` off their hosts; ACTIVE_STANDBY: a surviving side is the MASTER, the others
    BACKUP (the roles keepalived gets when the load balancer is applied again)."""
    for leg in legs:
        leg.host_id = None
        if leg.port_id is not None and (port := session.get(Port, leg.port_id)) is not None:
            port.host_id = None
    session.flush()
    if lb.topology == "ACTIVE_STANDBY":
        everyone = amphorae_of(session, lb.id)
        survivors = [a for a in everyone if a.host_id is not None]
        if survivors:
            for leg in everyone:
                leg.role = "MASTER" if leg is survivors[0] else "BACKUP"
    roll_up(session, lb)


def start(session: Session, ctx: Context | None, lb: LoadBalancer, reason: str) -> Task:
    """Queue the failover of ``lb`` (``PENDING_UPDATE``): its legs without a host get one."""
    lost = [a.id for a in amphorae_of(session, lb.id) if a.host_id is None]
    task = changes.start_task(
        session, ctx, lb, FailoverLoadBalancer, "PENDING_UPDATE", params={"reason": reason, "legs": lost}
    )
    changes.publish(session, "failover.started", lb, task_id=task.id, reason=reason, amphorae=lost)
    log.warning("load balancer %s fails over (%s): re-placing %s", lb.name, reason, lost or "nothing")
    return task


def request(session: Session, ctx: Context | None, lb: LoadBalancer) -> Task:
    """An explicit failover: the one in flight, or a new one re-placing the legs of fenced hosts."""
    if lb.task_id is not None and lb.provisioning_status in changes.PENDING:
        current = session.get(Task, lb.task_id)
        if current is not None and current.kind == FailoverLoadBalancer.kind:
            return current
    changes.check_not_pending(lb)
    if lb.provisioning_status != "ACTIVE":
        raise Conflict(
            f"Load balancer '{lb.name}' is {lb.provisioning_status}: only an ACTIVE one fails over "
            "(delete it and create it again)."
        )
    fenced = set(session.scalars(select(Host.id).where(Host.fenced_at.is_not(None))))
    lose_legs(session, lb, [a for a in amphorae_of(session, lb.id) if a.host_id in fenced])
    return start(session, ctx, lb, "requested")


def recover(ctx: Context, fenced_host_ids: Collection[str], now: datetime) -> bool:
    """The HA monitor's pass: the legs of fenced hosts are lost, and the ACTIVE load balancers
    with lost legs fail over when due. True when it queued a failover."""
    queued = False
    with ctx.db.session() as s:
        for lb, reason in _lose_fenced(s, fenced_host_ids):
            if _due(s, lb, now):
                start(s, ctx, lb, reason)
                queued = True
    with ctx.db.session() as s:
        # a subquery, not DISTINCT over the rows: PostgreSQL has no equality for their JSON columns
        legless = select(LbAmphora.loadbalancer_id).where(LbAmphora.host_id.is_(None))
        waiting = s.scalars(
            select(LoadBalancer).where(
                LoadBalancer.id.in_(legless), LoadBalancer.provisioning_status == "ACTIVE"
            )
        )
        for lb in list(waiting):
            if _due(s, lb, now):
                start(s, ctx, lb, "a host can take its lost legs")
                queued = True
    return queued


def _lose_fenced(session: Session, fenced_host_ids: Collection[str]) -> list[tuple[LoadBalancer, str]]:
    """Take the legs of ACTIVE load balancers off the fenced hosts; each with the reason."""
    if not fenced_host_ids:
        return []
    lost: dict[str, list[LbAmphora]] = defaultdict(list)
    for leg in session.scalars(
        select(LbAmphora)
        .join(LoadBalancer, LbAmphora.loadbalancer_id == LoadBalancer.id)
        .where(LbAmphora.host_id.in_(fenced_host_ids), LoadBalancer.provisioning_status == "ACTIVE")
    ):
        lost[leg.loadbalancer_id].append(leg)
    rows = session.execute(select(Host.id, Host.name).where(Host.id.in_(fenced_host_ids)))
    names = {host_id: name for host_id, name in rows}
    result = []
    for lb_id, legs in lost.items():
        lb = session.get(LoadBalancer, lb_id)
        assert lb is not None
        hosts = sorted({names.get(a.host_id or "", "?") for a in legs})
        lose_legs(session, lb, legs)
        result.append((lb, f"host {', '.join(hosts)} failed and was fenced"))
    return result


def _due(session: Session, lb: LoadBalancer, now: datetime) -> bool:
    """A first failover always (it says why when no host can take it); after a failed one, only
    once hosts can take the lost legs and RETRY_AFTER_S has passed."""
    last = session.scalar(
        select(Task)
        .where(Task.kind == FailoverLoadBalancer.kind, Task.resource_id == lb.id)
        .order_by(Task.created_at.desc())
        .limit(1)
    )
    if last is None or last.state == "succeeded":
        return True
    if last.state not in TERMINAL:
        return False
    ended = last.finished_at or last.created_at
    return now - ended >= timedelta(seconds=RETRY_AFTER_S) and _placeable(session, lb)


def _placeable(session: Session, lb: LoadBalancer) -> bool:
    """Whether enough up hosts, other than its surviving legs', can take its lost legs."""
    usable = placement.usable_hosts(session)
    legs = amphorae_of(session, lb.id)
    kept = {a.host_id for a in legs if a.host_id in usable}
    return len([h for h in usable if h not in kept]) >= len([a for a in legs if a.host_id not in usable])


def remove_strays(session: Session, host_id: str, reported: Collection[str]) -> list[str]:
    """The load balancers a host reports running but that have no leg there (they failed over
    while it was cut off, or were deleted meanwhile): one ``lb_remove`` each, unless one waits."""
    here = set(session.scalars(select(LbAmphora.loadbalancer_id).where(LbAmphora.host_id == host_id)))
    strays = [lb_id for lb_id in reported if lb_id not in here]
    if not strays:
        return []
    waiting = set(
        session.scalars(
            select(HostOperation.instance_id).where(
                HostOperation.host_id == host_id,
                HostOperation.op == LbRemove.OP,
                HostOperation.state.in_(("pending", "running")),
            )
        )
    )
    queued = [lb_id for lb_id in strays if lb_id not in waiting]
    for lb_id in queued:
        log.warning(
            "host %s still runs load balancer %s, placed elsewhere: stopping it there", host_id, lb_id
        )
        session.add(
            HostOperation(
                id=f"{LbRemove.OP}:{host_id}:{secrets.token_hex(8)}",
                host_id=host_id,
                task_id=None,
                op=LbRemove.OP,
                instance_id=lb_id,
                # the agent removes by load balancer; its leg there is gone from the database
                payload=encode(LbRemove(loadbalancer_id=lb_id, leg_id=lb_id)),
            )
        )
    if queued:
        event.listen(session, "after_commit", lambda _: hostops.wake(host_id), once=True)
    return queued


class FailoverLoadBalancer(ApplyLoadBalancer):
    """Re-place a load balancer's lost legs and apply it on every leg again."""

    kind = "loadbalancer.failover"
    steps: ClassVar[list[str]] = ["place", "plumb", "apply", "confirm"]

    def confirmed(self, session: Session, lb: LoadBalancer, task: Task) -> None:
        legs = [{"id": a.id, "role": a.role, "host_id": a.host_id} for a in amphorae_of(session, lb.id)]
        changes.publish(
            session,
            "failover.completed",
            lb,
            task_id=task.id,
            reason=task.params.get("reason"),
            amphorae=legs,
        )

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        """ACTIVE again; the legs it was re-placing leave the hosts that took them (retried later)."""
        wanted = set(task.params.get("legs") or ())
        with ctx.db.session() as s:
            placed = [
                (a.id, a.host_id) for a in amphorae_of(s, task.resource_id) if a.id in wanted and a.host_id
            ]
        for leg_id, host_id in placed:
            await self._stop(ctx, task, leg_id, host_id)
        with ctx.db.session() as s:
            lb = s.get(LoadBalancer, task.resource_id)
            if lb is None:
                return
            moved = [a for a in amphorae_of(s, lb.id) if a.id in wanted and a.host_id]
            hosts = {a.host_id for a in moved if a.host_id}
            lose_legs(s, lb, moved)
            lb.provisioning_status = "ACTIVE"
            roll_up(s, lb)
            push(s, affected_hosts(s, lb.tenant_id) | hosts)  # their namespaces go
            changes.publish(
                s, "failover.failed", lb, task_id=task.id, reason=task.params.get("reason"), error=error
            )

    @staticmethod
    async def _stop(ctx: Context, task: Task, leg_id: str, host_id: str) -> None:
        """Best effort: stop what a failed failover may have started on a host."""
        if not reachable(ctx, host_id):
            return
        request = LbRemove(loadbalancer_id=task.resource_id, leg_id=leg_id)
        try:
            await hostops.call(
                ctx, host_id, task, request, task.resource_id, UNDO_TIMEOUT_S, key=f"undo-{leg_id}"
            )
        except StepFailed as exc:
            log.warning("stopping %s on %s after a failed failover: %s", leg_id, host_id, exc)


HANDLERS: list[TaskHandler] = [FailoverLoadBalancer()]

"""A scaling group's members: who acts for the group, its load-balancer pools, health, victims.

A running member joins each of the group's pools as a member named by its VM; members leaving are
first drained (``drain``: HAProxy sends them no new connections), then, once their sessions ended
or the group's ``drain_timeout_s`` passed (the scale task waits, ``tasks.py``), taken out of the
pools, each step one ``loadbalancer.apply`` per load balancer for all of them, before their VMs are
deleted. A change is only made while the load balancer is not ``PENDING_*``: callers try again.

A member is unhealthy when its VM is gone or in ERROR, or when a pool has reported it down for
longer than the group's warm-up (counted from its launch too): the scale task replaces it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.db.models import VM, LbMember, LbPool, LoadBalancer, ScalingGroup, ScalingGroupMember
from novacron.identity.principal import Principal
from novacron.lbaas import changes
from novacron.lbaas.changes import PENDING
from novacron.lbaas.members import MemberService, NewMember

if TYPE_CHECKING:
    from novacron.context import Context

#: the states of a member on its way out (drained; a terminating hook's answer may be awaited)
GOING = ("leaving", "pending_terminate")
#: the statuses of a pool member that carries traffic (or is not checked)
SERVING = ("ONLINE", "NO_MONITOR")


def acting_for(group: ScalingGroup) -> Principal:
    """The group's own identity: it acts in its tenant, charged to its project (no user node)."""
    return Principal(
        "autoscaling",
        f"scaling-group:{group.name}",
        "member",
        group.tenant_id,
        frozenset(),
        kind="autoscaling",
    )


def _pool_members(session: Session, group: ScalingGroup, vm_id: str) -> list[LbMember]:
    pool_ids = [p["pool_id"] for p in group.lb_pools]
    if not pool_ids:
        return []
    stmt = select(LbMember).where(LbMember.vm_id == vm_id, LbMember.pool_id.in_(pool_ids))
    return list(session.scalars(stmt))


def join_pools(session: Session, ctx: Context, group: ScalingGroup, vm_id: str) -> bool:
    """Add the VM to each of the group's pools it is not yet in; False while a load balancer is busy."""
    joined = {m.pool_id for m in _pool_members(session, group, vm_id)}
    members = MemberService(session, acting_for(group), ctx)
    done = True
    for ref in group.lb_pools:
        if ref["pool_id"] in joined:
            continue
        lb = session.get(LoadBalancer, ref["loadbalancer_id"])
        pool = session.get(LbPool, ref["pool_id"])
        if lb is None or pool is None:  # the pool was deleted: nothing to join
            continue
        if lb.provisioning_status in PENDING:
            done = False
            continue
        members.create(
            lb, pool, NewMember(protocol_port=int(ref["protocol_port"]), vm_id=vm_id, name=group.name)
        )
    session.flush()
    return done


def _by_lb(session: Session, group: ScalingGroup, vm_ids: Collection[str]) -> dict[str, list[LbMember]]:
    """The VMs' members in the group's pools, per load balancer."""
    pool_ids = [p["pool_id"] for p in group.lb_pools]
    if not pool_ids or not vm_ids:
        return {}
    stmt = select(LbMember).where(LbMember.vm_id.in_(list(vm_ids)), LbMember.pool_id.in_(pool_ids))
    by_lb: dict[str, list[LbMember]] = {}
    for member in session.scalars(stmt):
        by_lb.setdefault(member.loadbalancer_id, []).append(member)
    return by_lb


def drain_pools(session: Session, ctx: Context, group: ScalingGroup, vm_ids: Collection[str]) -> bool:
    """Set the VMs' members in the group's pools ``drain`` (HAProxy sends them no new connection
    and keeps the sessions they have), one change per load balancer for all of them. True once
    every one is drained on a load balancer that has applied the change (not ``PENDING_*``)."""
    done = True
    for lb_id, members in _by_lb(session, group, vm_ids).items():
        lb = session.get(LoadBalancer, lb_id)
        if lb is None:
            continue
        if lb.provisioning_status in PENDING:
            done = False
            continue
        undrained = [m for m in members if not m.drain]
        if not undrained:
            continue
        for member in undrained:
            member.drain = True
        session.flush()
        changes.submit(session, ctx, lb, "member.updated", scaling_group=group.id)
        done = False
    return done


def draining(session: Session, group: ScalingGroup, vm_ids: Collection[str]) -> dict[str, set[str]]:
    """Load balancer id -> the ``pool_id/member_id`` keys (as the agents' ``lb_status`` names
    them) of the VMs' members in the group's pools."""
    return {
        lb_id: {f"{m.pool_id}/{m.id}" for m in members}
        for lb_id, members in _by_lb(session, group, vm_ids).items()
    }


def remove_from_pools(session: Session, ctx: Context, group: ScalingGroup, vm_ids: Collection[str]) -> bool:
    """Take the VMs' members out of the group's pools, one change per load balancer for all of
    them; True when they are in none any more (callers try again while a load balancer is busy)."""
    by_lb = _by_lb(session, group, vm_ids)
    for lb_id, members in by_lb.items():
        lb = session.get(LoadBalancer, lb_id)
        if lb is None or lb.provisioning_status in PENDING:
            continue
        for member in members:
            session.delete(member)
        session.flush()
        changes.submit(session, ctx, lb, "member.deleted", scaling_group=group.id)
    return not by_lb


def pool_statuses(session: Session, group: ScalingGroup, vm_id: str) -> list[str]:
    """The VM's operating status in each of the group's pools it is in."""
    return [m.operating_status for m in _pool_members(session, group, vm_id)]


def _unhealthy_reason(
    session: Session, group: ScalingGroup, member: ScalingGroupMember, vm: VM | None, now: datetime
) -> str | None:
    if vm is None:
        return "its VM is gone"
    if vm.state == "error" and vm.task_state is None:
        return f"its VM is in error: {vm.error or 'no reason given'}"
    if member.state != "in_service":
        return None
    down = [s for s in pool_statuses(session, group, vm.id) if s in ("OFFLINE", "ERROR")]
    if not down:
        member.down_since = None
        return None
    if member.down_since is None:
        member.down_since = now
    grace = timedelta(seconds=group.warmup_s)
    if now - member.down_since > grace and now - member.launched_at > grace:
        return f"down in its pool since {member.down_since.isoformat(timespec='seconds')}"
    return None


def check_health(session: Session, group: ScalingGroup, now: datetime) -> list[ScalingGroupMember]:
    """Mark the members that became unhealthy (with the reason); those unhealthy and not yet leaving."""
    found = []
    for member in session.scalars(select(ScalingGroupMember).where(ScalingGroupMember.group_id == group.id)):
        if member.state in GOING:
            continue
        reason = _unhealthy_reason(session, group, member, session.get(VM, member.vm_id), now)
        if reason is not None and member.health != "unhealthy":
            member.health, member.health_reason = "unhealthy", reason
        if member.health == "unhealthy":
            found.append(member)
    return found


def choose_victims(
    session: Session, candidates: Sequence[ScalingGroupMember], count: int, policy: str
) -> list[ScalingGroupMember]:
    """``count`` members to remove by the termination policy, never one protected from scale-in.

    oldest / newest by launch; spread takes from the host with the most of the group's members
    (the oldest there first), so the survivors stay spread."""
    free = sorted(
        (m for m in candidates if not m.protected_from_scale_in), key=lambda m: (m.launched_at, m.vm_id)
    )
    if count <= 0:
        return []
    if policy == "newest":
        return free[::-1][:count]
    if policy == "oldest":
        return free[:count]
    hosts = {m.vm_id: session.scalar(select(VM.host_id).where(VM.id == m.vm_id)) for m in candidates}
    load = Counter(hosts.values())
    victims: list[ScalingGroupMember] = []
    for _ in range(min(count, len(free))):
        pick = max((m for m in free if m not in victims), key=lambda m: load[hosts[m.vm_id]])
        load[hosts[pick.vm_id]] -= 1
        victims.append(pick)
    return victims

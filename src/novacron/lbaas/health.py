"""Member health from the hosts, rolled up into operating statuses as Octavia does.

The agents report ``lb_health: {lb_id: {"<pool_id>/<member_id>": "UP"|"DOWN"|"MAINT"|"NO_CHECK"}}``
(and ``lb_apply`` answers the same map under ``members``). A member is ONLINE (up), OFFLINE
(down), DRAINING (draining), DISABLED (administratively down) or NO_MONITOR (no health check); a
pool is ONLINE, DEGRADED (some enabled members down) or ERROR (all down); a listener is DEGRADED
when a pool it sends to is; the load balancer is DEGRADED when a listener is, OFFLINE when
disabled. A load balancer with a leg lost with its host (``lbaas.failover`` re-places it) is
DEGRADED while another leg serves, ERROR when none does. A member going down or coming back up
is a ``loadbalancer.member.down`` / ``.up`` event.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.db.models import LbAmphora, LbListener, LbMember, LbPool, LoadBalancer
from novacron.lbaas import changes
from novacron.lbaas.resolve import amphorae_of, listeners_of, members_of, pools_of

#: an agent's member state -> the member's operating status
MEMBER_STATUS = {"UP": "ONLINE", "DOWN": "OFFLINE", "MAINT": "DISABLED", "NO_CHECK": "NO_MONITOR"}
_DOWN = "OFFLINE"
_FINE = frozenset({"ONLINE", "NO_MONITOR", "DRAINING"})


def member_status(member: LbMember, reported: str | None) -> str:
    """The member's operating status given what its host reported (None: nothing yet)."""
    if not member.admin_state_up:
        return "DISABLED"
    if member.drain:
        return "DRAINING"
    if reported is None:
        return member.operating_status
    return MEMBER_STATUS.get(reported, member.operating_status)


def pool_status(pool: LbPool, members: list[LbMember]) -> str:
    if not pool.admin_state_up:
        return "OFFLINE"
    enabled = [m for m in members if m.admin_state_up]
    down = [m for m in enabled if m.operating_status == _DOWN]
    if enabled and len(down) == len(enabled):
        return "ERROR"
    return "DEGRADED" if down else "ONLINE"


def listener_status(listener: LbListener, pools: Mapping[str, str]) -> str:
    if not listener.admin_state_up:
        return "OFFLINE"
    used = {listener.default_pool_id} | {p.get("redirect_pool_id") for p in listener.l7policies or []}
    bad = [s for p, s in pools.items() if p in used and s in ("DEGRADED", "ERROR")]
    return "DEGRADED" if bad else "ONLINE"


def legs_status(session: Session, lb: LoadBalancer) -> str | None:
    """ERROR when no leg of an applied load balancer has a host, DEGRADED when some lost theirs."""
    if lb.applied is None:
        return None
    legs = amphorae_of(session, lb.id)
    lost = [a for a in legs if a.host_id is None]
    if not lost:
        return None
    return "ERROR" if len(lost) == len(legs) else "DEGRADED"


def roll_up(session: Session, lb: LoadBalancer) -> None:
    """Set the pools', listeners' and load balancer's operating status from the members'."""
    members = members_of(session, lb.id)
    pools: dict[str, str] = {}
    for pool in pools_of(session, lb.id):
        pool.operating_status = pool_status(pool, [m for m in members if m.pool_id == pool.id])
        pools[pool.id] = pool.operating_status
    statuses = []
    for listener in listeners_of(session, lb.id):
        listener.operating_status = listener_status(listener, pools)
        statuses.append(listener.operating_status)
    if not lb.admin_state_up:
        lb.operating_status = "OFFLINE"
    else:
        listeners = "DEGRADED" if "DEGRADED" in statuses else "ONLINE"
        lb.operating_status = legs_status(session, lb) or listeners


def apply_health(session: Session, lb: LoadBalancer, health: Mapping[str, str]) -> None:
    """Record one host's member states for ``lb`` and roll them up; events for members that
    went down or came back up."""
    for member in members_of(session, lb.id):
        before = member.operating_status
        after = member_status(member, health.get(f"{member.pool_id}/{member.id}"))
        if after == before:
            continue
        member.operating_status = after
        if after == _DOWN or (before == _DOWN and after in _FINE):
            what = "down" if after == _DOWN else "up"
            changes.publish(
                session,
                f"member.{what}",
                lb,
                pool_id=member.pool_id,
                member_id=member.id,
                address=member.address,
            )
    roll_up(session, lb)


def owners_on(session: Session, host_id: str) -> dict[str, tuple[str, str]]:
    """The load balancers with a leg on this host (not being deleted): id -> (tenant, project)."""
    rows = session.execute(
        select(LoadBalancer.id, LoadBalancer.tenant_id, LoadBalancer.project_id)
        .join(LbAmphora, LbAmphora.loadbalancer_id == LoadBalancer.id)
        .where(LbAmphora.host_id == host_id, LoadBalancer.provisioning_status != "PENDING_DELETE")
    )
    return {lb_id: (tenant_id, project_id) for lb_id, tenant_id, project_id in rows}


def apply_report(session: Session, here: Collection[str], lb_health: Mapping[str, Mapping[str, str]]) -> None:
    """An agent's ``lb_health``: applied for the load balancers ``here`` (``owners_on`` the
    reporting host: a leg there, not being deleted); another host's or tenant's ids are ignored.
    Their members are read in one query and only a load balancer with a member whose status moves
    is rolled up: a host reports every few seconds, and its hundreds of load balancers are steady."""
    reported = [lb_id for lb_id in lb_health if lb_id in here]
    if not reported:
        return
    moved: set[str] = set()
    for member in session.scalars(select(LbMember).where(LbMember.loadbalancer_id.in_(reported))):
        state = lb_health[member.loadbalancer_id].get(f"{member.pool_id}/{member.id}")
        if member_status(member, state) != member.operating_status:
            moved.add(member.loadbalancer_id)
    for lb_id in sorted(moved):
        lb = session.get(LoadBalancer, lb_id)
        if lb is not None:
            apply_health(session, lb, lb_health[lb_id])

"""Which changes of a load balancer's desired state HAProxy takes at run time, without a reload.

A member's weight, drain and admin state are what load balancers change most (an autoscaling
group adds weight, drains before removing, takes a member out for maintenance), and HAProxy's
runtime API changes them in place (``set server ... weight`` / ``state``). When two desired states
differ in nothing else, :func:`member_changes` lists those changes and
:func:`apply_in_place` makes them through the seam's ``set_member`` instead of a reload: no new
worker, no re-resolved configuration, the health and counters of every member kept. The rendered
configuration is still written, so the next reload or start serves the same state.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from novacron.lbaas.haproxy_config import name
from novacron.lbaas.model import LoadBalancerSpec, MemberSpec
from novacron.private import write_private

if TYPE_CHECKING:
    from novacron.lbaas.haproxy import HAProxyInstance, MemberState

#: (pool id, member id, weight, state)
MemberChange = tuple[str, str, int, "MemberState"]


def _state(member: MemberSpec) -> MemberState:
    if not member.admin_state_up:
        return "maint"
    return "drain" if member.drain else "ready"


def _runtime_free(spec: LoadBalancerSpec) -> LoadBalancerSpec:
    """``spec`` with every member's run-time settings at their defaults."""
    pools = tuple(
        dataclasses.replace(
            pool,
            members=tuple(
                dataclasses.replace(m, weight=1, drain=False, admin_state_up=True) for m in pool.members
            ),
        )
        for pool in spec.pools
    )
    return dataclasses.replace(spec, pools=pools)


def member_changes(old: LoadBalancerSpec, new: LoadBalancerSpec) -> list[MemberChange] | None:
    """The members whose weight, drain or admin state changed from ``old`` to ``new``, when that
    is all that changed; None when anything else differs (a reload is needed)."""
    if _runtime_free(old) != _runtime_free(new):
        return None
    changes: list[MemberChange] = []
    for pool in new.pools:
        before = {m.id: m for m in old.pool(pool.id).members}
        for member in pool.members:
            was = before[member.id]
            if (was.weight, was.drain, was.admin_state_up) != (
                member.weight,
                member.drain,
                member.admin_state_up,
            ):
                changes.append((pool.id, member.id, member.weight, _state(member)))
    return changes


def apply_in_place(instance: HAProxyInstance, spec: LoadBalancerSpec, config: str, config_name: str) -> bool:
    """Make ``spec`` the running state through the runtime API when only members' run-time
    settings changed, writing ``config`` (checked already) as ``config_name`` for the next
    reload; False (nothing done) when a reload is needed."""
    if instance.spec is None:
        return False
    changes = member_changes(instance.spec, spec)
    if changes is None:
        return False
    write_private(instance.paths.state_dir / config_name, config)
    for pool_id, member_id, weight, state in changes:
        instance.set_member(pool_id, member_id, weight=weight, state=state)
    instance.spec = spec
    return True


def joining(before: LoadBalancerSpec | None, after: LoadBalancerSpec) -> list[str]:
    """``backend/server`` of each enabled member ``after`` adds to a pool with a health check.

    HAProxy counts a server it has no saved state for as up until its checks fail, so a new
    member whose service does not listen yet (a VM still booting) would be sent requests; the
    caller sets these ``health down`` right after the reload, and their first passing check
    (``rise``) lets them serve."""
    if before is None:
        return []
    known = {(p.id, m.id) for p in before.pools for m in p.members}
    return [
        f"{name(p.id)}/{name(m.id)}"
        for p in after.pools
        if p.healthmonitor is not None
        for m in p.members
        if m.admin_state_up and (p.id, m.id) not in known
    ]

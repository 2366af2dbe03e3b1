"""Which desired-state changes go through HAProxy's runtime API instead of a reload."""

from __future__ import annotations

import dataclasses

from novacron.lbaas.haproxy_config import name
from novacron.lbaas.model import HealthMonitorSpec, ListenerSpec, LoadBalancerSpec, MemberSpec, PoolSpec
from novacron.lbaas.runtime_changes import joining, member_changes

BASE = LoadBalancerSpec(
    id="lb-1",
    vip_address="10.0.0.5",
    listeners=(ListenerSpec("l1", "HTTP", 80, default_pool_id="p1"),),
    pools=(
        PoolSpec(
            "p1",
            members=(MemberSpec("m1", "10.0.0.7", 80), MemberSpec("m2", "10.0.0.8", 80, weight=2)),
            healthmonitor=HealthMonitorSpec(),
        ),
    ),
)


def with_members(spec: LoadBalancerSpec, *members: MemberSpec) -> LoadBalancerSpec:
    return dataclasses.replace(spec, pools=(dataclasses.replace(spec.pools[0], members=members),))


def test_weight_drain_and_admin_state_are_run_time_changes() -> None:
    m1, m2 = BASE.pools[0].members
    assert member_changes(BASE, BASE) == []
    changed = with_members(
        BASE, dataclasses.replace(m1, weight=7), dataclasses.replace(m2, drain=True, admin_state_up=True)
    )
    assert member_changes(BASE, changed) == [("p1", "m1", 7, "ready"), ("p1", "m2", 2, "drain")]
    down = with_members(BASE, m1, dataclasses.replace(m2, admin_state_up=False))
    assert member_changes(BASE, down) == [("p1", "m2", 2, "maint")]
    assert member_changes(down, BASE) == [("p1", "m2", 2, "ready")]


def test_anything_else_needs_a_reload() -> None:
    m1, m2 = BASE.pools[0].members
    assert member_changes(BASE, with_members(BASE, m1)) is None  # a member removed
    assert member_changes(BASE, with_members(BASE, m1, m2, MemberSpec("m3", "10.0.0.9", 80))) is None
    moved = with_members(BASE, m1, dataclasses.replace(m2, address="10.0.0.10"))
    assert member_changes(BASE, moved) is None
    slower = dataclasses.replace(
        BASE, listeners=(dataclasses.replace(BASE.listeners[0], timeout_client_data=1000),)
    )
    assert member_changes(BASE, slower) is None


def test_members_joining_a_checked_pool_are_held_down_until_checked() -> None:
    m1, m2 = BASE.pools[0].members
    m3, m4 = MemberSpec("m3", "10.0.0.9", 80), MemberSpec("m4", "10.0.0.10", 80, admin_state_up=False)
    grown = with_members(BASE, m1, m2, m3, m4)
    assert joining(BASE, grown) == [f"{name('p1')}/{name('m3')}"]  # m4 is in maintenance anyway
    assert joining(grown, grown) == [] and joining(None, grown) == []  # a first start: all at once
    unchecked = dataclasses.replace(grown, pools=(dataclasses.replace(grown.pools[0], healthmonitor=None),))
    assert joining(BASE, unchecked) == []  # no check would ever bring it up

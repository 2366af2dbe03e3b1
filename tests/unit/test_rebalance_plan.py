"""The rebalance planner: pure, over in-memory snapshots (plain cases and hypothesis properties)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from novacron.compute.placement.spec import RequestSpec
from novacron.compute.placement.view import HostEntry
from novacron.compute.rebalance import (
    GroupSnap,
    Options,
    Plan,
    PlanRejected,
    Snapshot,
    VMSnap,
    check_moves,
    plan,
)

NOW = 1_000_000.0


def host(name: str, cpus: int = 8, ram_mb: int = 16384, **kw: object) -> HostEntry:
    fields: dict[str, object] = {
        "idx": 0,
        "id": name,
        "name": name,
        "state": "up",
        "heartbeat": NOW,
        "cpus": cpus,
        "ram_mb": ram_mb,
        "cpu_ratio": 4.0,
        "ram_ratio": 1.0,
        "vcpus_used": 0,
        "ram_mb_used": 0,
        "labels": {},
        "traits": frozenset(),
        "aggregates": frozenset(),
    }
    fields.update(kw)
    return HostEntry(**fields)  # type: ignore[arg-type]


def vm(
    name: str, host_id: str, vcpus: int = 1, ram_mb: int = 1024, cpu: float | None = 0.5, **kw: object
) -> VMSnap:
    fields: dict[str, object] = {
        "id": name,
        "name": name,
        "host_id": host_id,
        "vcpus": vcpus,
        "ram_mb": ram_mb,
        "cpu": cpu,
        "state": "running",
        "task_state": None,
        "moved_at": None,
        "group_id": None,
    }
    fields.update(kw)
    return VMSnap(**fields)  # type: ignore[arg-type]


def snapshot(
    hosts: list[HostEntry], vms: list[VMSnap], groups: dict[str, GroupSnap] | None = None
) -> Snapshot:
    """Host counters are the sums of their VMs, as placement keeps them."""
    for i, h in enumerate(hosts):
        h.idx = i
        h.vcpus_used = sum(v.vcpus for v in vms if v.host_id == h.id)
        h.ram_mb_used = sum(v.ram_mb for v in vms if v.host_id == h.id)
    return Snapshot(hosts=hosts, vms=vms, groups=groups or {}, now=NOW)


def after_placement(snap: Snapshot, p: Plan) -> dict[str, str]:
    where = {v.id: v.host_id for v in snap.vms}
    for m in p.moves:
        assert where[m.vm_id] == m.source
        where[m.vm_id] = m.target
    return where


def test_moves_half_of_a_loaded_host_to_an_empty_one() -> None:
    snap = snapshot([host("a"), host("b")], [vm(f"v{i}", "a") for i in range(4)])
    p = plan(snap, Options())
    assert [m.target for m in p.moves] == ["b", "b"]
    assert p.imbalance_after < p.imbalance_before and p.imbalance_after == pytest.approx(0, abs=1e-9)
    assert {h.name: h.vms for h in p.after} == {"a": 2, "b": 2}
    assert "a is at" in p.moves[0].reason


def test_balanced_cluster_gets_an_empty_plan() -> None:
    snap = snapshot([host("a"), host("b"), host("c")], [vm(f"v{i}", "abc"[i % 3]) for i in range(9)])
    p = plan(snap, Options())
    assert p.moves == [] and p.imbalance_after == p.imbalance_before


def test_no_tiny_moves_below_the_threshold() -> None:
    # a: 2 vCPU of 32 allocated, b: 1: loads differ by ~3 points, under the 10-point threshold
    snap = snapshot(
        [host("a"), host("b")], [vm("v1", "a", cpu=0.1), vm("v2", "a", cpu=0.1), vm("v3", "b", cpu=0.1)]
    )
    assert plan(snap, Options()).moves == []
    assert plan(snap, Options(threshold=0.01)).moves == []  # no move lowers the imbalance either


def test_a_plan_below_the_minimum_improvement_is_empty() -> None:
    snap = snapshot([host("a"), host("b")], [vm("v1", "a"), vm("v2", "a")])
    p = plan(snap, Options())
    assert len(p.moves) == 1 and p.imbalance_before - p.imbalance_after > 0.05
    p = plan(snap, Options(min_improvement=p.imbalance_before - p.imbalance_after + 0.01))
    assert p.moves == [] and p.after == p.before and p.imbalance_after == p.imbalance_before


def test_cool_down_busy_and_stopped_vms_stay() -> None:
    vms = [
        vm("recent", "a", moved_at=NOW - 60),
        vm("busy", "a", task_state="rebooting"),
        vm("stopped", "a", state="stopped"),
        vm("old", "a", moved_at=NOW - 4000),
    ]
    p = plan(snapshot([host("a"), host("b")], vms), Options(cooldown_s=1800))
    assert [m.vm_id for m in p.moves] == ["old"]
    assert p.skipped == {"cool-down": 1, "busy": 1, "not running": 1}


def test_filters_maintenance_traits_aggregates_and_ratios() -> None:
    hosts = [
        host("a"),
        host("maint", state="maintenance"),
        host("silent", heartbeat=NOW - 600),
        host("gpu", traits=frozenset({"gpu"})),
        host("tiny", cpus=1, cpu_ratio=1.0),
        host("agg", aggregates=frozenset({"fast"})),
    ]
    vms = [vm(f"v{i}", "a", vcpus=2, spec=RequestSpec(forbidden_traits=frozenset({"gpu"}))) for i in range(6)]
    vms += [vm(f"w{i}", "a", vcpus=2, spec=RequestSpec(aggregate="fast")) for i in range(2)]
    p = plan(snapshot(hosts, vms), Options(max_moves=20))
    targets = {m.vm_id: m.target for m in p.moves}
    assert targets and set(targets.values()) <= {"agg"}, targets
    assert all(v.startswith("v") or t == "agg" for v, t in targets.items())
    assert {h.name for h in p.before} == {"a", "gpu", "tiny", "agg"}  # maintenance and silent hosts sit out


def test_anti_affinity_is_never_broken_and_affinity_members_stay() -> None:
    groups = {"anti": GroupSnap("anti-affinity", hard=False), "aff": GroupSnap("affinity", hard=True)}
    vms = [
        vm("x1", "a", group_id="anti"),
        vm("x2", "b", group_id="anti"),
        vm("y1", "a", group_id="aff"),
        vm("y2", "a", group_id="aff"),
        vm("z", "a", vcpus=4),
    ]
    p = plan(snapshot([host("a"), host("b")], vms, groups), Options(threshold=0.01, max_moves=5))
    moved = {m.vm_id for m in p.moves}
    assert "x1" not in moved and "y1" not in moved and "y2" not in moved
    assert p.skipped.get("affinity group") == 2


def test_check_moves_replays_a_reviewed_plan_or_says_why_not() -> None:
    snap = snapshot([host("a"), host("b", cpus=1, cpu_ratio=1.0)], [vm("v1", "a"), vm("v2", "a")])
    p = check_moves(snap, Options(), [("v1", "a", "b")])
    assert [(m.vm_id, m.target) for m in p.moves] == [("v1", "b")]
    with pytest.raises(PlanRejected) as exc:
        check_moves(snap, Options(), [("v1", "a", "b"), ("v2", "a", "b")])
    assert exc.value.index == 1 and "vCPU free" in exc.value.reason
    with pytest.raises(PlanRejected, match="no longer on"):
        check_moves(snap, Options(), [("v1", "b", "a")])


@st.composite
def clusters(draw: st.DrawFn) -> Snapshot:
    n_hosts = draw(st.integers(2, 8))
    hosts = [
        host(
            f"h{i}",
            cpus=draw(st.sampled_from([2, 4, 8])),
            ram_mb=draw(st.sampled_from([4096, 8192, 16384])),
            cpu_ratio=draw(st.sampled_from([1.0, 2.0, 4.0])),
            traits=frozenset({"gpu"}) if draw(st.booleans()) else frozenset(),
        )
        for i in range(n_hosts)
    ]
    groups = {"g": GroupSnap("anti-affinity", hard=True)}
    free = {h.id: [h.cpus * h.cpu_ratio, float(h.ram_mb)] for h in hosts}
    vms: list[VMSnap] = []
    grouped: set[str] = set()
    for i in range(draw(st.integers(0, 30))):
        h = draw(st.sampled_from(hosts))
        vcpus, ram = draw(st.sampled_from([1, 2, 4])), draw(st.sampled_from([256, 1024, 2048]))
        if free[h.id][0] < vcpus or free[h.id][1] < ram:
            continue
        free[h.id][0] -= vcpus
        free[h.id][1] -= ram
        group = "g" if h.id not in grouped and draw(st.booleans()) else None
        if group:
            grouped.add(h.id)
        vms.append(
            vm(
                f"v{i}",
                h.id,
                vcpus=vcpus,
                ram_mb=ram,
                cpu=draw(st.none() | st.floats(0, 4)),
                group_id=group,
                moved_at=draw(st.none() | st.sampled_from([NOW - 10, NOW - 10_000])),
                spec=RequestSpec(required_traits=frozenset({"gpu"}))
                if draw(st.booleans())
                else RequestSpec(),
            )
        )
    return snapshot(hosts, vms, groups)


@settings(max_examples=300, deadline=None)
@given(snap=clusters(), max_moves=st.integers(1, 10), threshold=st.sampled_from([0.01, 0.05, 0.1, 0.3]))
def test_plans_keep_every_rule(snap: Snapshot, max_moves: int, threshold: float) -> None:
    p = plan(snap, Options(max_moves=max_moves, threshold=threshold, cooldown_s=1800))
    assert len(p.moves) <= max_moves
    assert len({m.vm_id for m in p.moves}) == len(p.moves)
    where = after_placement(snap, p)
    by_id = {v.id: v for v in snap.vms}
    hosts = {h.id: h for h in snap.hosts}
    for h in snap.hosts:
        mine = [by_id[v] for v, hid in where.items() if hid == h.id]
        assert sum(v.vcpus for v in mine) <= h.cpus * h.cpu_ratio
        assert sum(v.ram_mb for v in mine) <= h.ram_mb * h.ram_ratio
    members = Counter(hid for v, hid in where.items() if by_id[v].group_id == "g")
    assert all(c <= 1 for c in members.values()), "anti-affinity broken"
    for m in p.moves:
        v = by_id[m.vm_id]
        assert v.moved_at is None or NOW - v.moved_at >= 1800, "moved within the cool-down"
        assert v.spec.required_traits <= hosts[m.target].traits
    if p.moves:
        assert p.imbalance_after < p.imbalance_before
    else:
        assert p.imbalance_after == pytest.approx(p.imbalance_before)
    # the next plan, on the cluster this one leaves (moved VMs cooling down), never moves them back
    moved = {m.vm_id for m in p.moves}
    for v in snap.vms:
        v.host_id = where[v.id]
        if v.id in moved:
            v.moved_at = NOW
    again = plan(
        snapshot(snap.hosts, snap.vms, snap.groups), Options(max_moves=max_moves, threshold=threshold)
    )
    assert not moved & {m.vm_id for m in again.moves}


@settings(max_examples=100, deadline=None)
@given(per_host=st.integers(0, 6), n=st.integers(1, 6), cpu=st.floats(0, 1))
def test_identical_hosts_with_identical_vms_get_no_moves(per_host: int, n: int, cpu: float) -> None:
    hosts = [host(f"h{i}") for i in range(n)]
    vms = [vm(f"v{i}-{k}", h.id, cpu=cpu) for i, h in enumerate(hosts) for k in range(per_host)]
    assert plan(snapshot(hosts, vms), Options(threshold=0.01)).moves == []

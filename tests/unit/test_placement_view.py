"""The in-memory placement view: filters, spread/pack order, counters kept sorted as claims land."""

from __future__ import annotations

import random
import time

from novacron.compute.placement import PlacementView, RequestSpec
from novacron.compute.placement.view import HostEntry, static_refusal


def _view(*hosts: HostEntry) -> PlacementView:
    view = PlacementView()
    view.hosts = list(hosts)
    view.by_id = {h.id: h.idx for h in hosts}
    view._host_specs = [[] for _ in hosts]
    view.loaded_at = time.monotonic()
    return view


def _host(idx: int, ram_mb: int = 8192, cpus: int = 4, **kw: object) -> HostEntry:
    fields: dict[str, object] = {
        "state": "up",
        "heartbeat": time.time(),
        "labels": {},
        "traits": frozenset(),
        "aggregates": frozenset(),
        "vcpus_used": 0,
        "ram_mb_used": 0,
    }
    fields.update(kw)
    return HostEntry(
        idx=idx,
        id=f"h{idx}",
        name=f"h{idx}",
        cpus=cpus,
        ram_mb=ram_mb,
        cpu_ratio=4.0,
        ram_ratio=1.0,
        **fields,  # type: ignore[arg-type]
    )


def test_spread_takes_most_free_ram_pack_the_tightest_fit() -> None:
    view = _view(_host(0, 4096), _host(1, 16384), _host(2, 8192))
    assert view.select(RequestSpec(), 1, 1024, "spread") == 1
    assert view.select(RequestSpec(), 1, 1024, "pack") == 0
    assert view.select(RequestSpec(), 1, 10000, "pack") == 1  # only the big one fits
    assert view.select(RequestSpec(), 1, 20000, "spread") is None


def test_adjust_keeps_candidates_sorted_and_vcpu_is_checked() -> None:
    view = _view(_host(0, 8192, cpus=1), _host(1, 8192, cpus=1))
    spec = RequestSpec()
    placed = []
    for _ in range(8):  # 2 hosts x 4 vCPU
        idx = view.select(spec, 1, 512, "spread")
        assert idx is not None
        view.adjust(view.hosts[idx].id, 1, 512)
        placed.append(idx)
    assert sorted(placed) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert view.select(spec, 1, 512, "spread") is None  # RAM left, no vCPU
    view.adjust("h0", -1, -512)
    assert view.select(spec, 1, 512, "pack") == 0


def test_static_filters_and_liveness() -> None:
    gpu = _host(0, traits=frozenset({"gpu"}), labels={"zone": "a"}, aggregates=frozenset({"agg-1"}))
    plain = _host(1, labels={"zone": "b"})
    down = _host(2, 65536, state="maintenance")
    dead = _host(3, 65536, heartbeat=time.time() - 3600)
    view = _view(gpu, plain, down, dead)
    assert view.select(RequestSpec(required_traits=frozenset({"gpu"})), 1, 64, "spread") == 0
    assert view.select(RequestSpec(forbidden_traits=frozenset({"gpu"})), 1, 64, "spread") == 1
    assert view.select(RequestSpec(labels=(("zone", "a"),)), 1, 64, "spread") == 0
    assert view.select(RequestSpec(aggregate="agg-1"), 1, 64, "pack") == 0
    assert view.select(RequestSpec(aggregate="agg-2"), 1, 64, "pack") is None
    assert view.select(RequestSpec(), 1, 64, "spread", exclude={0, 1}) is None  # 2 and 3 never qualify
    assert static_refusal(down, RequestSpec()) == "in maintenance"
    assert static_refusal(plain, RequestSpec(labels=(("zone", "a"),))) == "label zone=b, zone=a requested"
    reasons = dict(view.explain(RequestSpec(required_traits=frozenset({"gpu"})), 1, 64))
    assert reasons == {
        "h0": "fits",
        "h1": "lacks trait gpu",
        "h2": "in maintenance",
        "h3": "lacks trait gpu",
    }
    assert dict(view.explain(RequestSpec(), 1, 64))["h3"] == "no heartbeat"


def test_select_matches_a_brute_force_scan() -> None:
    rng = random.Random(3)
    hosts = [
        _host(
            i,
            rng.choice((4096, 8192, 16384)),
            cpus=rng.choice((1, 2)),
            traits=frozenset({"gpu"} if i % 4 else ()),
        )
        for i in range(60)
    ]
    view = _view(*hosts)
    specs = [RequestSpec(), RequestSpec(required_traits=frozenset({"gpu"}))]
    for step in range(400):
        spec, strategy = specs[step % 2], ("spread", "pack")[step % 3 % 2]
        v, r = rng.choice((1, 2)), rng.choice((256, 1024, 4096))
        fits = [
            h
            for h in view.hosts
            if h.free_vcpus >= v and h.free_ram_mb >= r and static_refusal(h, spec) is None
        ]
        got = view.select(spec, v, r, strategy)
        if not fits:
            assert got is None
            continue
        want = (max if strategy == "spread" else min)(fits, key=lambda h: (h.free_ram_mb, h.idx)).idx
        assert got == want, (step, strategy)
        view.adjust(view.hosts[got].id, v, r)

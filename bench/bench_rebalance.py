"""Rebalance plan time with 1,000 hosts and 20,000 VMs.

SCALE SIMULATION: no hypervisor runs. The code measured is the production path,
``novacron.compute.rebalance`` (what ``POST /v1/cluster/rebalance`` calls).

1. The planner alone (``rebalance.plan``, pure) over a snapshot built in memory: 1,000 hosts
   (64 CPUs, 256 GiB, ratios 4.0 / 1.0, 10 % with trait ``gpu``), 20,000 VMs of 1-4 vCPU and
   512-4096 MiB with a measured CPU use of 0-100 % of their vCPUs, skewed so that the first 100
   hosts carry three times the VMs of the others; a VM in ten is in one of 500 anti-affinity
   groups, a VM in five forbids ``gpu``, a VM in four moved within the cool-down. Timed for
   ``max_moves`` 10, 50 and 100, and on a balanced cluster (every host alike: an empty plan).
2. End to end on SQLite (file, WAL): ``load_snapshot`` (hosts, aggregates, VMs, groups, and the CPU
   rate of every VM from a ``LiveSamples`` holding 60 samples per VM) then ``plan``, on the
   population of ``bench_placement.py`` (the same hosts; VMs spread round-robin).

Run: .venv/bin/python bench/bench_rebalance.py [--hosts 1000] [--vms 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

from bench_placement import populate
from common import load, machine
from sqlalchemy import select

from novacron.compute import rebalance
from novacron.compute.placement.spec import RequestSpec
from novacron.compute.placement.view import HostEntry
from novacron.compute.reports import LiveSamples
from novacron.db.base import Database
from novacron.db.migrate import upgrade
from novacron.db.models import VM


def snapshot(n_hosts: int, n_vms: int, rng: random.Random, skewed: bool) -> rebalance.Snapshot:
    now = time.time()
    hosts = [
        HostEntry(
            idx=i,
            id=f"host-{i:04d}",
            name=f"sim-{i:04d}",
            state="up",
            heartbeat=now,
            cpus=64,
            ram_mb=262144,
            cpu_ratio=4.0,
            ram_ratio=1.0,
            vcpus_used=0,
            ram_mb_used=0,
            labels={"zone": "abc"[i % 3]},
            traits=frozenset({"gpu"}) if i % 10 == 0 else frozenset(),
            aggregates=frozenset(),
        )
        for i in range(n_hosts)
    ]
    # skewed: the first tenth of the hosts is drawn three times as often
    weights = [3 if skewed and i < n_hosts // 10 else 1 for i in range(n_hosts)]
    groups = {f"g{k}": rebalance.GroupSnap("anti-affinity", True) for k in range(500)}
    vms = []
    for i in range(n_vms):
        vcpus, ram = (2, 2048) if not skewed else (rng.choice((1, 2, 4)), rng.choice((512, 1024, 2048, 4096)))
        h = hosts[rng.choices(range(n_hosts), weights)[0] if skewed else i % n_hosts]
        if h.vcpus_used + vcpus > h.cpus * h.cpu_ratio or h.ram_mb_used + ram > h.ram_mb * h.ram_ratio:
            continue
        h.vcpus_used += vcpus
        h.ram_mb_used += ram
        vms.append(
            rebalance.VMSnap(
                id=f"vm-{i:05d}",
                name=f"vm-{i}",
                host_id=h.id,
                vcpus=vcpus,
                ram_mb=ram,
                cpu=rng.uniform(0, vcpus) if skewed else 1.0,
                state="running",
                task_state=None,
                moved_at=now - 60 if skewed and i % 4 == 0 else None,
                group_id=f"g{(i // 10) % 500}" if skewed and i % 10 == 0 else None,
                spec=RequestSpec(forbidden_traits=frozenset({"gpu"})) if i % 5 == 0 else RequestSpec(),
            )
        )
    return rebalance.Snapshot(hosts=hosts, vms=vms, groups=groups, now=now)


def timed(snap: rebalance.Snapshot, options: rebalance.Options, repeat: int) -> tuple[float, rebalance.Plan]:
    times, plan = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        plan = rebalance.plan(snap, options)
        times.append(time.perf_counter() - t0)
    assert plan is not None
    return statistics.median(times), plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--vms", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"# {machine()}; {load()}", flush=True)
    rng = random.Random(11)
    snap = snapshot(args.hosts, args.vms, rng, skewed=True)
    print(f"in-memory snapshot: {len(snap.hosts)} hosts, {len(snap.vms)} VMs (skewed)")
    for max_moves in (10, 50, 100):
        secs, plan = timed(snap, rebalance.Options(max_moves=max_moves, threshold=0.05), args.repeat)
        print(
            f"  plan, max_moves={max_moves}: median {secs * 1000:.1f} ms ({len(plan.moves)} moves; "
            f"imbalance {plan.imbalance_before:.4f} -> {plan.imbalance_after:.4f}, "
            f"spread {plan.spread_before:.1%} -> {plan.spread_after:.1%})"
        )
    balanced = snapshot(args.hosts, args.vms, rng, skewed=False)
    secs, plan = timed(balanced, rebalance.Options(), args.repeat)
    assert not plan.moves
    print(f"  plan on a balanced cluster ({len(balanced.vms)} VMs): median {secs * 1000:.1f} ms, 0 moves")

    with tempfile.TemporaryDirectory(prefix="ncbench") as tmp:
        db = Database(f"sqlite:///{tmp}/bench.db")
        upgrade(db)
        populate(db, args.hosts, args.vms, random.Random(7))
        metrics = LiveSamples()
        with db.session() as s:
            for vm_id, vcpus in s.execute(select(VM.id, VM.vcpus)):
                busy = rng.uniform(0, vcpus)
                for k in range(60):
                    metrics.add(vm_id, {"time": float(k), "cpu_time_s": busy * k})
        loads, plans = [], []
        for _ in range(args.repeat):
            with db.read_session() as s:
                t0 = time.perf_counter()
                snap = rebalance.load_snapshot(s, metrics)
                t1 = time.perf_counter()
                plan = rebalance.plan(snap, rebalance.Options(max_moves=10))
                t2 = time.perf_counter()
            loads.append(t1 - t0)
            plans.append(t2 - t1)
        print(
            f"SQLite: load_snapshot median {statistics.median(loads) * 1000:.0f} ms, "
            f"plan (max_moves=10) median {statistics.median(plans) * 1000:.0f} ms "
            f"({len(plan.moves)} moves; {len(snap.vms)} VMs)"
        )
        db.engine.dispose()
    print(f"# {load()}")


if __name__ == "__main__":
    main()

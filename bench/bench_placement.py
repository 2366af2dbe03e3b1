"""Placement decisions per second with 1,000 hosts and 20,000 VMs.

SCALE SIMULATION: the hosts and VMs are rows in the store (what the scheduler reads); no hypervisor
runs, and none is needed: the scheduler never talks to one. The code measured is the production
path, ``novacron.compute.placement`` (the one the create task calls).

Setup: 1,000 hosts (64 CPUs, 256 GiB, ratios 4.0 / 1.0; 10 % carry the trait ``gpu``; labels
zone=a|b|c), 20,000 VMs of 1-4 vCPU and 512-4096 MiB spread over them as allocations (written in
bulk, then ``reconcile_usage`` makes the counters their sums). Then:

1. decisions/s: ``PlacementView.select`` (filters + weigher, the decision a claim makes before its
   conditional UPDATE) for a mix of requests: plain, ``required_traits=[gpu]``, ``forbidden_traits=[gpu]``,
   ``labels={zone: b}``; spread and pack. Each decision is applied to the view (``adjust``) as a
   successful claim would be, so the candidate lists really move.
2. claims/s: ``claim(session, vm)`` end to end, one transaction per VM, committed: view decision,
   conditional UPDATE of the host counters, allocation insert, ``host_id``, COMMIT; on SQLite (file,
   WAL) and, with ``--postgres``, on a throwaway PostgreSQL 15 (tests/services/postgres.py).
3. Same with N threads (``--threads``) to show claims under contention stay exact (the run checks
   that no host is over its ratios and counters equal the VM rows).

Peer: Nomad placed about 3,300 allocations/s in its million-container test (C2M); the goal here is
at least 5,000 decisions/s.

Run: .venv/bin/python bench/bench_placement.py [--hosts 1000] [--vms 20000] [--decisions 20000]
     [--claims 2000] [--threads 4] [--postgres]
"""

from __future__ import annotations

import argparse
import random
import secrets
import sys
import tempfile
import threading
import time
from typing import Any

from common import ROOT, load, machine
from sqlalchemy import func, insert, select, update

from novacron.compute.placement import RequestSpec, claim, reconcile_usage, view_for
from novacron.db.base import Database, new_id, utcnow
from novacron.db.migrate import upgrade
from novacron.db.models import VM, Allocation, Host, Project, Tenant

SPECS = [
    RequestSpec(),
    RequestSpec(required_traits=frozenset({"gpu"})),
    RequestSpec(forbidden_traits=frozenset({"gpu"})),
    RequestSpec(labels=(("zone", "b"),)),
]


def populate(db: Database, n_hosts: int, n_vms: int, rng: random.Random) -> tuple[str, str]:
    now = utcnow()
    with db.session() as s:
        t = Tenant(id=new_id("tenant"), name="bench")
        s.add(t)
        s.flush()
        p = Project(id=new_id("project"), tenant_id=t.id, name="main")
        s.add(p)
        s.flush()
        hosts = [
            {
                "id": new_id("host"),
                "name": f"sim-{i:04d}",
                "driver": "simulated",
                "accelerator": "tcg",
                "cpus": 64,
                "cpu_model": "sim",
                "ram_mb": 262144,
                "disk_gb": 4096,
                "state": "up",
                "last_heartbeat": now,
                "cpu_allocation_ratio": 4.0,
                "ram_allocation_ratio": 1.0,
                "labels": {"zone": "abc"[i % 3]},
                "traits": ["gpu"] if i % 10 == 0 else [],
                "created_at": now,
                "updated_at": now,
                "version": 1,
            }
            for i in range(n_hosts)
        ]
        s.execute(insert(Host), hosts)
        vms, allocs = [], []
        for i in range(n_vms):
            vm_id = new_id("vm")
            vcpus, ram = rng.choice((1, 2, 4)), rng.choice((512, 1024, 2048, 4096))
            host = hosts[i % n_hosts]["id"]
            vms.append(
                {
                    "id": vm_id,
                    "project_id": p.id,
                    "tenant_id": t.id,
                    "name": f"vm-{i}",
                    "host_id": host,
                    "vcpus": vcpus,
                    "ram_mb": ram,
                    "disk_gb": 1,
                    "user_data": "",
                    "meta": {},
                    "placement": {},
                    "desired_state": "running",
                    "state": "running",
                    "created_at": now,
                    "updated_at": now,
                    "version": 1,
                }
            )
            allocs.append({"vm_id": vm_id, "host_id": host, "vcpus": vcpus, "ram_mb": ram, "created_at": now})
        for k in range(0, n_vms, 5000):
            s.execute(insert(VM), vms[k : k + 5000])
            s.execute(insert(Allocation), allocs[k : k + 5000])
    with db.session() as s:
        reconcile_usage(s)
    return t.id, p.id


def bench_decisions(db: Database, n: int, strategy: str, rng: random.Random) -> float:
    heartbeat(db)
    with db.session() as s:
        view = view_for(s)
        view.refresh(s)
    t0 = time.perf_counter()
    made = 0
    for i in range(n):
        spec = SPECS[i % len(SPECS)]
        vcpus, ram = rng.choice((1, 2, 4)), rng.choice((512, 1024, 2048))
        idx = view.select(spec, vcpus, ram, strategy)
        if idx is not None:
            view.adjust(view.hosts[idx].id, vcpus, ram)
            made += 1
    elapsed = time.perf_counter() - t0
    assert made == n, f"only {made} of {n} decisions found a host"
    # undo: the next run starts from the database again
    view.invalidate()
    return n / elapsed


def new_vms(db: Database, tp: tuple[str, str], n: int, rng: random.Random) -> list[str]:
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {
            "id": new_id("vm"),
            "project_id": tp[1],
            "tenant_id": tp[0],
            "name": f"new-{secrets.token_hex(6)}",
            "vcpus": rng.choice((1, 2)),
            "ram_mb": rng.choice((512, 1024)),
            "disk_gb": 1,
            "user_data": "",
            "meta": {},
            "placement": SPECS[i % len(SPECS)].to_dict(),
            "desired_state": "running",
            "state": "building",
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        for i in range(n)
    ]
    with db.session() as s:
        s.execute(insert(VM), rows)
    return [r["id"] for r in rows]


def heartbeat(db: Database) -> None:
    """What the simulated hosts' agents would do: a host silent for 30 s gets no new VMs."""
    with db.session() as s:
        s.execute(update(Host).values(last_heartbeat=utcnow()))


def bench_claims(db: Database, vm_ids: list[str], threads: int) -> float:
    heartbeat(db)
    chunks = [vm_ids[i::threads] for i in range(threads)]
    errors: list[BaseException] = []

    def worker(ids: list[str]) -> None:
        try:
            for vm_id in ids:
                with db.session() as s:
                    vm = s.get(VM, vm_id)
                    assert vm is not None
                    claim(s, vm, "spread")
        except BaseException as exc:
            errors.append(exc)

    ts = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return len(vm_ids) / elapsed


def check_consistent(db: Database) -> None:
    with db.session() as s:
        over = s.scalar(
            select(func.count())
            .select_from(Host)
            .where(
                (Host.vcpus_used > Host.cpus * Host.cpu_allocation_ratio)
                | (Host.ram_mb_used > Host.ram_mb * Host.ram_allocation_ratio)
            )
        )
        assert over == 0, f"{over} hosts over their ratios"
        assert reconcile_usage(s) == {}, "counters drifted from the VM rows"


def run(label: str, db: Database, args: argparse.Namespace) -> list[str]:
    rng = random.Random(7)
    t0 = time.perf_counter()
    tp = populate(db, args.hosts, args.vms, rng)
    setup_s = time.perf_counter() - t0
    lines = [f"{label}: {args.hosts} hosts, {args.vms} VMs (setup {setup_s:.1f} s)"]
    for strategy in ("spread", "pack"):
        rate = bench_decisions(db, args.decisions, strategy, rng)
        lines.append(f"  decisions/s ({strategy}, {args.decisions} decisions, 4 request kinds): {rate:,.0f}")
    with db.session() as s:
        view_for(s).refresh(s)
    rate = bench_claims(db, new_vms(db, tp, args.claims, rng), 1)
    lines.append(f"  claims/s (1 thread, one committed transaction each, {args.claims} VMs): {rate:,.0f}")
    rate = bench_claims(db, new_vms(db, tp, args.claims, rng), args.threads)
    lines.append(f"  claims/s ({args.threads} threads, {args.claims} VMs): {rate:,.0f}")
    check_consistent(db)
    lines.append("  consistent: no host over its ratios, counters equal the VM rows")
    for line in lines:
        print(line, flush=True)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--vms", type=int, default=20000)
    ap.add_argument("--decisions", type=int, default=20000)
    ap.add_argument("--claims", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--postgres", action="store_true", help="also run on a throwaway PostgreSQL 15")
    args = ap.parse_args()
    print(f"# {machine()}; {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ncbench") as tmp:
        db = Database(f"sqlite:///{tmp}/bench.db")
        upgrade(db)
        run("SQLite", db, args)
        db.engine.dispose()
    if args.postgres:
        sys.path.insert(0, str(ROOT))
        from tests.services.postgres import start_postgres

        pg = start_postgres()
        try:
            db = Database(pg.create_database(f"bench_{secrets.token_hex(4)}"))
            upgrade(db)
            run("PostgreSQL 15", db, args)
            db.engine.dispose()
        finally:
            pg.stop()
    print(f"# {load()}")


if __name__ == "__main__":
    main()

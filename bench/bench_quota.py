"""Quota check plus reservation (charge) latency on a 5-level tree of 10,000 projects.

The tree: system → 10 tenants → 1,000 projects → 9,000 sub-projects (10,000 projects in all) →
one user node per create, limits on every level. Each measured operation is one VM's worth of
quota taken the way the create path takes it: in its own transaction, the project row loaded, the
chain and its limits resolved (one recursive query), the policy rules read, the 20 counters
(vcpus, ram_mb, disk_gb, vms on 5 nodes) moved and checked (one UPDATE ... FROM VALUES), the
budget probed, the charge row written, committed. Then the same for the release.
Compares against: the same charge on a flat tree (project → system only), the shape of Keystone's
two-level unified limits, the only peer structure available here (no Keystone on this machine).
Run: .venv/bin/python bench/bench_quota.py [creates] [sqlite|postgres URL]
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, insert

from novacron.db.base import Database, new_id, utcnow
from novacron.db.migrate import upgrade
from novacron.db.models import Project, QuotaLimit, QuotaNode, QuotaUsage, Tenant, User
from novacron.identity.permissions import permissions_of
from novacron.identity.principal import Principal
from novacron.quota import enforce
from novacron.quota.registry import RESOURCES, vm_amounts

TENANTS, PROJECTS_PER_TENANT, SUBS_PER_PROJECT = 10, 100, 9
AMOUNTS = vm_amounts(1, 128, 1)


def pct(samples: list[float], q: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(len(samples) * q))] * 1e3


Row = dict[str, Any]  # one table row for a Core bulk insert


def build(db: Database, nested: bool) -> tuple[list[str], list[Principal]]:
    now = utcnow()
    stamp = {"created_at": now, "updated_at": now, "version": 1}
    tenants: list[Row] = []
    projects: list[Row] = []
    nodes: list[Row] = []
    limits: list[Row] = []
    users: list[Row] = []
    leaves: list[str] = []
    for t in range(TENANTS):
        tid = f"tenant-b{t:04d}"
        tenants.append({"id": tid, "name": f"t{t}", "description": "", **stamp})
        nodes.append(
            {
                "id": f"tenant:{tid}",
                "kind": "tenant",
                "parent_id": "system",
                "tenant_id": tid,
                "ref_id": tid,
                "depth": 1,
                **stamp,
            }
        )
        limits += [{"node_id": f"tenant:{tid}", "resource": "vcpus", "limit": 10**6}]
        users.append(
            {
                "id": f"user-b{t:04d}",
                "tenant_id": tid,
                "username": f"u{t}",
                "password_hash": "x",
                "role": "member",
                "disabled": False,
                **stamp,
            }
        )
        for p in range(PROJECTS_PER_TENANT):
            pid = f"project-b{t:02d}{p:03d}"
            projects.append(
                {"id": pid, "tenant_id": tid, "name": f"p{p}", "description": "", "parent_id": None, **stamp}
            )
            nodes.append(
                {
                    "id": f"project:{pid}",
                    "kind": "project",
                    "parent_id": f"tenant:{tid}",
                    "tenant_id": tid,
                    "ref_id": pid,
                    "depth": 2,
                    **stamp,
                }
            )
            limits += [
                {"node_id": f"project:{pid}", "resource": r, "limit": v}
                for r, v in (("vcpus", 10**5), ("vms", 10**5))
            ]
            leaves.append(pid)
            for s in range(SUBS_PER_PROJECT if nested else 0):
                sid = f"project-b{t:02d}{p:03d}{s}"
                projects.append(
                    {
                        "id": sid,
                        "tenant_id": tid,
                        "name": f"p{p}-{s}",
                        "description": "",
                        "parent_id": pid,
                        **stamp,
                    }
                )
                nodes.append(
                    {
                        "id": f"project:{sid}",
                        "kind": "project",
                        "parent_id": f"project:{pid}",
                        "tenant_id": tid,
                        "ref_id": sid,
                        "depth": 3,
                        **stamp,
                    }
                )
                limits += [{"node_id": f"project:{sid}", "resource": "vcpus", "limit": 10**4}]
                leaves.append(sid)
    # steady state: each project's user node and every counter exist (a first create inserts them)
    for leaf in leaves:
        tid, uid = f"tenant-b{int(leaf[9:11]):04d}", f"user-b{int(leaf[9:11]):04d}"
        nodes.append(
            {
                "id": f"user:{leaf}:{uid}",
                "kind": "user",
                "parent_id": f"project:{leaf}",
                "tenant_id": tid,
                "ref_id": uid,
                "depth": 4 if len(leaf) > 14 else 3,
                **stamp,
            }
        )
    usage = [{"node_id": n["id"], "resource": r, "used": 0} for n in nodes for r in RESOURCES]
    usage += [{"node_id": "system", "resource": r, "used": 0} for r in RESOURCES]
    with db.engine.begin() as conn:
        for model, rows in (
            (Tenant, tenants),
            (User, users),
            (Project, projects),
            (QuotaNode, nodes),
            (QuotaLimit, limits),
        ):
            conn.execute(insert(cast(Table, model.__table__)), rows)
        conn.execute(insert(cast(Table, QuotaUsage.__table__)), usage)
    principals = [
        Principal(u["id"], u["username"], "member", u["tenant_id"], permissions_of("member")) for u in users
    ]
    return leaves, principals


def run(url: str, creates: int, nested: bool) -> dict[str, float]:
    db = Database(url)
    upgrade(db)
    leaves, principals = build(db, nested)
    rng = random.Random(7)
    charge_t, release_t, made = [], [], []
    cpu0 = time.process_time()
    for _ in range(creates):
        pid = rng.choice(leaves)
        principal = principals[int(pid[9:11])]
        rid = new_id("vm")
        t0 = time.perf_counter()
        with db.session() as s:
            project = s.get(Project, pid)
            assert project is not None
            enforce.charge(s, principal, project, "vm", rid, AMOUNTS)
        charge_t.append(time.perf_counter() - t0)
        made.append(rid)
    cpu_ms = (time.process_time() - cpu0) / creates * 1e3
    for rid in made:
        t0 = time.perf_counter()
        with db.session() as s:
            enforce.release(s, "vm", rid)
        release_t.append(time.perf_counter() - t0)
    db.engine.dispose()
    return {
        "projects": len(leaves),
        "charge_p50": pct(charge_t, 0.5),
        "charge_p99": pct(charge_t, 0.99),
        "charge_mean": statistics.mean(charge_t) * 1e3,
        "charge_cpu_ms": cpu_ms,
        "release_p50": pct(release_t, 0.5),
        "release_p99": pct(release_t, 0.99),
    }


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    creates = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    for nested, label in (
        (True, "5-level tree (system/tenant/project/sub-project/user)"),
        (False, "flat: project/user under the tenant (Keystone-like depth)"),
    ):
        state = Path(tempfile.mkdtemp(prefix="nc-bench-quota-"))
        url = sys.argv[2] if len(sys.argv) > 2 else f"sqlite:///{state}/novacron.db"
        r = run(url, creates, nested)
        print(f"{label}: {r['projects']:,} projects, {creates} creates")
        print(
            f"  charge (check+reserve+commit): p50 {r['charge_p50']:.2f} ms  p99 {r['charge_p99']:.2f} ms  "
            f"mean {r['charge_mean']:.2f} ms  (CPU {r['charge_cpu_ms']:.2f} ms per charge)"
        )
        print(f"  release:                     p50 {r['release_p50']:.2f} ms  p99 {r['release_p99']:.2f} ms")
        if len(sys.argv) > 2:
            break


if __name__ == "__main__":
    main()

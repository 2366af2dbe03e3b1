"""Token verification plus the authorization decision, with 1,000 custom roles and 10,000 role
assignments: p50/p99 of TokenService.authenticate() (the user row, the revocation list, and the
user's assignments joined to the tenant's custom roles, on SQLite) followed by authz.decide() on a
labelled VM of a project.

Each of 1,000 users (role ``none``: every permission comes from assignments) holds 10 assignments
among 1,000 custom roles of 8 to 24 permissions: tenant-wide, per project, and label-conditioned
(``team=<colour>``), so each decision walks the user's grants. Two targets: a VM one of the user's
grants covers (allowed) and one none does (denied, with every reason built).
Wall time and the thread's CPU time are both printed: on a shared, loaded machine the wall p99 is
the scheduler's (the process waiting for a core), the CPU p99 is the work's.
Compares against: bench/bench_token_verify.py (the same verification without assignments).
Run: .venv/bin/python bench/bench_authz.py [calls]
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

from novacron.config import Settings
from novacron.db.base import Database, new_id
from novacron.db.models import CustomRole, Project, RoleAssignment, Tenant, User
from novacron.identity import authz
from novacron.identity.roles import CATALOGUE
from novacron.identity.tokens import TokenService

ROLES = 1000
USERS = 1000
PER_USER = 10
TEAMS = ("blue", "red", "green", "amber")


def pct(samples: list[float], q: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * q))] * 1e6


def seed(db: Database, tokens: TokenService) -> tuple[list[str], list[str]]:
    """The tables, and an access token per user (100 of them) with the projects."""
    rnd = random.Random(7)
    catalogue = sorted(CATALOGUE)
    vm_perms = [p for p in catalogue if p.startswith("vm:")]
    with db.session() as s:
        tenant = Tenant(id=new_id("tenant"), name="bench")
        s.add(tenant)
        s.flush()
        projects = [Project(id=new_id("project"), tenant_id=tenant.id, name=f"p{i}") for i in range(20)]
        s.add_all(projects)
        for i in range(ROLES):
            perms = set(rnd.sample(catalogue, rnd.randint(8, 24))) | {rnd.choice(vm_perms)}
            labels = {"team": TEAMS[i % len(TEAMS)]} if i % 3 == 0 else {}
            s.add(
                CustomRole(
                    id=new_id("role"),
                    tenant_id=tenant.id,
                    name=f"r{i}",
                    permissions=sorted(perms),
                    labels=labels,
                )
            )
        users = [
            User(id=new_id("user"), username=f"u{i}", password_hash="-", role="none", tenant_id=tenant.id)
            for i in range(USERS)
        ]
        s.add_all(users)
        s.flush()
        for u in users:
            for j in range(PER_USER):
                s.add(
                    RoleAssignment(
                        id=new_id("ra"),
                        tenant_id=tenant.id,
                        user_id=u.id,
                        role=f"r{rnd.randrange(ROLES)}",
                        project_id=rnd.choice(projects).id if j % 2 else None,
                        labels={"team": rnd.choice(TEAMS)} if j % 3 == 0 else {},
                    )
                )
        s.flush()
        access = [tokens.issue(s, u)[0] for u in users[:100]]
        return access, [p.id for p in projects]


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    state = Path(tempfile.mkdtemp(prefix="nc-bench-"))
    settings = Settings(state_dir=state, database_url=f"sqlite:///{state}/novacron.db", embedded_agent=False)
    db = Database(settings.database_url)
    db.create_all()
    tokens = TokenService(db, settings)
    access, projects = seed(db, tokens)
    with db.session() as s:
        print(f"custom roles={s.query(CustomRole).count()} assignments={s.query(RoleAssignment).count()}")

    def run(label: str, cold: bool) -> None:
        wall: list[float] = []
        cpu: list[float] = []
        alone: list[float] = []
        allowed = 0
        for i in range(calls):
            token = access[i % len(access)]
            project, labels = projects[i % len(projects)], {"team": TEAMS[i % 4]}
            if cold:
                tokens._verified.clear()  # force the ECDSA signature check every time
            t0, c0 = time.perf_counter(), time.thread_time()
            principal = tokens.authenticate(token)
            scope = authz.ResourceScope(principal.tenant_id, project, labels, "VM 'x'")
            d0 = time.perf_counter()
            decision = authz.decide(principal, "vm:delete", scope)
            t1, c1 = time.perf_counter(), time.thread_time()
            wall.append(t1 - t0)
            cpu.append(c1 - c0)
            alone.append(t1 - d0)
            allowed += decision.allowed
        for samples in (wall, cpu, alone):
            samples.sort()
        print(
            f"{label:<42} calls={calls} wall p50={pct(wall, 0.50):6.1f} p99={pct(wall, 0.99):8.1f} us | "
            f"cpu p50={pct(cpu, 0.50):6.1f} p99={pct(cpu, 0.99):6.1f} us | "
            f"decide alone p99={pct(alone, 0.99):5.1f} us | allowed={allowed * 100 // calls}%"
        )

    run("authenticate+decide (warm, sig cached)", cold=False)
    run("authenticate+decide (cold, ES256 verify)", cold=True)


if __name__ == "__main__":
    main()

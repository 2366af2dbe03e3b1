"""Scaling-policy decision time per group with 1,000 groups (the issue's goal: under 100 ms each).

SYNTHETIC ROWS: a fresh SQLite state database (migrated as the server migrates it) holds 1,000
scaling groups of 3 members in service, each with a target-tracking CPU policy; every 4th group
also has a step policy and every 10th a predictive one (a day of 5-minute history). No QEMU and no
metrics store: the metric source is in memory (each group's load a daily wave with noise), so the
figures are those of the evaluation itself: its database reads (policies, members, last action),
the policy functions, the forecast, and the writes of a decision (activity, scale task, event).

One round is ``evaluate.evaluate_all`` over every group, each in its own transaction, as the
controller runs it; each group's ``evaluate_group`` call is timed. After round 1 the controller's
``forecasts`` job fits the predictive policies' forecasters (``forecast.fit``, timed apart: it is
not part of a decision); in rounds 2+ the predictive policies forecast from them (given the new
samples), each round 15 simulated minutes after the last, so loads have moved and groups scale.

Run: .venv/bin/python bench/bench_autoscale_decisions.py [--groups 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from common import load, machine, pct

from novacron.autoscaling.evaluate import Evaluator, Reading, Span, evaluate_all
from novacron.config import Settings
from novacron.context import Context
from novacron.db.base import Database
from novacron.db.migrate import upgrade
from novacron.db.models import (
    Flavor,
    Project,
    ScalingGroup,
    ScalingGroupMember,
    ScalingPolicy,
    Tenant,
)
from novacron.identity.tokens import TokenService

DAY_S = 86_400
#: rounds this far apart in simulated time: loads move, forecasts are not yet refitted (REFIT_S)
ROUND_APART_S = 900


class Synthetic:
    """Each group's CPU load: a daily wave (20-80 %) shifted per group, with noise."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)

    def read(self, session: Any, group: ScalingGroup, metric: str, ready: list[str], span: Span) -> Reading:
        start, end, step = span
        phase = (hash(group.id) % 1000) / 1000 * DAY_S
        times = [start + step * i for i in range(int((end - start) // step) + 1)]
        per_vm = [50 + 30 * math.sin(2 * math.pi * (t + phase) / DAY_S) + self.rng.gauss(0, 3) for t in times]
        return Reading(per_vm[-1], [v * len(ready) for v in per_vm], step)


def build(db: Database, groups: int) -> None:
    with db.session() as s:
        s.add(Tenant(id="t-bench", name="bench"))
        s.flush()
        s.add(Project(id="p-bench", tenant_id="t-bench", name="bench"))
        s.add(Flavor(id="fl-bench", name="bench", vcpus=1, ram_mb=512, disk_gb=1))
        s.flush()
        for g in range(groups):
            gid = f"asg-{g:04d}"
            s.add(ScalingGroup(
                id=gid, project_id="p-bench", tenant_id="t-bench", name=f"g{g:04d}",
                template={"flavor_id": "fl-bench", "image_id": "img", "networks": [], "labels": {}},
                min_size=1, max_size=20, desired=3, lb_pools=[], status="active", cooldown_s=0,
            ))  # fmt: skip
            s.flush()
            for m in range(3):
                s.add(ScalingGroupMember(vm_id=f"vm-{g:04d}-{m}", group_id=gid, state="in_service"))
            policies: list[tuple[str, dict[str, Any]]] = [
                ("target_tracking", {"metric": "cpu", "target": 60.0})
            ]
            if g % 4 == 0:
                steps = [
                    {"lower": 85.0, "upper": None, "change": 2},
                    {"lower": 0.0, "upper": 15.0, "change": -1},
                ]
                policies.append(("step", {"metric": "cpu", "steps": steps}))
            if g % 10 == 0:
                policies.append(("predictive", {
                    "metric": "cpu", "target": 60.0, "boot_delay_s": 300, "max_mase": 1.0, "max_width": 1.0,
                    "history_s": DAY_S, "step_s": 300,
                }))  # fmt: skip
            for i, (kind, params) in enumerate(policies):
                s.add(ScalingPolicy(id=f"asp-{g:04d}-{i}", group_id=gid, tenant_id="t-bench", name=kind,
                                    kind=kind, params=params, enabled=True, state={}))  # fmt: skip


class Timed(Evaluator):
    """The evaluator, each group's decision timed."""

    samples: list[float]
    predictive: list[float]

    def evaluate_group(
        self, session: Any, group: ScalingGroup, enabled: list[ScalingPolicy], now: float
    ) -> Any:
        started = time.perf_counter()
        try:
            return super().evaluate_group(session, group, enabled, now)
        finally:
            took = time.perf_counter() - started
            self.samples.append(took)
            if any(p.kind == "predictive" for p in enabled):
                self.predictive.append(took)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"# {machine()}; {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(state_dir=Path(tmp), database_url=f"sqlite:///{tmp}/nc.db", embedded_agent=False)
        settings.ensure_dirs()
        db = Database(settings.database_url)
        upgrade(db)
        build(db, args.groups)
        ctx = Context(settings=settings, db=db, tokens=TokenService(db, settings))
        evaluator = Timed(Synthetic())
        now = time.time()
        for r in range(args.rounds):
            evaluator.samples, evaluator.predictive = [], []
            started = time.perf_counter()
            acted = evaluate_all(ctx, evaluator, now=now + r * ROUND_APART_S)
            wall = time.perf_counter() - started
            fit_started = time.perf_counter()
            fits = evaluator.forecasts.refit(budget_s=math.inf)
            fit_s = time.perf_counter() - fit_started
            ms = [x * 1000 for x in evaluator.samples]
            pred = [x * 1000 for x in evaluator.predictive]
            kind = "no forecast yet" if r == 0 else "forecasting"
            print(
                f"round {r + 1} {kind:15s} {len(ms)} groups, {acted:4d} scaled; per group"
                f" p50 {pct(ms, 0.5):6.2f} ms  p99 {pct(ms, 0.99):7.2f} ms  max {max(ms):7.2f} ms;"
                f" the {len(pred)} with a predictive policy: p50 {pct(pred, 0.5):7.2f} ms"
                f"  max {max(pred):7.2f} ms; round {wall:.2f} s"
                + (
                    f"; then {fits} forecasts fitted in {fit_s:.1f} s ({fit_s / fits * 1000:.0f} ms each)"
                    if fits
                    else ""
                )
            )
        db.engine.dispose()
    print(f"# after: {load()}")


if __name__ == "__main__":
    main()

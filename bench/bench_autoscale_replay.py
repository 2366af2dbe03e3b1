"""Replay of real load traces through HPA, target tracking and predictive; decision and fit times.

1. Every CSV of the NAB folders (`--category`, repeatable; default `realAWSCloudwatch`, the
   development set the policy was designed on, and `realAdExchange`, held out for validation with
   the `artificial*` folders) replayed through each policy with
   `novacron.autoscaling.replay` (the code behind `novacron autoscale replay`): VM-hours,
   SLO-violation minutes, scaling actions. ONE scaling rule for every file, fixed before any run:
   load = value / mean(value) x 4 x capacity x target, i.e. the trace's mean load needs exactly 4
   VMs at the target utilisation (the mean, not the median: several traces have a median of 0).
   Capacity 100 load units per VM, target 0.6, boot delay 300 s, decisions every 60 s (the CLI's
   default is 15 s, HPA's sync period: 4x the run time, for the same 5-minute window). Goal
   (issue 15): predictive has at most HPA's violation minutes with >= 20 % fewer VM-hours, or at
   most HPA's VM-hours with >= 50 % fewer violation minutes. Each folder ends with its count and
   the median change of predictive's VM-hours and violation minutes against HPA.
2. Forecast fit time per series: `forecast.fit` on each whole trace (its chosen model and MASE).
3. Decision time per group with 1,000 groups: each group holds a fitted forecaster (the traces'
   fits, copied round-robin), then every decision round each group takes its new sample, forecasts
   over the boot delay and runs `policies.predictive`; the time per group per round is reported.

Run: .venv/bin/python bench/bench_autoscale_replay.py [DATA_DIR] [--category NAME ...]
     [--groups 1000] [--rounds 5] [--replay-only]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path

from common import load, machine, pct

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from novacron.autoscaling import forecast  # noqa: E402
from novacron.autoscaling.policies import LoadForecast, Observation, horizon_steps, predictive  # noqa: E402
from novacron.autoscaling.replay import POLICIES, ReplayConfig, ReplayResult, read_trace, replay  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "nab"
CATEGORIES = ("realAWSCloudwatch", "realAdExchange")
CAPACITY, TARGET, BOOT_S, MEAN_VMS, INTERVAL_S = 100.0, 0.6, 300.0, 4, 60.0


def scaled(values: list[float]) -> list[float]:
    """The one scaling rule: the trace's mean load needs `MEAN_VMS` VMs at the target."""
    mean = statistics.fmean(values)
    return [v / mean * MEAN_VMS * CAPACITY * TARGET for v in values] if mean > 0 else values


def meets(pred: ReplayResult, hpa: ReplayResult) -> bool:
    cheaper = pred.violation_minutes <= hpa.violation_minutes and pred.vm_hours <= 0.8 * hpa.vm_hours
    safer = pred.vm_hours <= hpa.vm_hours and pred.violation_minutes <= 0.5 * hpa.violation_minutes
    return cheaper or safer


def change(value: float, reference: float) -> float:
    """`value` relative to `reference`, in percent (0 when both are 0)."""
    return 100 * (value - reference) / reference if reference else (0.0 if value == 0 else math.inf)


def _needed(loads: list[float]) -> list[int]:
    """The VMs each sample needs at the target (at least one)."""
    return [max(1, math.ceil(load / (CAPACITY * TARGET) - 1e-9)) for load in loads if load == load]


def oracle_vm_hours(loads: list[float], step_s: float) -> float:
    """The fewest VM-hours that never run above the target: perfect foresight, instant boots, each
    sample sized exactly. No policy can be violation-free for less."""
    return sum(_needed(loads)) * step_s / 3600


def clairvoyant_can_meet(loads: list[float], step_s: float, hpa: ReplayResult) -> bool:
    """Whether the goal is reachable at all by a policy that is never more than one VM short: the
    oracle above, then as many samples one VM short as it takes to come down to HPA's VM-hours
    (each costs its minutes in violation), within half HPA's violation minutes."""
    oracle = oracle_vm_hours(loads, step_s)
    if oracle <= hpa.vm_hours:
        return True  # no violation at all, at most HPA's VM-hours
    short_minutes = (oracle - hpa.vm_hours) * 60
    cuttable_minutes = sum(n >= 2 for n in _needed(loads)) * step_s / 60
    return short_minutes <= min(cuttable_minutes, 0.5 * hpa.violation_minutes)


def replay_all(files: list[Path]) -> dict[str, tuple[float, list[float]]]:
    print(f"{'trace':34} " + " ".join(f"{p + ' VMh/viol min/actions':>30}" for p in POLICIES) + "  goal")
    met, series, costs, violations, oracle_dearer, reachable = 0, {}, [], [], 0, 0
    for path in files:
        step_s, raw = read_trace(path)
        loads = scaled(raw)
        series[path.name] = (step_s, loads)
        results = {
            p: replay(loads, step_s, ReplayConfig(p, CAPACITY, BOOT_S, TARGET, interval_s=INTERVAL_S))
            for p in POLICIES
        }
        ok = meets(results["predictive"], results["hpa"])
        costs.append(change(results["predictive"].vm_hours, results["hpa"].vm_hours))
        violations.append(change(results["predictive"].violation_minutes, results["hpa"].violation_minutes))
        met += ok
        oracle_dearer += oracle_vm_hours(loads, step_s) > results["hpa"].vm_hours
        reachable += clairvoyant_can_meet(loads, step_s, results["hpa"])
        cells = " ".join(
            f"{r.vm_hours:>12.1f} {r.violation_minutes:>9.0f} {r.actions:>7}" for r in results.values()
        )
        pred = results["predictive"]
        print(f"{path.name[:34]:34} {cells}  {'MET' if ok else 'no'}  fits={pred.fits} {pred.models}")
    print(f"goal met on {met} of {len(files)} traces ({load()})")
    print(f"a violation-free oracle (foresight, instant boots) costs more than HPA on {oracle_dearer}")
    print(f"the goal is reachable by any policy never more than one VM short on at most {reachable}")
    if files:
        print(
            f"predictive vs hpa: VM-hours median {statistics.median(costs):+.1f} % "
            f"({min(costs):+.1f} to {max(costs):+.1f}), violation minutes median "
            f"{statistics.median(violations):+.1f} % ({min(violations):+.1f} to {max(violations):+.1f})"
        )
    return series


def fit_times(series: dict[str, tuple[float, list[float]]]) -> list[forecast.Forecaster]:
    fits, seconds = [], []
    for name, (step_s, loads) in series.items():
        started = time.perf_counter()
        fitted = forecast.fit(loads, step_s, horizon_steps(BOOT_S + INTERVAL_S, step_s))
        seconds.append(time.perf_counter() - started)
        fits.append(fitted)
        print(
            f"fit {name[:34]:34} {len(loads):>5} samples  {seconds[-1] * 1000:7.0f} ms  "
            f"{fitted.model:15} MASE {fitted.mase:.3f}"
        )
    print(
        f"fit time per series: median {statistics.median(seconds) * 1000:.0f} ms, "
        f"max {max(seconds) * 1000:.0f} ms ({load()})"
    )
    return fits


def decision_times(fits: list[forecast.Forecaster], groups: int, rounds: int) -> None:
    fleet = [copy.deepcopy(fits[g % len(fits)]) for g in range(groups)]
    per_group: list[float] = []
    for r in range(rounds):
        started = time.perf_counter()
        for g, fitted in enumerate(fleet):
            t0 = time.perf_counter()
            fitted.update([2.0 + (g % 7) * 0.1 + r * 0.01])
            mean, lower, upper = fitted.predict(2)
            obs = Observation(now=r * INTERVAL_S, current=4, ready=4, metric=0.55)
            fc = LoadForecast(mean.tolist(), lower.tolist(), upper.tolist(), fitted.mase, fitted.model)
            predictive(obs, TARGET, fc)
            per_group.append(time.perf_counter() - t0)
        total = time.perf_counter() - started
        print(f"round {r}: {groups} groups decided in {total * 1000:.0f} ms")
    print(
        f"decision time per group: median {statistics.median(per_group) * 1000:.3f} ms, "
        f"p99 {pct(per_group, 0.99) * 1000:.3f} ms, max {max(per_group) * 1000:.3f} ms ({load()})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--category", action="append", help=f"NAB folder(s) (default: {CATEGORIES})")
    parser.add_argument("--replay-only", action="store_true", help="skip the fit and decision timings")
    args = parser.parse_args()
    print(machine())
    series: dict[str, tuple[float, list[float]]] = {}
    for category in args.category or CATEGORIES:
        print(f"== {category}")
        series |= replay_all(sorted((args.data / category).glob("*.csv")))
    if args.replay_only:
        return
    fits = fit_times(series)
    decision_times(fits, args.groups, args.rounds)


if __name__ == "__main__":
    main()

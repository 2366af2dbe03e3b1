"""The replay: a load trace run through a simulated scaling group with the real policy code.

The trace (`timestamp,value`; value = load units) is put on a regular grid at its median sampling
step (gaps interpolated); each sample holds for one step. The policy runs every `interval_s` (15 s,
the HPA controller's sync period: its 5-minute scale-down window is wall time, so deciding once per
5-minute sample would make it vanish). At each decision the group is observed (the load averaged
over its serving VMs, as utilisation of `capacity_per_vm`), the policy decides, and the group
resizes: new VMs serve `boot_delay_s` later, removals take booting VMs first (newest first), then
serving ones. Figures, integrated exactly between decisions:

- VM-hours: every VM in the group, booting ones too (they are paid for);
- SLO-violation minutes: time where the load exceeds serving VMs x capacity x target utilisation;
- actions: decisions that changed the group's size.

The predictive policy fits its forecaster on the history so far only (never a later sample), first
once `min_history_s` of it exists, then again every `refit_every_s`; between fits the forecaster
takes each new sample without refitting, as a real group's would while a refit runs elsewhere.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from novacron.autoscaling import forecast
from novacron.autoscaling.policies import (
    HPA_SCALE_DOWN_WINDOW_S,
    Confidence,
    Decision,
    LoadForecast,
    Observation,
    horizon_steps,
    hpa,
    needed,
    predictive,
    target_tracking,
)
from novacron.monitoring.anomaly.nab import epoch_seconds, read_series

POLICIES = ("hpa", "target", "predictive")


@dataclass(frozen=True)
class ReplayConfig:
    """The simulated group and its policy."""

    policy: str
    capacity_per_vm: float
    boot_delay_s: float
    target_util: float
    min_size: int = 1
    max_size: int = 10_000
    cooldown_s: float = 300.0
    refit_every_s: float = 86_400.0
    min_history_s: float = 86_400.0
    interval_s: float = 15.0  # how often the policy runs: HPA's sync period, not the trace's step
    confidence: Confidence = field(default_factory=Confidence)


@dataclass
class ReplayResult:
    """The replay's figures; `as_dict` is what `--json` prints."""

    policy: str
    vm_hours: float
    violation_minutes: float
    actions: int
    steps: int
    step_s: float
    hours: float
    peak_vms: int
    fits: int = 0
    fit_seconds: float = 0.0
    decision_ms: float = 0.0  # mean time of one decision (forecast update and policy), fits excluded
    models: dict[str, int] = field(default_factory=dict)  # how many fits chose each model

    def as_dict(self) -> dict[str, object]:
        return {
            "policy": self.policy,
            "vm_hours": round(self.vm_hours, 4),
            "violation_minutes": round(self.violation_minutes, 4),
            "actions": self.actions,
            "steps": self.steps,
            "step_s": self.step_s,
            "hours": round(self.hours, 4),
            "peak_vms": self.peak_vms,
            "fits": self.fits,
            "fit_seconds": round(self.fit_seconds, 4),
            "decision_ms": round(self.decision_ms, 4),
            "models": self.models,
        }


def _stamp(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return epoch_seconds(text)


def read_trace(path: Path) -> tuple[float, list[float]]:
    """A `timestamp,value` CSV (ISO timestamps or Unix seconds) on a regular grid: (step_s, loads)."""
    stamps, values = read_series(path)
    if len(values) < 2:
        raise ValueError(f"{path}: a trace needs at least two samples")
    times = np.asarray([_stamp(s) for s in stamps], dtype=float)
    order = np.argsort(times, kind="stable")
    times, loads = times[order], np.asarray(values, dtype=float)[order]
    keep = np.concatenate([[True], np.diff(times) > 0])  # a repeated timestamp: its first sample
    times, loads = times[keep], loads[keep]
    step = float(np.median(np.diff(times)))
    grid = times[0] + step * np.arange(int(round((times[-1] - times[0]) / step)) + 1)
    return step, np.interp(grid, times, loads).tolist()


@dataclass
class _Group:
    """The simulated group: when each VM serves (booting ones serve in the future)."""

    ready_at: list[float]

    def ready(self, t: float) -> int:
        return sum(1 for r in self.ready_at if r <= t)

    def resize(self, desired: int, t: float, boot_delay_s: float) -> None:
        if desired > len(self.ready_at):
            self.ready_at += [t + boot_delay_s] * (desired - len(self.ready_at))
        elif desired < len(self.ready_at):
            self.ready_at.sort()  # serving (earliest) first: the newest booting VMs go first
            del self.ready_at[desired:]

    def violated_s(self, t: float, step_s: float, load: float, per_vm: float) -> float:
        """Seconds of [t, t + step_s) where `load` exceeds the serving VMs' `per_vm` each."""
        edges = sorted({t, t + step_s, *(r for r in self.ready_at if t < r < t + step_s)})
        return sum(
            b - a for a, b in zip(edges, edges[1:], strict=False) if load > self.ready(a) * per_vm + 1e-9
        )


class _Predictor:
    """The predictive policy's forecaster, refitted on the past only."""

    def __init__(self, config: ReplayConfig, step_s: float) -> None:
        self.config, self.step_s = config, step_s
        # the farthest sample a decision covers: until a VM started at the next decision serves
        self.horizon = horizon_steps(config.boot_delay_s + config.interval_s, step_s)
        self.fitted: forecast.Forecaster | None = None
        self.last_fit = -math.inf
        self.fits, self.fit_seconds = 0, 0.0
        self.models: dict[str, int] = {}
        self.ahead: tuple[list[float], list[float], list[float]] | None = None

    def observe(self, series: list[float], i: int, t: float) -> None:
        """Sample `i` (of time `t`) is the latest known: refit on `series[: i + 1]` when due, else
        the fitted forecaster takes that sample; then forecast the next samples."""
        known_s = (i + 1) * self.step_s
        if known_s >= self.config.min_history_s and t - self.last_fit >= self.config.refit_every_s:
            started = time.perf_counter()
            self.fitted = forecast.fit(series[: i + 1], self.step_s, self.horizon)
            self.fit_seconds += time.perf_counter() - started
            self.fits += 1
            self.models[self.fitted.model] = self.models.get(self.fitted.model, 0) + 1
            self.last_fit = t
        elif self.fitted is not None:
            self.fitted.update(series[i : i + 1])
        if self.fitted is not None:
            mean, lower, upper = self.fitted.predict(self.horizon)
            self.ahead = (mean.tolist(), lower.tolist(), upper.tolist())

    def load_forecast(self, into_sample_s: float) -> LoadForecast | None:
        """The forecast of the samples a decision `into_sample_s` into the current one covers."""
        if self.fitted is None or self.ahead is None:
            return None
        reach = into_sample_s + self.config.interval_s + self.config.boot_delay_s
        steps = max(0, math.ceil(reach / self.step_s - 1e-9) - 1)
        mean, lower, upper = (part[:steps] for part in self.ahead)
        return LoadForecast(mean, lower, upper, self.fitted.mase, self.fitted.model)


def _decide(
    config: ReplayConfig, obs: Observation, predictor: _Predictor | None, into_sample_s: float
) -> Decision:
    if config.policy == "hpa":
        return hpa(obs, config.target_util)
    if config.policy == "target":
        return target_tracking(obs, config.target_util, config.cooldown_s)
    assert predictor is not None
    planned = predictor.load_forecast(into_sample_s)
    return predictive(obs, config.target_util, planned, config.confidence, config.cooldown_s)


@dataclass
class _Tally:
    """The running figures and the policy's memory between decisions."""

    vm_s: float = 0.0
    violated_s: float = 0.0
    decide_s: float = 0.0
    actions: int = 0
    peak: int = 0
    decisions: int = 0
    last_action: float | None = None
    recent: list[tuple[float, int]] = field(default_factory=list)

    def remember(self, decision: Decision, t: float) -> None:
        if "recommendation" in decision.numbers:
            self.recent = [(rt, r) for rt, r in self.recent if t - rt < HPA_SCALE_DOWN_WINDOW_S]
            self.recent.append((t, int(decision.numbers["recommendation"])))


def _run_sample(
    config: ReplayConfig,
    group: _Group,
    tally: _Tally,
    sample: tuple[float, float, float],
    predictor: _Predictor | None,
) -> None:
    """Every decision within one sample `(start, step_s, load)`, and its figures."""
    t0, step_s, load = sample
    per_vm = config.capacity_per_vm * config.target_util
    t = t0
    while t < t0 + step_s - 1e-9:
        span = min(config.interval_s, t0 + step_s - t)
        started = time.perf_counter()
        ready = group.ready(t)
        obs = Observation(
            now=t,
            current=len(group.ready_at),
            ready=ready,
            metric=load / config.capacity_per_vm / ready if ready else 0.0,
            min_size=config.min_size,
            max_size=config.max_size,
            last_action_at=tally.last_action,
            recent=tuple(tally.recent),
        )
        decision = _decide(config, obs, predictor, t - t0)
        tally.decide_s += time.perf_counter() - started
        tally.decisions += 1
        tally.remember(decision, t)
        if decision.desired != obs.current:
            group.resize(decision.desired, t, config.boot_delay_s)
            tally.actions, tally.last_action = tally.actions + 1, t
        tally.peak = max(tally.peak, len(group.ready_at))
        tally.vm_s += len(group.ready_at) * span
        tally.violated_s += group.violated_s(t, span, load, per_vm)
        t += span


def replay(
    loads: list[float],
    step_s: float,
    config: ReplayConfig,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Run `loads` (one per `step_s`) through the group and its policy; `progress(i)` per sample."""
    if config.policy not in POLICIES:
        raise ValueError(f"unknown policy {config.policy!r} (one of {', '.join(POLICIES)})")
    if min(config.capacity_per_vm, step_s, config.interval_s) <= 0 or not 0 < config.target_util <= 1:
        raise ValueError("capacity, step and interval must be positive, the utilisation in (0, 1]")
    per_vm = config.capacity_per_vm * config.target_util
    start_size = max(config.min_size, min(config.max_size, needed(loads[0], per_vm)))
    group = _Group(ready_at=[-math.inf] * start_size)
    predictor = _Predictor(config, step_s) if config.policy == "predictive" else None
    utilisation = [x / config.capacity_per_vm for x in loads]  # load in VMs at 100 %: what is forecast
    tally = _Tally()
    for i, load in enumerate(loads):
        if predictor is not None:
            started = time.perf_counter()
            predictor.observe(utilisation, i, i * step_s)
            tally.decide_s += time.perf_counter() - started
        _run_sample(config, group, tally, (i * step_s, step_s, load), predictor)
        if progress is not None:
            progress(i)
    fit_s = predictor.fit_seconds if predictor else 0.0
    return ReplayResult(
        policy=config.policy,
        vm_hours=tally.vm_s / 3600,
        violation_minutes=tally.violated_s / 60,
        actions=tally.actions,
        steps=len(loads),
        step_s=step_s,
        hours=len(loads) * step_s / 3600,
        peak_vms=tally.peak,
        fits=predictor.fits if predictor else 0,
        fit_seconds=fit_s,
        decision_ms=1000 * (tally.decide_s - fit_s) / max(1, tally.decisions),
        models=predictor.models if predictor else {},
    )

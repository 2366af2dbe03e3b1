"""Scaling policies as pure functions: an observation of a group in, a `Decision` out.

Each policy kind is one function with no I/O and no clock of its own, so the group controller and
the offline replay (`replay.py`) run exactly the same code. What a policy remembers between
decisions (HPA's recent recommendations, the time of the last action) travels in the
`Observation`; the caller keeps it. Metric values are averages over the group's serving VMs, in the
target's unit (a utilisation fraction, requests per second per VM...), so the group's load is
`metric x ready` and the VMs that load needs at the target are `ceil(load / target)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

HPA_TOLERANCE = 0.1
HPA_SCALE_DOWN_WINDOW_S = 300.0
DEFAULT_COOLDOWN_S = 300.0
_EPS = 1e-9  # ceil(2.0000000001) must stay 2 when 2.0 went through a division


@dataclass(frozen=True)
class Observation:
    """A group as a policy sees it at `now` (Unix seconds)."""

    now: float
    current: int  # VMs in the group, booting ones included (they are paid for and on their way)
    ready: int  # VMs serving: the metric is their average (warming-up VMs are not measured)
    metric: float
    min_size: int = 1
    max_size: int = 100
    last_action_at: float | None = None  # the last scaling action, for cooldowns
    recent: tuple[tuple[float, int], ...] = ()  # (time, recommendation) of past HPA decisions

    @property
    def load(self) -> float:
        """The group's total load in the metric's unit."""
        return self.metric * self.ready

    def clamp(self, desired: int) -> int:
        return max(self.min_size, min(self.max_size, desired))


@dataclass(frozen=True)
class Decision:
    """A policy's answer: the size wanted, why (in words and in numbers), and which policy."""

    desired: int
    reason: str
    policy: str
    numbers: dict[str, float] = field(default_factory=dict)


def needed(load: float, target: float) -> int:
    """VMs that carry `load` at `target` each."""
    if target <= 0:
        raise ValueError("the target must be positive")
    return max(0, math.ceil(load / target - _EPS))


def _cooling(obs: Observation, cooldown_s: float) -> bool:
    return obs.last_action_at is not None and obs.now - obs.last_action_at < cooldown_s


def hpa(
    obs: Observation,
    target: float,
    tolerance: float = HPA_TOLERANCE,
    window_s: float = HPA_SCALE_DOWN_WINDOW_S,
) -> Decision:
    """The Kubernetes HPA rule: ceil(ready x metric / target), within tolerance keep the size;
    scale down only to the highest recommendation of the last `window_s` (stabilisation).

    `numbers["recommendation"]` is the unstabilised recommendation: the caller records it with
    `now` and passes the recent ones back in `Observation.recent`, as the HPA controller does."""
    ratio = obs.metric / target if target > 0 else math.inf
    if obs.ready == 0 or abs(ratio - 1.0) <= tolerance + _EPS:
        recommendation, why = obs.current, "within tolerance" if obs.ready else "no ready VM"
    elif ratio > 1 and obs.ready < obs.current:
        # scale-up with VMs still booting: HPA counts them at 0 %, so they take their share
        spread = obs.metric * obs.ready / (obs.current * target)
        if spread <= 1.0 + tolerance + _EPS:
            recommendation, why = obs.current, "booting VMs cover the load"
        else:
            recommendation, why = math.ceil(spread * obs.current - _EPS), f"metric/target {spread:.2f}"
    else:
        recommendation, why = math.ceil(ratio * obs.ready - _EPS), f"metric/target {ratio:.2f}"
    window = [r for t, r in obs.recent if obs.now - t < window_s] + [recommendation]
    down_limit = max(window)  # scale-up stabilisation window is 0 s: up_limit == recommendation
    desired = obs.current
    if desired < recommendation:
        desired = recommendation
    if desired > down_limit:
        desired = down_limit
        why += f"; scale-down held to the {window_s:.0f} s window's highest, {down_limit}"
    return Decision(
        desired=obs.clamp(desired),
        reason=why,
        policy="hpa",
        numbers={"ratio": ratio, "recommendation": recommendation, "stabilised": desired},
    )


def target_tracking(
    obs: Observation, target: float, scale_in_cooldown_s: float = DEFAULT_COOLDOWN_S
) -> Decision:
    """Keep the metric at `target`: scale out at once, scale in once the cooldown has passed."""
    want = needed(obs.load, target)
    numbers = {"load": obs.load, "needed": want}
    if want > obs.current:
        return Decision(obs.clamp(want), f"load needs {want} VMs", "target", numbers)
    if want < obs.current and _cooling(obs, scale_in_cooldown_s):
        return Decision(obs.clamp(obs.current), "scale-in waits for the cooldown", "target", numbers)
    return Decision(obs.clamp(want), f"load needs {want} VMs", "target", numbers)


@dataclass(frozen=True)
class Step:
    """When the metric is in [lower, upper) (no upper: unbounded), change the size by `change`."""

    lower: float
    upper: float | None
    change: int


def step_scaling(obs: Observation, steps: Sequence[Step], cooldown_s: float = DEFAULT_COOLDOWN_S) -> Decision:
    """Step scaling: the first step whose range holds the metric adds or removes its VMs."""
    numbers = {"metric": obs.metric}
    if _cooling(obs, cooldown_s):
        return Decision(obs.clamp(obs.current), "cooldown", "step", numbers)
    for step in steps:
        if step.lower <= obs.metric and (step.upper is None or obs.metric < step.upper):
            numbers["change"] = step.change
            reason = f"metric {obs.metric:g} in [{step.lower:g}, {step.upper}): {step.change:+d}"
            return Decision(obs.clamp(obs.current + step.change), reason, "step", numbers)
    return Decision(obs.clamp(obs.current), "no step matches", "step", numbers)


@dataclass(frozen=True)
class ScheduledAction:
    """From `at` ("HH:MM" UTC) on the given weekdays (0 = Monday), hold the group in these limits."""

    at: str
    min_size: int
    max_size: int
    desired: int | None = None
    days: frozenset[int] = frozenset(range(7))

    def last_start(self, now: float) -> float | None:
        """When this action last fired at or before `now` (within a week), or None."""
        hour, minute = (int(x) for x in self.at.split(":"))
        day_start = (now // 86_400) * 86_400
        for back in range(8):
            start = day_start - back * 86_400 + hour * 3600 + minute * 60
            weekday = datetime.fromtimestamp(start, UTC).weekday()
            if start <= now and weekday in self.days:
                return start
        return None


def scheduled(obs: Observation, actions: Sequence[ScheduledAction]) -> Decision:
    """The limits (and size) of the scheduled action that fired last; none fired: keep the size."""
    fired = [(start, a) for a in actions if (start := a.last_start(obs.now)) is not None]
    if not fired:
        return Decision(obs.clamp(obs.current), "no scheduled action yet", "scheduled")
    start, action = max(fired, key=lambda pair: pair[0])
    wanted = action.desired if action.desired is not None else obs.current
    desired = max(action.min_size, min(action.max_size, wanted))
    numbers = {"min_size": action.min_size, "max_size": action.max_size, "since": start}
    return Decision(obs.clamp(desired), f"scheduled at {action.at}", "scheduled", numbers)


@dataclass(frozen=True)
class LoadForecast:
    """The group's load over the steps a decision must cover, as `forecast.Forecaster` predicts."""

    mean: Sequence[float]
    lower: Sequence[float]
    upper: Sequence[float]
    mase: float
    model: str = ""


@dataclass(frozen=True)
class Confidence:
    """When a forecast is trusted: backtest MASE and interval widths at most these.

    The decision is a whole number of VMs, so a forecast helps choose it only when its interval
    pins that number down: `max_width_vms` bounds the interval's width at every step of the
    horizon in VMs at the target (1.0: the 80 % interval spans at most one VM's capacity). A wider
    interval (a spiky load: its spikes widen the backtest errors, yet come unannounced) would have
    the upper bound pay for load that may never come; target tracking pays only for load that has."""

    max_mase: float = 1.0
    max_width: float = 1.0  # (max upper - min lower) / mean at the horizon's peak
    use_upper: bool = True  # size for the interval's upper bound (safer) rather than the mean
    max_width_vms: float = 1.0  # max over the horizon's steps of (upper - lower) / target


def horizon_steps(boot_delay_s: float, step_s: float) -> int:
    """The next steps a decision made now must cover: a VM started at the next decision serves
    only a boot delay later, so until then the size decided now is all there is (at least one)."""
    return max(1, math.ceil(boot_delay_s / step_s - _EPS))


def predictive(
    obs: Observation,
    target: float,
    forecast: LoadForecast | None,
    confidence: Confidence | None = None,
    scale_in_cooldown_s: float = DEFAULT_COOLDOWN_S,
) -> Decision:
    """Size for a trusted forecast of the load over the horizon (until a VM started at the next
    decision would serve), never below what the load needs now; otherwise target tracking.

    Trusted (`Confidence`): backtest MASE at most 1, the 80 % interval over the horizon no wider
    than the forecast's peak, and at each step no wider than one VM's capacity at the target.

    The size is what the forecast's upper bound (the 80 % interval's: each step's load within it
    with 90 % probability) needs at its peak over the horizon, out or in. A scale-in it allows
    happens at once, without the cooldown: the horizon covers the time it would take to bring a
    removed VM back, which is all a scale-in cooldown guards against. The floor is the VMs the load
    needs now at the target (`needed`), so a wrong forecast costs VMs, never capacity the load
    already needs. Untrusted or missing, the forecast leaves `target_tracking` (with its cooldown)
    in charge."""
    reactive = target_tracking(obs, target, scale_in_cooldown_s)
    floor = obs.clamp(needed(obs.load, target))
    conf = confidence or Confidence()
    numbers = dict(reactive.numbers, floor=floor, reactive=reactive.desired)
    if forecast is None or not forecast.mean:
        return Decision(reactive.desired, "no forecast yet: " + reactive.reason, "predictive", numbers)
    peak_mean = max(forecast.mean)
    width = (max(forecast.upper) - min(forecast.lower)) / peak_mean if peak_mean > 0 else 0.0
    width_vms = max(u - lo for u, lo in zip(forecast.upper, forecast.lower, strict=True)) / target
    numbers.update(mase=forecast.mase, width=width, width_vms=width_vms, forecast_peak=peak_mean)
    trusted = width <= conf.max_width and width_vms <= conf.max_width_vms + _EPS
    if not (forecast.mase <= conf.max_mase and trusted):
        reason = (
            f"forecast not trusted (MASE {forecast.mase:.2f}, width {width:.2f}, "
            f"{width_vms:.2f} VMs): " + reactive.reason
        )
        return Decision(reactive.desired, reason, "predictive", numbers)
    planned_load = max(forecast.upper) if conf.use_upper else peak_mean
    ahead = needed(planned_load, target)
    desired = obs.clamp(max(ahead, floor))
    numbers.update(planned_load=planned_load, ahead=ahead)
    if desired > obs.current:
        reason = f"{forecast.model} forecasts {planned_load:.3g} over the horizon: {desired} VMs"
    elif desired < obs.current:
        reason = f"{forecast.model} bounds the horizon's load by {planned_load:.3g}: in now to {desired}"
    else:
        reason = f"{forecast.model} forecasts {planned_load:.3g} over the horizon: keep {desired}"
    return Decision(desired, reason, "predictive", numbers)

"""The policy functions: the HPA rule at its edges, target tracking, step, scheduled, predictive."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from novacron.autoscaling.policies import (
    Confidence,
    LoadForecast,
    Observation,
    ScheduledAction,
    Step,
    horizon_steps,
    hpa,
    predictive,
    scheduled,
    step_scaling,
    target_tracking,
)


def obs(metric: float, current: int = 4, ready: int | None = None, **kw: Any) -> Observation:
    serving = current if ready is None else ready
    return Observation(now=1000.0, current=current, ready=serving, metric=metric, **kw)


def test_hpa_scales_to_ceil_of_current_times_ratio() -> None:
    # 4 VMs at 0.9 for a 0.6 target: ceil(4 x 1.5) = 6
    d = hpa(obs(0.9), 0.6)
    assert (d.desired, d.policy, d.numbers["recommendation"]) == (6, "hpa", 6)


def test_hpa_tolerance_keeps_the_size_inside_ten_percent_and_not_beyond() -> None:
    assert hpa(obs(0.66), 0.6).desired == 4  # ratio 1.1: inside the tolerance
    assert hpa(obs(0.54), 0.6).desired == 4  # ratio 0.9: inside
    assert hpa(obs(0.67), 0.6).desired == 5  # ratio 1.117: ceil(4.47) = 5
    assert hpa(obs(0.3), 0.6).desired == 2  # ratio 0.5: 4 x 0.5


def test_hpa_counts_booting_vms_at_zero_on_scale_up() -> None:
    # 6 in the group, 2 serving at 0.9: spread over all 6 it is 0.3 for 0.6, the booting ones cover it
    d = hpa(obs(0.9, current=6, ready=2), 0.6)
    assert (d.desired, d.numbers["recommendation"]) == (6, 6)
    # 2 serving at 3.0 (load 6.0): over 6 VMs 1.0 for 0.6, ratio 1.67: ceil(1.67 x 6) = 10
    assert hpa(obs(3.0, current=6, ready=2), 0.6).desired == 10


def test_hpa_scale_down_waits_for_the_window_highest_recommendation() -> None:
    recent = ((750.0, 8), (800.0, 6), (950.0, 5))  # 750 is 250 s ago: inside the 300 s window
    assert hpa(obs(0.3, current=8, recent=recent), 0.6).desired == 8
    recent = ((700.0, 8), (800.0, 6), (950.0, 5))  # 700 is exactly 300 s ago: out of the window
    assert hpa(obs(0.3, current=8, recent=recent), 0.6).desired == 6
    # scale-up is not stabilised: a higher recommendation applies at once
    assert hpa(obs(1.2, current=4, recent=((990.0, 2),)), 0.6).desired == 8


def test_hpa_clamps_to_the_limits() -> None:
    assert hpa(obs(6.0, max_size=10), 0.6).desired == 10
    assert hpa(obs(0.01, min_size=3), 0.6).desired == 3


def test_target_tracking_scales_out_at_once_and_in_after_the_cooldown() -> None:
    assert target_tracking(obs(0.63), 0.6).desired == 5  # load 2.52 at 0.6: 4.2 -> 5, no tolerance
    cooling = obs(0.3, last_action_at=900.0)  # 100 s after an action
    assert target_tracking(cooling, 0.6).desired == 4
    assert target_tracking(obs(0.3, last_action_at=600.0), 0.6).desired == 2


def test_step_scaling_picks_the_step_holding_the_metric() -> None:
    steps = [Step(0.8, None, 3), Step(0.7, 0.8, 1), Step(0.0, 0.3, -1)]
    assert step_scaling(obs(0.85), steps).desired == 7
    assert step_scaling(obs(0.75), steps).desired == 5
    assert step_scaling(obs(0.5), steps).desired == 4
    assert step_scaling(obs(0.2), steps).desired == 3
    assert step_scaling(obs(0.85, last_action_at=950.0), steps).reason == "cooldown"


def test_scheduled_action_that_fired_last_sets_the_limits() -> None:
    monday_10 = datetime(2024, 1, 1, 10, 0, tzinfo=UTC).timestamp()  # 2024-01-01 is a Monday
    actions = [
        ScheduledAction(at="08:00", min_size=6, max_size=20, days=frozenset(range(5))),
        ScheduledAction(at="20:00", min_size=1, max_size=4),
    ]
    o = Observation(now=monday_10, current=2, ready=2, metric=0.5)
    assert scheduled(o, actions).desired == 6  # the 08:00 weekday action
    o = Observation(now=monday_10 + 11 * 3600, current=8, ready=8, metric=0.5)
    assert scheduled(o, actions).desired == 4  # 21:00: the evening action caps it
    sunday_10 = monday_10 - 86_400
    o = Observation(now=sunday_10, current=5, ready=5, metric=0.5)
    assert scheduled(o, actions).desired == 4  # no weekday action on Sunday: Saturday 20:00 holds


def forecast(peak: float, mase: float = 0.5, spread: float = 0.1) -> LoadForecast:
    return LoadForecast([peak], [peak * (1 - spread)], [peak * (1 + spread)], mase, "holt")


def test_predictive_scales_ahead_when_confident() -> None:
    # load 2.4 now (4 VMs); upper 6.24 at 0.6: 11; the interval 5.76-6.24 spans 0.8 VM at 0.6
    d = predictive(obs(0.6), 0.6, forecast(6.0, spread=0.04))
    assert d.desired == 11 and d.numbers["floor"] == 4 and d.numbers["width_vms"] == pytest.approx(0.8)
    d = predictive(obs(0.6), 0.6, forecast(6.0, spread=0.04), Confidence(use_upper=False))
    assert d.desired == 10


def test_predictive_never_goes_below_the_reactive_floor() -> None:
    for metric in (0.1, 0.6, 0.9, 1.5, 3.0):
        for peak in (0.0, 0.5, 2.0, 8.0):
            for mase in (0.2, 5.0):
                o = obs(metric, last_action_at=900.0)
                d = predictive(o, 0.6, forecast(peak, mase))
                assert d.desired >= target_tracking(o, 0.6).numbers["needed"]


def test_a_trusted_forecast_scales_in_at_once_but_not_below_the_load_now() -> None:
    # 8 VMs at 0.15 (load 1.2, needs 2), 100 s after the last action: target tracking waits
    o = obs(0.15, current=8, last_action_at=900.0)
    assert target_tracking(o, 0.6).desired == 8
    # the forecast's upper bound over the whole horizon (0.88 at most) needs 2 VMs: in now
    d = predictive(o, 0.6, forecast(0.8))
    assert d.desired == 2 and "in now" in d.reason
    # the forecast says the load falls to nothing: still the 2 VMs the load needs now
    assert predictive(o, 0.6, forecast(0.0)).desired == 2
    # the load comes back within the horizon (a later step's upper bound 3.3 needs 6): keep 6
    back = LoadForecast([0.8, 3.0], [0.7, 2.7], [0.9, 3.3], 0.5, "holt")
    assert predictive(o, 0.6, back).desired == 6
    # an untrusted forecast leaves target tracking's cooldown in charge
    assert predictive(o, 0.6, forecast(0.8, mase=1.5)).desired == 8


def test_predictive_sizes_for_the_peak_inside_the_horizon() -> None:
    # 4 VMs at the target now; the load peaks at 4.0 (upper 4.4) in the horizon's second step.
    # The rise itself is no uncertainty: each step's interval spans at most 0.8 / 0.6 = 1.33 VMs
    rising = LoadForecast([2.5, 4.0], [2.2, 3.6], [2.75, 4.4], 0.5, "holt")
    d = predictive(obs(0.6), 0.6, rising, Confidence(max_width_vms=1.5))
    assert d.desired == 8 and d.numbers["planned_load"] == 4.4  # ceil(4.4 / 0.6)
    assert d.numbers["width_vms"] == pytest.approx(0.8 / 0.6)
    # the same forecast with the default (one VM) is too vague to choose a size: target tracking
    assert predictive(obs(0.6), 0.6, rising).desired == 4
    # the peak has passed by the horizon's end: the group comes back in with the forecast at once
    falling = LoadForecast([2.0, 1.0], [1.8, 0.9], [2.2, 1.1], 0.5, "holt")
    assert predictive(obs(0.2, current=8, last_action_at=990.0), 0.6, falling).desired == 4


def test_predictive_ignores_an_untrusted_forecast() -> None:
    assert predictive(obs(0.6), 0.6, forecast(6.0, mase=1.5)).desired == 4  # worse than seasonal naive
    assert predictive(obs(0.6), 0.6, forecast(6.0, spread=0.9)).desired == 4  # interval wider than it
    # a spike-widened interval: 2.4-6.0 spans 6 VMs at 0.6, the forecast's peak 4.2 needs 7, yet
    # the load needs 4 now: pay for load that has come, not for the top of a vague interval
    spiky = LoadForecast([4.2], [2.4], [6.0], 0.3, "holt")
    d = predictive(obs(0.6), 0.6, spiky)
    assert d.desired == 4 and "6.00 VMs" in d.reason
    assert predictive(obs(0.6), 0.6, spiky, Confidence(max_width_vms=6.0)).desired == 10  # ceil(6 / 0.6)


def test_trust_needs_the_interval_within_one_vm_at_every_step() -> None:
    # one VM at the 0.6 target is 0.6 load units: an interval exactly that wide is trusted
    edge = LoadForecast([2.9, 3.0], [2.7, 2.7], [3.1, 3.3], 0.5, "holt")  # widths 0.4 and 0.6
    assert predictive(obs(0.6), 0.6, edge).desired == 6  # ceil(3.3 / 0.6)
    wider = LoadForecast([2.9, 3.0], [2.7, 2.6], [3.1, 3.3], 0.5, "holt")  # 0.7 at the second step
    assert predictive(obs(0.6), 0.6, wider).desired == 4
    assert "no forecast" in predictive(obs(0.6), 0.6, None).reason


def test_horizon_covers_the_boot_delay() -> None:
    assert horizon_steps(300, 300) == 1
    assert horizon_steps(301, 300) == 2
    assert horizon_steps(0, 300) == 1

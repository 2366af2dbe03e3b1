"""The evaluation loop's decisions without a database or a store: how policies vote and combine,
and the predictive policy forecasting only once its forecaster was fitted apart."""

from __future__ import annotations

import math
from typing import Any

import pytest

from novacron.autoscaling.evaluate import Evaluator, GroupState, Reading, Span
from novacron.autoscaling.group_policies import normal_params
from novacron.db.models import ScalingGroup, ScalingPolicy
from novacron.errors import InvalidInput

DAY_S = 86_400.0
STEP_S = 300.0


class Wave:
    """Each VM's CPU %: a daily wave 30-70 % (3 VMs), sampled every 5 minutes up to ``span``'s end."""

    def read(self, session: Any, group: ScalingGroup, metric: str, ready: list[str], span: Span) -> Reading:
        start, end, step = span
        n = int((end - start) // step) + 1
        per_vm = [50 + 20 * math.sin(2 * math.pi * (start + step * i) / DAY_S) for i in range(n)]
        return Reading(per_vm[-1], [v * len(ready) for v in per_vm], step)


def _state(desired: int = 3) -> GroupState:
    group = ScalingGroup(id="asg-1", name="web", desired=desired, min_size=1, max_size=20, cooldown_s=300)
    return GroupState(group, ["vm-a", "vm-b", "vm-c"], last_action_at=None)


def _policy(kind: str, params: dict[str, Any], name: str | None = None) -> ScalingPolicy:
    return ScalingPolicy(id=f"asp-{name or kind}", name=name or kind, kind=kind, params=params, state={})


PREDICTIVE = {
    "metric": "cpu", "target": 60.0, "boot_delay_s": 600.0, "max_mase": 1.0, "max_width": 1.0,
    "history_s": 4 * DAY_S, "step_s": STEP_S,
}  # fmt: skip


def test_predictive_decides_as_its_floor_until_a_forecast_is_fitted_apart() -> None:
    evaluator = Evaluator(Wave())
    policy = _policy("predictive", PREDICTIVE)
    # a quarter of a day into the wave: rising towards its peak (70 %)
    now = 10 * DAY_S + DAY_S / 8
    first = evaluator.vote(None, _state(), policy, now)  # type: ignore[arg-type]
    assert first is not None and first.decision.reason.startswith("no forecast yet")
    other = _policy("predictive", PREDICTIVE, name="other")
    assert evaluator.vote(None, _state(), other, now) is not None  # type: ignore[arg-type]
    # one fit per run at least, then only within the run's time budget
    assert evaluator.forecasts.refit(budget_s=0) == 1
    assert evaluator.forecasts.refit() == 1 and evaluator.forecasts.refit() == 0
    later = evaluator.vote(None, _state(), policy, now + 2 * STEP_S)  # type: ignore[arg-type]
    assert later is not None
    numbers = later.decision.numbers
    # the forecast was consulted (whether it is trusted is the policy's own business, policies.py)
    assert "mase" in numbers and numbers["forecast_peak"] > 0
    assert not later.decision.reason.startswith("no forecast yet")
    assert later.decision.desired >= numbers["floor"]


def test_votes_combine_to_the_largest_and_abstentions_do_not_count() -> None:
    evaluator = Evaluator(Wave())
    now = 10 * DAY_S  # the wave at 50 %: 150 % of load over 3 VMs
    target = _policy("target_tracking", {"metric": "cpu", "target": 60.0})
    quiet_step = _policy("step", {"metric": "cpu", "steps": [{"lower": 90.0, "upper": None, "change": 2}]})
    tracked = evaluator.vote(None, _state(), target, now)  # type: ignore[arg-type]
    assert tracked is not None and tracked.decision.desired == 3  # ceil(150 / 60)
    assert evaluator.vote(None, _state(), quiet_step, now) is None  # type: ignore[arg-type]
    at = "00:00"  # day 10 at 00:00 UTC is `now`
    schedule = _policy("scheduled", {"actions": [{"at": at, "desired": 6, "days": list(range(7))}]})
    fired = evaluator.vote(None, _state(), schedule, now + 60)  # type: ignore[arg-type]
    assert fired is not None and fired.decision.desired == 6 and "scheduled at 00:00" in fired.decision.reason
    assert evaluator.vote(None, _state(), schedule, now + 120) is None  # type: ignore[arg-type]  # once


def test_predictive_params_bound_the_interval_in_vms() -> None:
    normal = normal_params("predictive", {"metric": "cpu", "target": 60.0})
    assert normal["max_width_vms"] == 1.0 and normal["max_width"] == 1.0  # one VM's capacity by default
    assert normal_params("predictive", {**normal, "max_width_vms": 2.5})["max_width_vms"] == 2.5
    with pytest.raises(InvalidInput) as refused:
        normal_params("predictive", {**normal, "max_width_vms": 500})
    assert "params.max_width_vms" in str(refused.value)
    # a policy stored before the parameter existed (PREDICTIVE has none) still decides, with the default
    evaluator = Evaluator(Wave())
    policy = _policy("predictive", PREDICTIVE)
    now = 10 * DAY_S
    evaluator.vote(None, _state(), policy, now)  # type: ignore[arg-type]
    evaluator.forecasts.refit()
    vote = evaluator.vote(None, _state(), policy, now + STEP_S)  # type: ignore[arg-type]
    assert vote is not None and "width_vms" in vote.decision.numbers

"""Scaling against static provisioning for the peak, on a hand-computed series."""

from __future__ import annotations

import pytest

from novacron.autoscaling.roi import need, roi
from novacron.errors import InvalidInput


def test_static_runs_the_peak_every_step_and_scaling_runs_each_steps_need() -> None:
    # 4 steps of 15 min; one VM carries 100 units at 50 %: needs 1, 4, 2, 1 (peak 4)
    load = [40.0, 200.0, 90.0, 10.0]
    r = roi(load, 900, 100, price_per_vm_hour=0.5, target_util=0.5)
    assert [need(v, 100, 0.5) for v in load] == [1, 4, 2, 1]
    assert r.static.vm_hours == pytest.approx(4 * 4 * 0.25) and r.static.peak_vms == 4
    assert r.scaled.vm_hours == pytest.approx((1 + 4 + 2 + 1) * 0.25)
    assert r.static.cost == pytest.approx(2.0) and r.scaled.cost == pytest.approx(1.0)
    assert r.saving == pytest.approx(1.0) and r.saving_share == pytest.approx(0.5)


def test_a_policys_schedule_is_costed_as_it_ran() -> None:
    r = roi([40.0, 200.0, 90.0, 10.0], 900, 100, 0.5, 0.5, schedule=[2, 4, 4, 2])
    assert r.scaled.vm_hours == pytest.approx(3.0) and r.scaled.name == "scaled"
    assert r.saving == pytest.approx(0.5)
    with pytest.raises(InvalidInput):
        roi([1.0, 2.0], 60, 10, 1.0, schedule=[1])
    with pytest.raises(InvalidInput):
        roi([], 60, 10, 1.0)

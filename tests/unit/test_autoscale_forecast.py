"""The forecaster: model choice by backtest on a seasonal series, and degenerate inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from novacron.autoscaling.forecast import fit


def daily_series(days: int, step_s: int = 900, noise: float = 2.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(days * 86_400 // step_s) * step_s
    return 50 + 30 * np.sin(2 * np.pi * t / 86_400) + 0.0005 * t / 60 + rng.normal(0, noise, len(t))


def test_a_seasonal_series_gets_a_seasonal_model_that_beats_seasonal_naive() -> None:
    values = daily_series(10)
    f = fit(values, 900, horizon_steps=4)  # its time is measured in bench/bench_autoscale_replay.py
    assert f.model in ("holt_winters", "sarima", "regression")
    assert f.mase < f.scores["seasonal_naive"]
    assert f.mase < 1.0
    mean, lower, upper = f.predict(4)
    assert mean.shape == lower.shape == upper.shape == (4,)
    assert (lower <= mean).all() and (mean <= upper).all()
    # it forecasts the next samples of the same curve (the series ends at 10 days exactly)
    t_next = 10 * 86_400 + np.arange(4) * 900
    truth = 50 + 30 * np.sin(2 * np.pi * t_next / 86_400) + 0.0005 * t_next / 60
    assert np.abs(mean - truth).max() < 8


def test_update_takes_new_samples_without_refitting() -> None:
    values = daily_series(6, step_s=3600)
    f = fit(values[:-8], 3600, horizon_steps=2)
    f.update(values[-8:])
    mean, _, _ = f.predict(2)
    refit, _, _ = fit(values, 3600, horizon_steps=2).predict(2)
    assert np.abs(mean - refit).max() < 10
    f.update([math.nan])  # a missing sample is imputed, not propagated
    assert np.isfinite(f.predict(2)[0]).all()


def test_flat_series_forecasts_the_constant() -> None:
    f = fit([7.0] * 500, 300, horizon_steps=3)
    mean, lower, upper = f.predict(3)
    assert np.allclose(mean, 7.0) and np.allclose(lower, 7.0) and np.allclose(upper, 7.0)
    assert f.mase == 0.0


def test_short_series_falls_back_to_the_last_value_never_trusted() -> None:
    f = fit([1.0, 2.0, 3.0], 300, horizon_steps=2)
    assert f.model == "naive" and f.mase == math.inf
    assert list(f.predict(2)[0]) == [3.0, 3.0]


def test_nan_gaps_are_interpolated_and_all_nan_is_refused() -> None:
    values = daily_series(4, step_s=3600).tolist()
    values[10] = values[11] = math.nan
    values[0] = math.nan
    f = fit(values, 3600, horizon_steps=2)
    assert np.isfinite(f.predict(2)[0]).all() and math.isfinite(f.mase)
    with pytest.raises(ValueError):
        fit([math.nan, math.nan], 300)

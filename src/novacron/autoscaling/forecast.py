"""Load forecasts for predictive scaling: the model chosen per series by rolling-origin backtest.

`fit(values, step_s, horizon_steps)` fits every candidate on the series minus a holdout tail, then
walks the holdout: at regular origins each candidate forecasts `horizon_steps` ahead, then observes
the next value with its parameters fixed (rolling origin without re-estimation, so the backtest
costs one fit per candidate). The candidate with the lowest MASE wins; MASE divides the backtest's
mean absolute error by the in-sample error of the seasonal-naive forecast (Hyndman & Koehler 2006),
so 1.0 is "as good as last week's (or yesterday's) value". Candidates:

- ``seasonal_naive``: the value one season ago (weekly with two weeks of history, else daily, else
  the last value); the baseline.
- ``holt_winters``: additive Holt-Winters with a damped trend (statsmodels `ExponentialSmoothing`),
  daily season when the period is at most `MAX_HW_PERIOD` and three days are known; and ``holt``,
  the same without season (ETS(A,Ad,N)).
- ``sarima``: SARIMA(1,0,1)(0,1,0)m, an ARMA(1,1) on the seasonal differences, estimated with
  Hannan-Rissanen (two regressions: bounded time on any length, unlike a full likelihood fit).
- ``regression``: least squares on hour-of-day and day-of-week Fourier terms plus a linear trend,
  with an AR(1) on its residuals so that short horizons follow the current level.

The fitted state is small (parameters and the last season), so `Forecaster.update` takes each new
sample without refitting: a scaling group refits in the background and forecasts from fresh data at
every decision. Prediction intervals are empirical: quantiles of the chosen model's backtest errors
per horizon step. At most the last `MAX_FIT_POINTS` samples are fitted, which bounds the fit time.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from statsmodels.tsa.arima.estimators.hannan_rissanen import hannan_rissanen
from statsmodels.tsa.holtwinters import ExponentialSmoothing

Array = NDArray[np.float64]

DAY_S = 86_400
WEEK_S = 7 * DAY_S
MAX_FIT_POINTS = 5_000
MAX_HW_PERIOD = 300  # statsmodels estimates one initial value per seasonal slot: slow beyond this
MIN_POINTS = 16  # below this there is nothing to backtest: the last value, never "confident"
COVERAGE = 0.8  # the prediction interval's nominal coverage


class _Model(Protocol):
    name: str

    def observe(self, y: float) -> None: ...

    def forecast(self, h: int) -> Array: ...


class SeasonalNaive:
    """The value one season ago (season 1: the last value)."""

    def __init__(self, history: Array, season: int) -> None:
        self.name = "seasonal_naive" if season > 1 else "naive"
        self.season = season
        self._last: deque[float] = deque(history[-season:].tolist(), maxlen=season)

    def observe(self, y: float) -> None:
        self._last.append(y)

    def forecast(self, h: int) -> Array:
        last = np.asarray(self._last, dtype=float)
        return np.asarray([last[-self.season + (k % self.season)] for k in range(h)], dtype=float)


class HoltWinters:
    """Additive damped-trend exponential smoothing, seasonal when `season` > 1 (statsmodels fit)."""

    def __init__(self, history: Array, season: int) -> None:
        self.name = "holt_winters" if season > 1 else "holt"
        self.season = season
        seasonal = "add" if season > 1 else None
        model = ExponentialSmoothing(
            history,
            trend="add",
            damped_trend=True,
            seasonal=seasonal,
            seasonal_periods=season if season > 1 else None,
            initialization_method="heuristic" if season > 1 else "estimated",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on flat or short series
            result = model.fit(use_brute=False)  # the brute start grid doubled the time, same SSE
        p = result.params
        self.alpha = float(p["smoothing_level"])
        self.beta = float(p["smoothing_trend"])
        self.gamma = float(p["smoothing_seasonal"]) if season > 1 else 0.0
        self.phi = float(p["damping_trend"])
        self.level = float(result.level[-1])
        self.trend = float(result.trend[-1])
        slots = np.asarray(result.season, dtype=float)[-season:] if season > 1 else np.zeros(1)
        self._seasons: deque[float] = deque(slots.tolist(), maxlen=max(season, 1))

    def observe(self, y: float) -> None:
        # statsmodels' own recursion (checked against its fitted states to the last digit)
        s_old = self._seasons[0] if self.season > 1 else 0.0
        predicted_level = self.level + self.phi * self.trend
        level = self.alpha * (y - s_old) + (1 - self.alpha) * predicted_level
        self.trend = self.beta * (level - self.level) + (1 - self.beta) * self.phi * self.trend
        if self.season > 1:
            self._seasons.append(self.gamma * (y - predicted_level) + (1 - self.gamma) * s_old)
        self.level = level

    def forecast(self, h: int) -> Array:
        damp = np.cumsum(self.phi ** np.arange(1, h + 1))
        out = self.level + damp * self.trend
        if self.season > 1:
            slots = np.asarray(self._seasons, dtype=float)
            out = out + slots[np.arange(h) % self.season]
        return np.asarray(out, dtype=float)


class SeasonalArma:
    """SARIMA(1,0,1)(0,1,0)m: ARMA(1,1) with a mean on y[t] - y[t-m], fitted by Hannan-Rissanen."""

    name = "sarima"

    def __init__(self, history: Array, season: int) -> None:
        self.season = season
        diffs = history[season:] - history[:-season]
        params, _ = hannan_rissanen(diffs, ar_order=1, ma_order=1, demean=True)
        self.mean = float(diffs.mean())
        self.ar = float(np.clip(params.ar_params[0], -0.99, 0.99))
        self.ma = float(np.clip(params.ma_params[0], -0.99, 0.99))
        self._last: deque[float] = deque(history[-season:].tolist(), maxlen=season)
        self.prev_dev = 0.0  # last difference minus the mean
        self.prev_shock = 0.0
        for d in diffs - self.mean:  # run the filter over the history for the last shock
            self.prev_shock = float(d - self.ar * self.prev_dev - self.ma * self.prev_shock)
            self.prev_dev = float(d)

    def observe(self, y: float) -> None:
        dev = y - self._last[0] - self.mean
        self.prev_shock = dev - self.ar * self.prev_dev - self.ma * self.prev_shock
        self.prev_dev = dev
        self._last.append(y)

    def forecast(self, h: int) -> Array:
        devs = np.empty(h)
        devs[0] = self.ar * self.prev_dev + self.ma * self.prev_shock
        for k in range(1, h):
            devs[k] = self.ar * devs[k - 1]
        path = list(self._last)
        for k in range(h):
            path.append(path[-self.season] + self.mean + devs[k])
        return np.asarray(path[-h:], dtype=float)


def _calendar(t: Array, periods: list[tuple[int, int]]) -> Array:
    """Intercept, trend and `k` Fourier pairs per (period, k), at sample indices `t`."""
    columns = [np.ones_like(t), t / 1000.0]
    for period, harmonics in periods:
        for k in range(1, harmonics + 1):
            angle = 2 * math.pi * k * t / period
            columns += [np.sin(angle), np.cos(angle)]
    return np.column_stack(columns)


class CalendarRegression:
    """Least squares on daily and weekly Fourier terms and a trend, AR(1) on the residuals."""

    name = "regression"

    def __init__(self, history: Array, periods: list[tuple[int, int]]) -> None:
        self.periods = periods
        t = np.arange(len(history), dtype=float)
        design = _calendar(t, periods)
        self.coef = np.linalg.lstsq(design, history, rcond=None)[0]
        residuals = history - design @ self.coef
        lagged, current = residuals[:-1], residuals[1:]
        denom = float(lagged @ lagged)
        self.ar = float(np.clip(lagged @ current / denom, 0.0, 0.99)) if denom > 0 else 0.0
        self.t = float(len(history))  # the index of the next sample
        self.residual = float(residuals[-1])

    def _fitted(self, t: Array) -> Array:
        return np.asarray(_calendar(t, self.periods) @ self.coef, dtype=float)

    def observe(self, y: float) -> None:
        self.residual = y - float(self._fitted(np.asarray([self.t]))[0])
        self.t += 1

    def forecast(self, h: int) -> Array:
        t = self.t + np.arange(h, dtype=float)
        return self._fitted(t) + self.residual * self.ar ** np.arange(1, h + 1)


@dataclass
class Forecaster:
    """A fitted forecast of one series: the chosen model, its backtest MASE, intervals."""

    model: str
    mase: float
    step_s: float
    season: int
    scores: dict[str, float] = field(default_factory=dict)  # every candidate's MASE
    fit_seconds: float = 0.0
    _core: _Model | None = None
    _err_low: Array = field(default_factory=lambda: np.zeros(1))
    _err_high: Array = field(default_factory=lambda: np.zeros(1))
    _nonnegative: bool = True

    def update(self, values: list[float] | Array) -> None:
        """Take new samples (one per `step_s`) without refitting; a NaN is replaced by the forecast."""
        assert self._core is not None
        for y in np.asarray(values, dtype=float):
            self._core.observe(float(y) if math.isfinite(y) else float(self._core.forecast(1)[0]))

    def predict(self, horizon_steps: int) -> tuple[Array, Array, Array]:
        """The mean forecast and its `COVERAGE` interval for the next `horizon_steps` samples."""
        assert self._core is not None
        h = max(1, horizon_steps)
        mean = self._core.forecast(h)
        low, high = _widen(self._err_low, h), _widen(self._err_high, h)
        lower, upper = mean + np.minimum(low, 0.0), mean + np.maximum(high, 0.0)
        if self._nonnegative:
            mean, lower, upper = (np.maximum(a, 0.0) for a in (mean, lower, upper))
        return mean, lower, upper


def _widen(errors: Array, h: int) -> Array:
    """Per-step error quantiles out to `h` steps: beyond the backtest's horizon, grown as sqrt(k)."""
    if len(errors) >= h:
        return errors[:h]
    extra = np.arange(len(errors) + 1, h + 1, dtype=float)
    grown = errors[-1] * np.sqrt(extra / len(errors))
    return np.concatenate([errors, grown])


def _clean(values: list[float] | Array) -> Array:
    """Finite floats: interior gaps (NaN, inf) interpolated, ends filled with the nearest value."""
    y = np.asarray(values, dtype=float)
    ok = np.isfinite(y)
    if not ok.any():
        raise ValueError("the series has no finite value")
    if not ok.all():
        idx = np.arange(len(y))
        y = np.interp(idx, idx[ok], y[ok])
    return y


def seasons(step_s: float, n: int) -> tuple[int, int]:
    """The daily and weekly periods in samples that `n` samples can support (0 when not)."""
    day = round(DAY_S / step_s) if step_s > 0 else 0
    if day < 2 or abs(day * step_s - DAY_S) > step_s / 2:
        return 0, 0
    return (day if n >= 2 * day else 0), (7 * day if n >= 2 * 7 * day else 0)


def _candidates(train: Array, day: int, week: int) -> list[_Model]:
    """Every model the series supports; one that fails to fit (degenerate data) is left out."""
    periods = [(p, min(k, p // 2)) for p, k in ((day, 4), (week, 2)) if p]
    builders: list[Callable[[], _Model]] = [lambda: HoltWinters(train, 1)]
    if day and day <= MAX_HW_PERIOD and len(train) >= 3 * day:
        builders.append(lambda: HoltWinters(train, day))
    if day:
        builders.append(lambda: SeasonalArma(train, day))
    builders.append(lambda: CalendarRegression(train, periods))
    models: list[_Model] = [SeasonalNaive(train, week or day or 1)]
    for build in builders:
        try:
            model = build()
        except (ValueError, np.linalg.LinAlgError, FloatingPointError):
            continue
        if np.isfinite(model.forecast(2)).all():
            models.append(model)
    return models


def _backtest(model: _Model, holdout: Array, h: int, stride: int) -> Array:
    """Forecast errors (actual - forecast), one row per origin, and the model run to the end."""
    rows = []
    for i, y in enumerate(holdout):
        if i % stride == 0 and i + h <= len(holdout):
            rows.append(holdout[i : i + h] - model.forecast(h))
        model.observe(float(y))
    return np.asarray(rows, dtype=float)


def _mase(errors: Array, scale: float) -> float:
    mae = float(np.mean(np.abs(errors)))
    if scale > 0:
        return mae / scale
    return 0.0 if mae == 0 else math.inf


def _fallback(y: Array, step_s: float, started: float) -> Forecaster:
    """Too short to backtest: the last value, with no interval and a MASE that never convinces."""
    core = SeasonalNaive(y, 1)
    return Forecaster(
        model=core.name,
        mase=math.inf,
        step_s=step_s,
        season=1,
        fit_seconds=time.perf_counter() - started,
        _core=core,
        _nonnegative=bool((y >= 0).all()),
    )


def fit(values: list[float] | Array, step_s: float, horizon_steps: int = 1) -> Forecaster:
    """Fit a series sampled every `step_s` seconds for forecasts `horizon_steps` ahead."""
    started = time.perf_counter()
    y = _clean(values)[-MAX_FIT_POINTS:]
    h = max(1, horizon_steps)
    n = len(y)
    if n < max(MIN_POINTS, 4 * h):
        return _fallback(y, step_s, started)
    day_full, _ = seasons(step_s, n)
    holdout_len = min(max(day_full, 8 * h, n // 8), n // 3)
    train, holdout = y[:-holdout_len], y[-holdout_len:]
    day, week = seasons(step_s, len(train))
    naive_season = week or day or 1
    scale = float(np.mean(np.abs(train[naive_season:] - train[:-naive_season])))
    stride = max(1, (holdout_len - h) // 100)
    best: tuple[float, _Model, Array] | None = None
    scores: dict[str, float] = {}
    for model in _candidates(train, day, week):
        errors = _backtest(model, holdout, h, stride)
        scores[model.name] = _mase(errors, scale)
        if best is None or scores[model.name] < best[0]:
            best = (scores[model.name], model, errors)
    assert best is not None
    tail = (1 - COVERAGE) / 2
    return Forecaster(
        model=best[1].name,
        mase=best[0],
        step_s=step_s,
        season=naive_season,
        scores=scores,
        fit_seconds=time.perf_counter() - started,
        _core=best[1],
        _err_low=np.quantile(best[2], tail, axis=0),
        _err_high=np.quantile(best[2], 1 - tail, axis=0),
        _nonnegative=bool((y >= 0).all()),
    )

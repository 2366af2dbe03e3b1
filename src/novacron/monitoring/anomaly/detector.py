"""The streaming anomaly detector: one O(1) update per sample, a score in [0, 1] before the next.

The score of a sample is built in three stages, all online with a fixed amount of state:

1. Surprise. The sample is compared with what the recent past predicts: the error of a fast
   exponential moving average, scaled by the moving mean absolute error, and the distance of the
   short-term level from the long-term level. Either, through a soft saturation, gives a raw
   surprise in [0, 1).
2. Likelihood. As in Numenta's anomaly likelihood, the mean raw surprise of the last few samples
   is compared with the long-run distribution of raw surprise (moving mean and variance): the
   Gaussian tail probability says how unusual the recent surprise is for this series, which makes
   noisy series and quiet ones comparable.
3. Report. The likelihood is mapped to [0, 1] on a log scale (the number of nines); once a sample
   reaches the alert level, the following samples are damped for a refractory period, so that one
   incident yields one alert rather than a burst.

No sample after the current one is ever read; a detector's memory is a handful of floats and a
ring buffer of `short_window` surprises.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class DetectorConfig:
    """The method's parameters (the same for every series; none is fitted to a file).

    Attributes:
        fast: smoothing of the one-step prediction (weight of the newest sample).
        slow: smoothing of the long-term level, the error scale and the surprise statistics.
        short_window: the number of recent surprises averaged by the likelihood stage.
        warmup: samples seen before any score above 0 is reported.
        alert_nines: the likelihood, in nines, at which a sample counts as an alert.
        refractory: samples damped after an alert.
        damping: the factor applied to scores during the refractory period.
    """

    fast: float = 0.5
    slow: float = 0.002
    short_window: int = 5
    warmup: int = 150
    alert_nines: float = 3.0
    refractory: int = 150
    damping: float = 0.1
    err_slow: float = 0.01
    sat: float = 4.0
    level_weight: float = 0.5
    nines_scale: float = 10.0
    bins: int = 10
    context: int = 2
    max_contexts: int = 4096
    context_weight: float = 1.0


_SQRT2 = math.sqrt(2.0)


class StreamingDetector:
    """The anomaly detector of one series: `update(value)` returns the sample's score in [0, 1]."""

    __slots__ = (
        "_cfg", "_n", "_pred", "_level", "_err", "_ring", "_pos", "_sum", "_mu", "_var",
        "_quiet", "_alert", "_lo", "_hi", "_ctx", "_counts", "_cring", "_csum",
    )

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self._cfg = config or DetectorConfig()
        self._n = 0
        self._pred = 0.0
        self._level = 0.0
        self._err = 0.0
        self._ring = [0.0] * self._cfg.short_window
        self._pos = 0
        self._sum = 0.0
        self._mu = 0.0
        self._var = 0.0
        self._quiet = 0
        self._alert = self._cfg.alert_nines / self._cfg.nines_scale
        self._lo = 0.0
        self._hi = 0.0
        self._ctx: tuple[int, ...] = ()
        self._counts: dict[tuple[int, ...], int] = {}
        self._cring = [0.0] * self._cfg.short_window
        self._csum = 0.0

    def update(self, value: float) -> float:
        """Take the next sample of the series and return its anomaly score in [0, 1]."""
        cfg = self._cfg
        x = float(value)
        if not math.isfinite(x):
            return 0.0
        if self._n == 0:
            self._pred = self._level = self._lo = self._hi = x
        raw = self._surprise(x)
        novelty = self._novelty(x)
        nines = self._likelihood_nines(raw)
        self._n += 1
        if self._n <= cfg.warmup:
            return 0.0
        score = max(min(1.0, nines / cfg.nines_scale), cfg.context_weight * novelty)
        if self._quiet > 0:
            self._quiet -= 1
            return score * cfg.damping
        if score >= self._alert:
            self._quiet = cfg.refractory
        return score

    def _surprise(self, x: float) -> float:
        """The raw surprise of `x` in [0, 1), and the predictions moved on to include it."""
        cfg = self._cfg
        err = abs(x - self._pred)
        scale = self._err if self._err > 0.0 else 1e-12
        z = err / scale
        shift = abs(self._pred - self._level) / scale
        z = max(z, cfg.level_weight * shift)
        self._err += cfg.err_slow * (err - self._err)
        self._pred += cfg.fast * (x - self._pred)
        self._level += cfg.slow * (x - self._level)
        return z / (z + cfg.sat)

    def _novelty(self, x: float) -> float:
        """The mean novelty of the recent contexts (the last `context` quantised values)."""
        cfg = self._cfg
        self._lo = min(self._lo, x)
        self._hi = max(self._hi, x)
        span = self._hi - self._lo
        b = int((x - self._lo) / span * (cfg.bins - 1) + 0.5) if span > 0.0 else 0
        ctx = (*self._ctx[1 - cfg.context :], b) if cfg.context > 1 else (b,)
        self._ctx = ctx
        seen = self._counts.get(ctx, 0)
        if seen or len(self._counts) < cfg.max_contexts:
            self._counts[ctx] = seen + 1
        raw = 1.0 / (1 + seen)
        pos = self._pos
        self._csum += raw - self._cring[pos]
        self._cring[pos] = raw
        return self._csum / len(self._cring)

    def _likelihood_nines(self, raw: float) -> float:
        """How unusual the recent mean surprise is, as -log10 of its Gaussian tail probability."""
        cfg = self._cfg
        ring = self._ring
        self._sum += raw - ring[self._pos]
        ring[self._pos] = raw
        self._pos = (self._pos + 1) % len(ring)
        short = self._sum / len(ring)
        d = short - self._mu
        sd = math.sqrt(self._var) if self._var > 1e-12 else 1e-6
        self._mu += cfg.slow * d
        self._var += cfg.slow * (d * d - self._var)
        if d <= 0.0:
            return 0.0
        tail = 0.5 * math.erfc(d / sd / _SQRT2)
        return -math.log10(tail) if tail > 1e-300 else 300.0


class DetectorBank:
    """One detector per series key, at most `max_series` of them (the oldest is dropped beyond)."""

    def __init__(self, config: DetectorConfig | None = None, max_series: int = 100_000) -> None:
        self._config = config or DetectorConfig()
        self._max = max_series
        self._detectors: dict[Hashable, StreamingDetector] = {}

    def update(self, key: Hashable, value: float) -> float:
        """Score the next sample of series `key`, creating its detector on its first sample."""
        det = self._detectors.get(key)
        if det is None:
            if len(self._detectors) >= self._max:
                del self._detectors[next(iter(self._detectors))]
            det = self._detectors[key] = StreamingDetector(self._config)
        return det.update(value)

    def forget(self, key: Hashable) -> None:
        """Drop the state of series `key` (a deleted VM or host)."""
        self._detectors.pop(key, None)

    def __len__(self) -> int:
        return len(self._detectors)


def score_series(values: Iterable[float], config: DetectorConfig | None = None) -> list[float]:
    """The scores of a whole series fed one sample at a time to a fresh detector."""
    det = StreamingDetector(config)
    return [det.update(v) for v in values]

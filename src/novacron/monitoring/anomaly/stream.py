"""The platform's streaming hook: one bounded detector per series, scores and threshold crossings.

The metrics write path calls `AnomalyMonitor.observe(key, timestamp, value)` for each new sample
of a watched series; it gets the sample's score in [0, 1] at once (the caller writes it as
`novacron_anomaly_score`). When a series' score reaches the threshold after at least as many
samples below it as the detector's refractory period, the monitor calls `on_anomaly` once with an
`AnomalyCrossing`, so that one incident makes one `vm.anomaly` event and not one per sample.
Memory is bounded twice: each detector holds a fixed number of floats, and the monitor keeps at
most `max_series` detectors, dropping the series idle for longer than `idle_seconds` (by sample
time) and, beyond the bound, the least recently seen.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from novacron.monitoring.anomaly.detector import ALERT_THRESHOLD, DetectorConfig, StreamingDetector


@dataclass(frozen=True)
class AnomalyCrossing:
    """A series' score reached the threshold: the sample that did it and its score."""

    key: Hashable
    timestamp: float
    value: float
    score: float


class _Series:
    """One series' detector, when it learns until, its last sample, and how many samples since
    one scored at or above the threshold."""

    __slots__ = ("detector", "learn_until", "last_seen", "quiet")

    def __init__(self, detector: StreamingDetector, now: float, learning_seconds: float, quiet: int) -> None:
        self.detector = detector
        self.learn_until = now + learning_seconds
        self.last_seen = now
        self.quiet = quiet


class AnomalyMonitor:
    """One streaming detector per series key, with idle eviction and threshold crossings.

    Args:
        on_anomaly: called with an `AnomalyCrossing` when a series' score reaches `threshold`
            after a quiet spell (see above).
        threshold: the score from which a sample is anomalous (default: the one NAB's standard
            profile chose for this detector on the NAB corpus).
        idle_seconds: a series without a sample for this long (sample time) is forgotten.
        learning_seconds: for this long after its first sample (sample time) a series' detector
            learns its daily pattern and its scores are reported as 0 (the detector scores every
            excursion of a pattern it has not seen whole, so a first day would raise alerts).
        max_series: the most series kept; beyond it the least recently seen is forgotten.
        config: the detectors' parameters.
    """

    def __init__(
        self,
        on_anomaly: Callable[[AnomalyCrossing], None] | None = None,
        threshold: float = ALERT_THRESHOLD,
        idle_seconds: float = 3600.0,
        learning_seconds: float = 86_400.0,
        max_series: int = 100_000,
        config: DetectorConfig | None = None,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        if idle_seconds <= 0 or max_series <= 0 or learning_seconds < 0:
            raise ValueError("idle_seconds and max_series must be positive, learning_seconds not negative")
        self._on_anomaly = on_anomaly
        self._threshold = threshold
        self._idle = idle_seconds
        self._learning = learning_seconds
        self._max = max_series
        self._config = config or DetectorConfig()
        self._rearm = self._config.refractory
        self._series: OrderedDict[Hashable, _Series] = OrderedDict()
        self._newest = float("-inf")

    def observe(self, key: Hashable, timestamp: float, value: float) -> float:
        """Score the next sample of series `key` (Unix seconds, value) in [0, 1]."""
        series = self._series.get(key)
        if series is None:
            self.evict_idle(timestamp)
            while len(self._series) >= self._max:
                self._series.popitem(last=False)
            series = self._series[key] = _Series(
                StreamingDetector(self._config), timestamp, self._learning, self._rearm
            )
        else:
            self._series.move_to_end(key)
            series.last_seen = timestamp
        score = series.detector.update(value, timestamp)
        if timestamp < series.learn_until:
            score = 0.0
        if score < self._threshold:
            series.quiet += 1
            return score
        if series.quiet >= self._rearm and self._on_anomaly is not None:
            self._on_anomaly(AnomalyCrossing(key, timestamp, value, score))
        series.quiet = 0
        return score

    def forget(self, key: Hashable) -> None:
        """Drop the state of series `key` (a deleted VM or host)."""
        self._series.pop(key, None)

    def __len__(self) -> int:
        return len(self._series)

    def __contains__(self, key: object) -> bool:
        return key in self._series

    def evict_idle(self, now: float) -> int:
        """Drop the series without a sample since `idle_seconds` before `now`; how many were.

        `observe` calls it for each new series; a caller may also call it on a timer. The series
        are kept in the order of their last sample, so the idle ones are at the front.
        """
        self._newest = max(self._newest, now)
        cutoff = self._newest - self._idle
        dropped = 0
        while self._series and next(iter(self._series.values())).last_seen < cutoff:
            self._series.popitem(last=False)
            dropped += 1
        return dropped

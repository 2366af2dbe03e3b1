"""AnomalyMonitor: per-series scores as the detector's, one crossing per incident, bounded series."""

from __future__ import annotations

import math
import random

import pytest

from novacron.monitoring.anomaly import AnomalyCrossing, AnomalyMonitor, StreamingDetector

T0 = 1_400_000_000.0
STEP = 300.0


def _series(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [50 + 10 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 1) for i in range(n)]


def test_each_series_is_scored_as_by_its_own_detector() -> None:
    monitor = AnomalyMonitor(learning_seconds=0)
    a, b = _series(600, 1), _series(600, 2)
    alone_a, alone_b = StreamingDetector(), StreamingDetector()
    for i in range(600):
        t = T0 + i * STEP
        assert monitor.observe("vm-a/cpu", t, a[i]) == alone_a.update(a[i], t)
        assert monitor.observe("vm-b/cpu", t, b[i]) == alone_b.update(b[i], t)
    assert len(monitor) == 2


def test_a_crossing_is_reported_once_per_incident() -> None:
    crossings: list[AnomalyCrossing] = []
    monitor = AnomalyMonitor(on_anomaly=crossings.append, threshold=0.5)
    values = _series(3000, 3)
    values[2000] = values[2001] = values[2002] = 500.0  # one incident of three samples
    values[2600] = -400.0  # another, much later
    scores = [monitor.observe("vm-a/cpu", T0 + i * STEP, v) for i, v in enumerate(values)]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert [c.timestamp for c in crossings] == [T0 + 2000 * STEP, T0 + 2600 * STEP]
    first = crossings[0]
    assert first.key == "vm-a/cpu" and first.value == 500.0 and first.score == scores[2000] >= 0.5


def test_no_crossing_on_normal_data_and_none_while_learning() -> None:
    crossings: list[AnomalyCrossing] = []
    monitor = AnomalyMonitor(on_anomaly=crossings.append, threshold=0.5)
    for seed in (3, 4, 5):
        scores = [
            monitor.observe(f"vm-{seed}/cpu", T0 + i * STEP, v) for i, v in enumerate(_series(4000, seed))
        ]
        assert scores[:288] == [0.0] * 288  # the first day is learnt, not scored
    assert crossings == []


def test_idle_series_are_evicted_and_start_afresh() -> None:
    monitor = AnomalyMonitor(idle_seconds=600, learning_seconds=0)
    monitor.observe("old", T0, 1.0)
    monitor.observe("busy", T0, 1.0)
    monitor.observe("busy", T0 + 500, 1.0)
    assert monitor.evict_idle(T0 + 700) == 1
    assert "old" not in monitor and "busy" in monitor
    monitor.observe("new", T0 + 1200, 1.0)  # a new series also evicts the now idle "busy"
    assert "busy" not in monitor and len(monitor) == 1
    monitor.forget("new")
    assert len(monitor) == 0


def test_the_number_of_series_is_bounded_least_recent_first() -> None:
    monitor = AnomalyMonitor(max_series=3)
    for i in range(3):
        monitor.observe(f"vm-{i}", T0, 1.0)
    monitor.observe("vm-0", T0 + 1, 1.0)  # vm-0 is now the most recently seen
    monitor.observe("vm-3", T0 + 2, 1.0)
    assert len(monitor) == 3
    assert "vm-1" not in monitor and "vm-0" in monitor and "vm-3" in monitor


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        AnomalyMonitor(threshold=0.0)
    with pytest.raises(ValueError):
        AnomalyMonitor(max_series=0)
    with pytest.raises(ValueError):
        AnomalyMonitor(learning_seconds=-1)

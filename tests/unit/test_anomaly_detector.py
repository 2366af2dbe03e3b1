"""The streaming detector: scores in [0, 1], no look-ahead, bounded memory, clear anomalies found."""

from __future__ import annotations

import math
import random
import sys

import pytest

from novacron.monitoring.anomaly import DetectorConfig, StreamingDetector
from novacron.monitoring.anomaly.detector import score_series

STEP = 300.0  # 5-minute samples, as in NAB: 288 a day


def _series(n: int, seed: int = 1) -> list[float]:
    """A noisy daily-seasonal series of `n` 5-minute samples."""
    rng = random.Random(seed)
    return [50 + 10 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 1) for i in range(n)]


def _times(n: int) -> list[float]:
    return [1_400_000_000 + STEP * i for i in range(n)]


def test_scores_are_in_unit_interval_even_for_odd_input() -> None:
    values = _series(3000) + [1e12, -1e12, 0.0, float("nan"), float("inf"), 5.0] * 20 + [7.0] * 500
    for scores in (score_series(values), score_series(values, _times(len(values)))):
        assert len(scores) == len(values)
        assert all(0.0 <= s <= 1.0 for s in scores)


def test_no_look_ahead_a_score_ignores_later_samples() -> None:
    base = _series(2000)
    changed = base[:1200] + [v * 3 + 100 for v in base[1200:]]
    times = _times(2000)
    a, b = score_series(base, times), score_series(changed, times)
    assert a[:1200] == b[:1200]
    assert a[1200:] != b[1200:]
    # and a prefix scored alone gets the same scores as within the longer series
    assert score_series(base[:700], times[:700]) == a[:700]


def test_score_is_returned_before_the_next_sample_is_seen() -> None:
    det, replay = StreamingDetector(), StreamingDetector()
    values, times = _series(800), _times(800)
    online = [det.update(v, t) for v, t in zip(values, times, strict=True)]
    assert online == [replay.update(v, t) for v, t in zip(values, times, strict=True)]


def test_memory_is_bounded_per_series() -> None:
    det = StreamingDetector(DetectorConfig(slot_seconds=3600))
    rng = random.Random(3)

    def footprint() -> int:
        return sum(sys.getsizeof(getattr(det, name)) for name in det.__slots__)

    for i in range(5000):
        det.update(rng.random(), 1_400_000_000 + i * 60.0)
    early = footprint()
    for i in range(100_000):
        det.update(rng.random() * 1e6, 1_500_000_000 + i * 1.0)
    assert footprint() == early
    assert len(det._hi) == len(det._lo) == len(det._mean) == 24


def test_a_clear_spike_scores_high_and_normal_data_low() -> None:
    values = _series(3000)
    values[2500] = 200.0
    scores = score_series(values, _times(3000))
    assert scores[2500] >= 0.8
    assert max(scores[288:2500]) < 0.5  # after the first day, while the daily pattern is learnt


def test_a_level_shift_scores_high() -> None:
    rng = random.Random(5)
    values = [10 + rng.gauss(0, 0.5) for _ in range(2000)] + [30 + rng.gauss(0, 0.5) for _ in range(300)]
    for scores in (score_series(values), score_series(values, _times(2300))):
        assert scores[2000] >= 0.8
        assert max(scores[:2000]) < 0.5


def test_a_recurring_daily_peak_is_learnt() -> None:
    # a job every day at 03:00 for 30 minutes: anomalous the first days, normal after a week
    days = 14
    values = [10.0 + (40.0 if 36 <= i % 288 < 42 else 0.0) + (i % 7) * 0.1 for i in range(288 * days)]
    scores = score_series(values, _times(len(values)))
    assert max(scores[288 * 10 :]) < 0.2


def test_slot_width_must_divide_a_day() -> None:
    with pytest.raises(ValueError):
        StreamingDetector(DetectorConfig(slot_seconds=7000))


def test_one_incident_one_alert_but_a_worse_one_still_shows() -> None:
    values = _series(3000)
    values[2500] = values[2505] = 80.0  # the same excursion twice within the refractory period
    values[2510] = 400.0  # a far worse one right after
    scores = score_series(values, _times(3000))
    assert scores[2500] >= 0.5
    assert scores[2505] == 0.0

    def odds(score: float) -> float:
        return score / (1 - score)

    assert odds(scores[2510]) > 2 * odds(scores[2500])


def test_a_series_that_stops_changing_scores_once() -> None:
    # disk writes: bursts with idle runs of zeros up to 40 samples, then the writes stop
    rng = random.Random(9)
    values: list[float] = []
    while len(values) < 3000:
        values += [rng.uniform(1e5, 1e6) for _ in range(rng.randint(5, 30))]
        values += [0.0] * rng.randint(5, 40)
    values = values[:3000] + [0.0] * 300
    scores = score_series(values, _times(len(values)))
    stopped = [i for i in range(3000, 3300) if scores[i] >= 0.5]
    assert len(stopped) == 1
    assert stopped[0] < 3000 + 60  # soon after the longest idle run seen before is passed

"""The streaming detector: scores in [0, 1], no look-ahead, bounded memory, clear anomalies found."""

from __future__ import annotations

import math
import random
import sys

from novacron.monitoring.anomaly import DetectorBank, DetectorConfig, StreamingDetector
from novacron.monitoring.anomaly.detector import score_series


def _series(n: int, seed: int = 1) -> list[float]:
    """A noisy daily-seasonal series of `n` samples."""
    rng = random.Random(seed)
    return [50 + 10 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 1) for i in range(n)]


def test_scores_are_in_unit_interval_even_for_odd_input() -> None:
    values = _series(3000) + [1e12, -1e12, 0.0, float("nan"), float("inf"), 5.0] * 20 + [7.0] * 500
    scores = score_series(values)
    assert len(scores) == len(values)
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_no_look_ahead_a_score_ignores_later_samples() -> None:
    base = _series(2000)
    changed = base[:1200] + [v * 3 + 100 for v in base[1200:]]
    a, b = score_series(base), score_series(changed)
    assert a[:1200] == b[:1200]
    assert a[1200:] != b[1200:]


def test_score_is_returned_before_the_next_sample_is_seen() -> None:
    det, replay = StreamingDetector(), StreamingDetector()
    values = _series(800)
    online = [det.update(v) for v in values]
    assert online == [replay.update(v) for v in values]


def test_memory_is_bounded_per_series() -> None:
    cfg = DetectorConfig(max_contexts=64)
    det = StreamingDetector(cfg)
    rng = random.Random(3)
    for _ in range(5000):
        det.update(rng.random())
    early = sys.getsizeof(det._counts)
    for _ in range(50_000):
        det.update(rng.random() * 1e6)
    assert len(det._counts) <= 64
    assert sys.getsizeof(det._counts) <= max(early, 4096)
    assert len(det._ring) == cfg.short_window


def test_a_clear_spike_scores_high_and_normal_data_low() -> None:
    values = _series(3000)
    values[2500] = 200.0
    scores = score_series(values)
    assert scores[2500] >= 0.9
    assert max(scores[500:2500]) < scores[2500]


def test_a_level_shift_scores_high() -> None:
    rng = random.Random(5)
    values = [10 + rng.gauss(0, 0.5) for _ in range(2000)] + [30 + rng.gauss(0, 0.5) for _ in range(300)]
    scores = score_series(values)
    assert max(scores[2000:2010]) >= 0.9
    assert max(scores[300:2000]) < 0.5


def test_bank_keeps_one_detector_per_series_within_its_bound() -> None:
    bank = DetectorBank(max_series=10)
    for i in range(25):
        bank.update(f"vm-{i}", 1.0)
    assert len(bank) == 10
    bank.forget("vm-24")
    assert len(bank) == 9
    single = StreamingDetector()
    values = _series(500)
    assert [bank.update("x", v) for v in values] == [single.update(v) for v in values]

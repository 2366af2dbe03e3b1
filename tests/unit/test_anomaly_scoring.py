"""The NAB scorer on small hand-made cases whose scores follow from NAB's rules by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from novacron.monitoring.anomaly import nab
from novacron.monitoring.anomaly.scoring import (
    PROFILES,
    probation_length,
    scaled_sigmoid,
    score_all_profiles,
    score_corpus,
    window_indices,
)

STANDARD, LOW_FP, LOW_FN = PROFILES
WINDOW = [(50, 59)]  # ten rows; 100-row files have 15 probationary rows


def _sig(x: float) -> float:
    return 2.0 / (1.0 + math.exp(-x)) - 1.0  # 2 * sigmoid(x) - 1


def _scores(hits: dict[int, float], n: int = 100) -> list[float]:
    return [hits.get(i, 0.0) for i in range(n)]


def test_scaled_sigmoid_matches_nab_reference_values() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == -1.0


def test_probationary_period_is_15_percent_capped_at_750_rows() -> None:
    assert probation_length(100) == 15
    assert probation_length(4032) == 604
    assert probation_length(10_000) == 750


def test_detection_at_window_start_is_perfect() -> None:
    r = score_corpus({"f": _scores({50: 1.0})}, {"f": WINDOW}, STANDARD)
    assert (r.raw, r.null_raw, r.perfect, r.normalized) == pytest.approx((1.0, -1.0, 1.0, 100.0))
    assert r.threshold == 1.0


def test_detection_mid_window_is_scaled_by_the_sigmoid() -> None:
    r = score_corpus({"f": _scores({55: 1.0})}, {"f": WINDOW}, STANDARD)
    expected = _sig(2.5) / _sig(5.0)  # position -(59 - 55 + 1) / 10 = -0.5
    assert r.raw == pytest.approx(expected)
    assert r.normalized == pytest.approx(100 * (expected + 1) / 2)


def test_only_the_earliest_detection_of_a_window_counts() -> None:
    r = score_corpus({"f": _scores({52: 1.0, 53: 1.0, 58: 1.0})}, {"f": WINDOW}, STANDARD)
    assert r.raw == pytest.approx(_sig(5 * 0.8) / _sig(5.0))


def test_false_positive_before_any_window_costs_the_fp_weight() -> None:
    hits = {20: 1.0, 50: 1.0}
    assert score_corpus({"f": _scores(hits)}, {"f": WINDOW}, STANDARD).raw == pytest.approx(1 - 0.11)
    assert score_corpus({"f": _scores(hits)}, {"f": WINDOW}, LOW_FP).raw == pytest.approx(1 - 0.22)


def test_false_positive_after_a_window_is_scaled_by_its_distance() -> None:
    r = score_corpus({"f": _scores({50: 1.0, 64: 1.0})}, {"f": WINDOW}, STANDARD)
    past = (64 - 59) / (10 - 1)
    assert r.raw == pytest.approx(1.0 - 0.11 * _sig(5 * past))
    far = score_corpus({"f": _scores({50: 1.0, 99: 1.0})}, {"f": WINDOW}, STANDARD)
    assert far.raw == pytest.approx(1.0 - 0.11)  # 40 rows past: > 3 widths


def test_threshold_sweep_picks_the_best_cut() -> None:
    # at 0.9 the window is found; lowering to 0.5 adds two early FPs; 0.1 adds FPs only
    scores = _scores({50: 0.9, 20: 0.5, 30: 0.5, 40: 0.1, 70: 0.1})
    r = score_corpus({"f": scores}, {"f": WINDOW}, STANDARD)
    assert r.threshold == 0.9
    assert r.raw == pytest.approx(1.0)
    # when an FP outranks the window's detection, the cost is paid to find it
    r2 = score_corpus({"f": _scores({20: 0.95, 50: 0.9})}, {"f": WINDOW}, STANDARD)
    assert r2.threshold == 0.9
    assert r2.raw == pytest.approx(1 - 0.11)


def test_missed_window_and_probation() -> None:
    r = score_corpus({"f": _scores({5: 1.0})}, {"f": WINDOW}, STANDARD)
    assert r.raw == -1.0 and r.normalized == 0.0
    low_fn = score_corpus({"f": _scores({})}, {"f": WINDOW}, LOW_FN)
    assert (low_fn.raw, low_fn.null_raw) == (-2.0, -2.0)


def test_one_threshold_over_the_corpus_and_normalisation() -> None:
    scores = {"a": _scores({50: 1.0}), "b": _scores({55: 0.6, 20: 0.7})}
    spans = {"a": WINDOW, "b": WINDOW}
    results = score_all_profiles(scores, spans)
    assert [r.profile for r in results] == ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]
    std = results[0]
    mid = _sig(2.5) / _sig(5.0)
    assert std.threshold == 0.6 and std.raw == pytest.approx(1 + mid - 0.11)
    assert std.normalized == pytest.approx(100 * (std.raw + 2) / 4)
    low_fn = results[2]
    assert low_fn.null_raw == -4.0
    assert low_fn.normalized == pytest.approx(100 * (1 + mid - 0.11 + 4) / 6)


def test_window_limits_map_to_rows_by_timestamp() -> None:
    stamps = [f"2014-01-01 00:{m:02d}:00" for m in range(10)]
    windows = [["2014-01-01 00:03:00.000000", "2014-01-01 00:05:00.000000"]]
    assert window_indices(stamps, windows) == [(3, 5)]


def test_command_line_writes_scores_and_scores_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    (data / "cat").mkdir(parents=True)
    stamps = [f"2014-01-01 {h:02d}:{m:02d}:00" for h in range(24) for m in range(0, 60, 5)][:240]
    rows = [f"{t},{10.0 if i < 200 else 90.0}" for i, t in enumerate(stamps)]
    (data / "cat" / "s.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    (tmp_path / "w.json").write_text(json.dumps({"cat/s.csv": [[stamps[200], stamps[215]]]}))
    assert nab.main([str(data), str(out)]) == 0
    lines = (out / "cat" / "s.csv").read_text().splitlines()
    assert lines[0] == "timestamp,value,anomaly_score" and len(lines) == 241
    assert nab.main(["--score", str(data), str(out), "--windows", str(tmp_path / "w.json")]) == 0
    printed = capsys.readouterr().out
    assert "standard: 100.00" in printed
    assert "reward_low_FP_rate" in printed and "reward_low_FN_rate" in printed

"""The Numenta Anomaly Benchmark (NAB v1.1) scoring rules, implemented from its documentation.

Each labelled window rewards its earliest detection with a scaled sigmoid of the detection's
position in the window (1.0 at the window's left edge, 0 at its right edge) times the profile's TP
weight; a window without a detection costs the FN weight. A detection outside every window costs
the FP weight, scaled by the sigmoid of its distance past the preceding window (a full FP weight
when no window precedes it or when it is three window widths past). The first 15 % of a file
(at most 750 rows) is probationary and not scored. One threshold per profile is chosen over the
whole corpus by sweeping every distinct anomaly score (a row is a detection when its score is >=
the threshold), and the corpus score is normalised as 100 * (raw - null) / (perfect - null), the
null detector scoring a constant 0.5 and the perfect one the TP weight for every window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

PROBATION_PERCENT = 0.15
NULL_SCORE = 0.5
START_THRESHOLD = 1.1


@dataclass(frozen=True)
class Profile:
    """The weights of one NAB application profile (config/profiles.json)."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


PROFILES: tuple[Profile, ...] = (
    Profile("standard", 1.0, 0.11, 1.0),
    Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
)


@dataclass(frozen=True)
class ScoredRow:
    """One scorable row: its anomaly score, its window (None outside), its weighted sweep score."""

    anomaly_score: float
    window: str | None
    sweep_score: float


@dataclass(frozen=True)
class CorpusScore:
    """The result of one profile on a corpus: threshold, raw and normalised score, counts."""

    profile: str
    threshold: float
    raw: float
    normalized: float
    null_raw: float
    perfect: float
    tp: int
    fp: int


def scaled_sigmoid(position: float) -> float:
    """NAB's scaled sigmoid: 2 * sigmoid(-5 * position) - 1, and -1 from three widths past a window."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probation_length(rows: int, percent: float = PROBATION_PERCENT) -> float:
    """The number of leading rows not scored: 15 % of the file, at most 15 % of 5,000 rows."""
    return min(math.floor(percent * rows), percent * 5000)


def window_indices(timestamps: Sequence[str], windows: Iterable[Sequence[str]]) -> list[tuple[int, int]]:
    """Each window as (first row, last row) of the rows whose timestamp lies within its limits."""
    keys = [_ts_key(t) for t in timestamps]
    out: list[tuple[int, int]] = []
    for start, end in windows:
        lo, hi = _ts_key(start), _ts_key(end)
        inside = [i for i, k in enumerate(keys) if lo <= k <= hi]
        if inside:
            out.append((inside[0], inside[-1]))
    return sorted(out)


def _ts_key(stamp: str) -> str:
    """A timestamp made comparable as text: 'YYYY-MM-DD HH:MM:SS' with the fraction dropped."""
    return stamp.strip().replace("T", " ")[:19]


def sweep_rows(
    scores: Sequence[float], windows: Sequence[tuple[int, int]], profile: Profile, name: str
) -> list[ScoredRow]:
    """The scorable rows of one file (probationary rows dropped) with their weighted sweep scores."""
    max_tp = scaled_sigmoid(-1.0)
    probation = probation_length(len(scores))
    rows: list[ScoredRow] = []
    pending = list(windows)
    current: tuple[int, int] | None = None
    previous: tuple[int, int] | None = None
    for i, score in enumerate(scores):
        if current is None and pending and i == pending[0][0]:
            current = pending.pop(0)
        window: str | None = None
        if current is not None:
            width = current[1] - current[0] + 1
            weighted = scaled_sigmoid(-(current[1] - i + 1) / width) * profile.tp_weight / max_tp
            window = f"{name}|{current[0]}"
        elif previous is None:
            weighted = scaled_sigmoid(3.0) * profile.fp_weight
        else:
            width = previous[1] - previous[0] + 1
            past = abs(previous[1] - i) / (width - 1) if width > 1 else 3.0
            weighted = scaled_sigmoid(past) * profile.fp_weight
        if i >= probation:
            rows.append(ScoredRow(score, window, weighted))
        if current is not None and i == current[1]:
            previous, current = current, None
    return rows


def best_threshold(rows: Iterable[ScoredRow], profile: Profile) -> tuple[float, float, int, int]:
    """The threshold with the highest total score over `rows`: (threshold, score, tp rows, fp rows).

    Starting from a threshold above every score (every window a false negative), the rows are
    taken in decreasing score order; each distinct score is a candidate threshold whose total
    counts every row at or above it. Ties keep the highest threshold.
    """
    ordered = sorted(rows, key=lambda r: r.anomaly_score, reverse=True)
    best: dict[str, float] = {r.window: -profile.fn_weight for r in ordered if r.window is not None}
    fp_total = 0.0
    window_total = sum(best.values())
    tp = fp = 0
    result = (START_THRESHOLD, window_total, 0, 0)
    i = 0
    while i < len(ordered):
        threshold = ordered[i].anomaly_score
        while i < len(ordered) and ordered[i].anomaly_score == threshold:
            row = ordered[i]
            if row.window is None:
                fp_total += row.sweep_score
                fp += 1
            else:
                tp += 1
                if row.sweep_score > best[row.window]:
                    window_total += row.sweep_score - best[row.window]
                    best[row.window] = row.sweep_score
            i += 1
        if fp_total + window_total > result[1]:
            result = (threshold, fp_total + window_total, tp, fp)
    return result


def score_corpus(
    scores: Mapping[str, Sequence[float]],
    windows: Mapping[str, Sequence[tuple[int, int]]],
    profile: Profile,
    total_windows: int | None = None,
) -> CorpusScore:
    """One profile's optimised, normalised NAB score of a detector's scores on a corpus.

    `windows` holds each file's windows as row ranges; `total_windows` (the number of windows in
    the labels, by default those given) sets the perfect score.
    """
    rows: list[ScoredRow] = []
    null_rows: list[ScoredRow] = []
    for name, series in scores.items():
        spans = windows.get(name, [])
        rows.extend(sweep_rows(series, spans, profile, name))
        null_rows.extend(sweep_rows([NULL_SCORE] * len(series), spans, profile, name))
    threshold, raw, tp, fp = best_threshold(rows, profile)
    null_raw = best_threshold(null_rows, profile)[1]
    count = total_windows if total_windows is not None else sum(len(w) for w in windows.values())
    perfect = count * profile.tp_weight
    normalized = 100.0 * (raw - null_raw) / (perfect - null_raw) if perfect != null_raw else 0.0
    return CorpusScore(profile.name, threshold, raw, normalized, null_raw, perfect, tp, fp)


def score_all_profiles(
    scores: Mapping[str, Sequence[float]],
    windows: Mapping[str, Sequence[tuple[int, int]]],
    total_windows: int | None = None,
) -> list[CorpusScore]:
    """The three NAB profiles' scores (standard, reward_low_FP_rate, reward_low_FN_rate)."""
    return [score_corpus(scores, windows, p, total_windows) for p in PROFILES]

"""Anomaly detector: throughput in samples/s on one core, the NAB scores, and how they generalise.

Throughput is measured twice, in CPU time of the benchmark's process (the goal is per core, and
the machine is shared: wall time would count other processes' turns), detector updates only (no
file I/O): the NAB corpus fed series by series to one `StreamingDetector` each, and 10,000 series
fed interleaved through an `AnomalyMonitor`, one sample of every series per 1 s tick (the
platform's case: 1 s metrics of 10,000 series). Goal: >= 50,000 samples/s. The NAB scores come
from the `nab` command's own path: the corpus scored into a temporary directory, then scored with
NAB's rules (standard, reward_low_FP_rate, reward_low_FN_rate).

With `--loco`, leave-one-category-out: for each NAB category (directory), a small grid of the
method's parameters and the detection threshold are chosen on the other categories, and the held-
out category is scored with them; the held-out raw scores are summed and normalised like the full
corpus. A second figure re-optimises only the threshold on the held-out category (as NAB does for
any corpus it scores), the parameters still chosen on the others. Both are printed for the whole
grid, for its part with the default burst gain, and for the defaults alone (only the threshold
chosen on the other categories: does the threshold transfer? The defaults themselves were chosen
on the whole corpus, so this one is no held-out test of the parameters).
Compares against: the published NAB standard scores of ARTime (74.9) and Numenta HTM (70.5), on
NAB's full 58-file corpus (this corpus is 34 of those files).
Run: .venv/bin/python bench/bench_anomaly.py [DATA_DIR] [--loco] (default ../shared/data/nab)
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from novacron.monitoring.anomaly import AnomalyMonitor, DetectorConfig, StreamingDetector
from novacron.monitoring.anomaly.detector import score_series
from novacron.monitoring.anomaly.nab import (
    data_files,
    detect_corpus,
    epoch_seconds,
    read_series,
    score_results,
)
from novacron.monitoring.anomaly.scoring import (
    NULL_SCORE,
    PROFILES,
    Profile,
    ScoredRow,
    best_threshold,
    sweep_rows,
    window_indices,
)

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "nab"
# The leave-one-category-out grid: the drift's trigger, the burst gain, the refractory period.
LOCO_GRID = [
    DetectorConfig(drift_z=z, burst_gain=g, refractory=r)
    for z, g, r in itertools.product((4.0, 6.0, 8.0), (0.5, 1.0, 2.0), (12, 24, 48))
]

Series = tuple[list[float], list[float], list[tuple[int, int]]]  # values, times, windows


def load_corpus(data_dir: Path) -> dict[str, Series]:
    """Every NAB file under `data_dir` with its labelled windows as row ranges."""
    labels: dict[str, list[list[str]]] = json.loads((data_dir / "windows.json").read_text())
    corpus: dict[str, Series] = {}
    for rel in data_files(data_dir):
        stamps, values = read_series(data_dir / rel)
        times = [epoch_seconds(s) for s in stamps]
        corpus[rel] = (values, times, window_indices(stamps, labels.get(rel, [])))
    return corpus


def corpus_rate(corpus: dict[str, Series], rounds: int = 3) -> tuple[int, float]:
    """Samples/s of one detector per NAB series, best of `rounds`: (samples, rate)."""
    total = sum(len(values) for values, _, _ in corpus.values())
    best = math.inf
    for _ in range(rounds):
        start = time.process_time()
        for values, times, _ in corpus.values():
            update = StreamingDetector().update
            for v, t in zip(values, times, strict=True):
                update(v, t)
        best = min(best, time.process_time() - start)
    return total, total / best


def monitor_rate(series: int = 10_000, ticks: int = 30) -> float:
    """Samples/s of an `AnomalyMonitor` of `series` series fed one sample of each per 1 s tick."""
    rng = random.Random(7)
    monitor = AnomalyMonitor(max_series=series)
    keys = [f"vm-{i}/cpu" for i in range(series)]
    base = [rng.uniform(5, 90) for _ in range(series)]
    noise = [rng.gauss(0, 1) for _ in range(4096)]
    t0 = 1_700_000_000.0
    for key, b in zip(keys, base, strict=True):  # first samples create the detectors
        monitor.observe(key, t0, b)
    start = time.process_time()
    for tick in range(1, ticks + 1):
        now = t0 + tick
        for i, key in enumerate(keys):
            monitor.observe(key, now, base[i] + noise[(i + tick) & 4095])
    return series * ticks / (time.process_time() - start)


def detect_all(corpus: dict[str, Series], config: DetectorConfig) -> dict[str, list[float]]:
    """The scores of every file of the corpus by a detector with `config`."""
    return {rel: score_series(values, times, config) for rel, (values, times, _) in corpus.items()}


def raw_at(rows: Sequence[ScoredRow], profile: Profile, threshold: float) -> float:
    """The raw NAB score of `rows` at a fixed threshold (earliest detection per window)."""
    windows = {r.window: -profile.fn_weight for r in rows if r.window is not None}
    total = 0.0
    for row in rows:
        if row.anomaly_score < threshold:
            continue
        if row.window is None:
            total += row.sweep_score
        else:
            windows[row.window] = max(windows[row.window], row.sweep_score)
    return total + sum(windows.values())


def loco(
    corpus: dict[str, Series], grid: list[dict[str, list[float]]], profile: Profile
) -> tuple[float, float, list[int]]:
    """Leave-one-category-out normalised scores: with the threshold chosen on the other
    categories, and re-optimised on the held-out one; and the grid entry picked for each."""
    rows = {
        (i, rel): sweep_rows(scores[rel], corpus[rel][2], profile, rel)
        for i, scores in enumerate(grid)
        for rel in corpus
    }
    fixed = reoptimised = 0.0
    picks: list[int] = []
    for category in sorted({rel.split("/")[0] for rel in corpus}):
        held = [rel for rel in corpus if rel.split("/")[0] == category]
        train = [rel for rel in corpus if rel not in held]

        def pooled(i: int, part: list[str]) -> list[ScoredRow]:
            return [row for rel in part for row in rows[(i, rel)]]

        fits = [best_threshold(pooled(i, train), profile) for i in range(len(grid))]
        pick = max(range(len(grid)), key=lambda i: fits[i][1])
        held_rows = pooled(pick, held)
        fixed += raw_at(held_rows, profile, fits[pick][0])
        reoptimised += best_threshold(held_rows, profile)[1]
        picks.append(pick)
    null_rows: list[ScoredRow] = []
    for rel, (values, _, spans) in corpus.items():
        null_rows.extend(sweep_rows([NULL_SCORE] * len(values), spans, profile, rel))
    null = best_threshold(null_rows, profile)[1]
    perfect = sum(len(spans) for _, _, spans in corpus.values()) * profile.tp_weight
    return 100 * (fixed - null) / (perfect - null), 100 * (reoptimised - null) / (perfect - null), picks


def print_loco(corpus: dict[str, Series]) -> None:
    """Leave-one-category-out for the three profiles, over the whole grid, the part of it with the
    default burst gain and the defaults alone, with the parameters picked per held-out category."""
    scores = [detect_all(corpus, config) for config in LOCO_GRID]
    categories = sorted({rel.split("/")[0] for rel in corpus})
    default_gain = DetectorConfig().burst_gain
    subsets = {
        "drift_z, burst_gain, refractory tuned": list(range(len(LOCO_GRID))),
        f"drift_z, refractory tuned, burst_gain {default_gain}": [
            i for i, c in enumerate(LOCO_GRID) if c.burst_gain == default_gain
        ],
        "parameters at their defaults, threshold only": [LOCO_GRID.index(DetectorConfig())],
    }
    for label, members in subsets.items():
        for profile in PROFILES:
            fixed, reoptimised, picks = loco(corpus, [scores[i] for i in members], profile)
            print(
                f"LOCO ({label}) {profile.name}: {fixed:.2f}"
                f" (threshold re-optimised on held-out: {reoptimised:.2f})"
            )
            for category, pick in zip(categories, picks, strict=True):
                c = LOCO_GRID[members[pick]]
                print(
                    f"  {category}: drift_z {c.drift_z} burst_gain {c.burst_gain} refractory {c.refractory}"
                )


def main() -> int:
    """Print the throughput figures, the NAB scores and, with --loco, their generalisation."""
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path, nargs="?", default=DEFAULT_DATA)
    parser.add_argument("--loco", action="store_true", help="also leave-one-category-out")
    args = parser.parse_args()
    corpus = load_corpus(args.data_dir)
    samples, rate = corpus_rate(corpus)
    print(f"NAB corpus, one detector per series: {samples} samples, {rate:,.0f} samples/s (goal 50,000)")
    print(f"AnomalyMonitor, 10,000 series x 1 s ticks: {monitor_rate():,.0f} samples/s (goal 50,000)")
    with tempfile.TemporaryDirectory() as out:
        detect_corpus(args.data_dir, Path(out))
        results = score_results(args.data_dir, Path(out), args.data_dir / "windows.json")
    for r in results:
        print(f"NAB {r.profile}: {r.normalized:.2f} (threshold {r.threshold:.6f}, raw {r.raw:.2f})")
    print("peers (NAB standard, full corpus): ARTime 74.9, Numenta HTM 70.5")
    if args.loco:
        print_loco(corpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())

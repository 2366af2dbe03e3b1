"""Anomaly detector: throughput in samples/s on one core, and the NAB scores of the corpus.

Throughput is measured twice, detector updates only (no file I/O): the NAB corpus fed series by
series to one `StreamingDetector` each, and 10,000 series fed interleaved through a
`AnomalyMonitor`, one sample of every series per 1 s tick (the platform's case: 1 s metrics of
10,000 series). Goal: >= 50,000 samples/s. The NAB scores come from the `nab` command's own path:
the corpus scored into a temporary directory, then scored with NAB's rules (standard,
reward_low_FP_rate, reward_low_FN_rate). Compares against: the published NAB standard scores of
ARTime (74.9) and Numenta HTM (70.5), on NAB's full 58-file corpus.
Run: .venv/bin/python bench/bench_anomaly.py [DATA_DIR] (default ../shared/data/nab)
"""

from __future__ import annotations

import math
import random
import sys
import tempfile
import time
from pathlib import Path

from novacron.monitoring.anomaly import AnomalyMonitor, StreamingDetector
from novacron.monitoring.anomaly.nab import (
    data_files,
    detect_corpus,
    epoch_seconds,
    read_series,
    score_results,
)

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "nab"


def corpus_rate(data_dir: Path, rounds: int = 3) -> tuple[int, float]:
    """Samples/s of one detector per NAB series, best of `rounds`: (samples, rate)."""
    series = []
    for rel in data_files(data_dir):
        stamps, values = read_series(data_dir / rel)
        series.append((values, [epoch_seconds(s) for s in stamps]))
    total = sum(len(v) for v, _ in series)
    best = math.inf
    for _ in range(rounds):
        start = time.perf_counter()
        for values, times in series:
            update = StreamingDetector().update
            for v, t in zip(values, times, strict=True):
                update(v, t)
        best = min(best, time.perf_counter() - start)
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
    start = time.perf_counter()
    for tick in range(1, ticks + 1):
        now = t0 + tick
        for i, key in enumerate(keys):
            monitor.observe(key, now, base[i] + noise[(i + tick) & 4095])
    return series * ticks / (time.perf_counter() - start)


def main() -> int:
    """Print the throughput figures and the NAB scores."""
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA
    samples, rate = corpus_rate(data_dir)
    print(f"NAB corpus, one detector per series: {samples} samples, {rate:,.0f} samples/s (goal 50,000)")
    print(f"AnomalyMonitor, 10,000 series x 1 s ticks: {monitor_rate():,.0f} samples/s (goal 50,000)")
    with tempfile.TemporaryDirectory() as out:
        detect_corpus(data_dir, Path(out))
        results = score_results(data_dir, Path(out), data_dir / "windows.json")
    for r in results:
        print(f"NAB {r.profile}: {r.normalized:.2f} (threshold {r.threshold:.6f}, raw {r.raw:.2f})")
    print("peers (NAB standard, full corpus): ARTime 74.9, Numenta HTM 70.5")
    return 0


if __name__ == "__main__":
    sys.exit(main())

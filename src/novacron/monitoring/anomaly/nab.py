"""Run the detector offline on NAB-format files and score the results with NAB's rules.

    python -m novacron.monitoring.anomaly.nab DATA_DIR OUT_DIR
        scores every `*.csv` under DATA_DIR (columns `timestamp,value`) and writes the same
        relative path under OUT_DIR with the columns `timestamp,value,anomaly_score`.
    python -m novacron.monitoring.anomaly.nab --score DATA_DIR OUT_DIR --windows windows.json
        scores the files already in OUT_DIR against the labelled windows and prints the
        standard, reward_low_FP_rate and reward_low_FN_rate scores.

The detector never sees the windows: they are read only by the scoring step.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from novacron.monitoring.anomaly.detector import DetectorConfig, score_series
from novacron.monitoring.anomaly.scoring import CorpusScore, score_all_profiles, window_indices


def read_series(path: Path) -> tuple[list[str], list[float]]:
    """The timestamps and values of a NAB-format CSV file (header `timestamp,value`)."""
    stamps: list[str] = []
    values: list[float] = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            stamps.append(row["timestamp"])
            values.append(float(row["value"]))
    return stamps, values


def epoch_seconds(stamp: str) -> float:
    """A NAB timestamp ('YYYY-MM-DD HH:MM:SS', UTC when it names no zone) as Unix seconds."""
    when = datetime.fromisoformat(stamp.strip())
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def data_files(data_dir: Path) -> list[str]:
    """The relative paths (with `/`) of every `*.csv` file under `data_dir`, sorted."""
    return sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*.csv"))


def detect_corpus(data_dir: Path, out_dir: Path, config: DetectorConfig | None = None) -> int:
    """Score every file under `data_dir` into `out_dir`; the number of samples scored."""
    count = 0
    for rel in data_files(data_dir):
        stamps, values = read_series(data_dir / rel)
        scores = score_series(values, [epoch_seconds(s) for s in stamps], config)
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["timestamp", "value", "anomaly_score"])
            for stamp, value, score in zip(stamps, values, scores, strict=True):
                writer.writerow([stamp, repr(value), f"{score:.6f}"])
        count += len(values)
    return count


def read_scores(path: Path) -> tuple[list[str], list[float]]:
    """The timestamps and anomaly scores of a results file."""
    stamps: list[str] = []
    scores: list[float] = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            stamps.append(row["timestamp"])
            scores.append(float(row["anomaly_score"]))
    return stamps, scores


def score_results(data_dir: Path, out_dir: Path, windows_path: Path) -> list[CorpusScore]:
    """The three NAB profile scores of the results in `out_dir` for the files of `data_dir`."""
    labels: dict[str, list[list[str]]] = json.loads(windows_path.read_text())
    scores: dict[str, list[float]] = {}
    spans: dict[str, list[tuple[int, int]]] = {}
    for rel in data_files(data_dir):
        stamps, values = read_scores(out_dir / rel)
        scores[rel] = values
        spans[rel] = window_indices(stamps, labels.get(rel, []))
    total = sum(len(labels.get(rel, [])) for rel in scores)
    return score_all_profiles(scores, spans, total)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: detect (default) or `--score`."""
    parser = argparse.ArgumentParser(prog="python -m novacron.monitoring.anomaly.nab")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--score", action="store_true", help="score OUT_DIR instead of detecting")
    parser.add_argument("--windows", type=Path, help="NAB labels (default DATA_DIR/windows.json)")
    args = parser.parse_args(argv)
    if not args.score:
        n = detect_corpus(args.data_dir, args.out_dir)
        print(f"scored {n} samples into {args.out_dir}")
        return 0
    windows = args.windows or args.data_dir / "windows.json"
    for result in score_results(args.data_dir, args.out_dir, windows):
        print(f"{result.profile}: {result.normalized:.2f} (threshold {result.threshold:.6f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where the pytest suite's wall time goes, from the JUnit XML that ``scripts/test.sh`` writes.

    python scripts/suite_times.py [build/junit.xml] [--top 20] [--files 30]

Prints the total, the time per test file (a test's time is setup + call + teardown, so a
module-scoped fixture's start is counted on the module's first test and its stop on the last) and
the slowest tests. Two files (before, after) print the change per file instead.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path


def load(path: Path) -> tuple[dict[str, float], list[tuple[float, str, str]]]:
    """Per-file totals and every (seconds, test id, outcome) of one JUnit XML file."""
    per_file: dict[str, float] = defaultdict(float)
    tests: list[tuple[float, str, str]] = []
    for case in ET.parse(path).getroot().iter("testcase"):
        seconds = float(case.get("time") or 0.0)
        classname, name = case.get("classname", ""), case.get("name", "")
        # pytest's classname is the dotted module path (plus a class, if any)
        parts = classname.split(".")
        module = next((i for i in range(len(parts), 0, -1) if parts[i - 1].startswith("test_")), len(parts))
        file = "/".join(parts[:module]) + ".py"
        test = "::".join([file, *parts[module:], name])
        outcome = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        per_file[file] += seconds
        tests.append((seconds, test, outcome))
    return dict(per_file), tests


def report(path: Path, top: int, files: int) -> None:
    per_file, tests = load(path)
    total = sum(per_file.values())
    print(f"{len(tests)} tests, {total:.0f} s in tests ({total / 60:.1f} min), {path}")
    print(f"\nslowest {files} files:")
    for file, seconds in sorted(per_file.items(), key=lambda kv: -kv[1])[:files]:
        print(f"{seconds:8.1f} s  {file}")
    print(f"\nslowest {top} tests:")
    for seconds, test, outcome in sorted(tests, reverse=True)[:top]:
        mark = "" if outcome == "passed" else f"  [{outcome}]"
        print(f"{seconds:8.1f} s  {test}{mark}")


def compare(before: Path, after: Path, files: int) -> None:
    old, _ = load(before)
    new, _ = load(after)
    rows = [(new.get(f, 0.0) - old.get(f, 0.0), f) for f in set(old) | set(new)]
    print(f"total: {sum(old.values()):.0f} s -> {sum(new.values()):.0f} s")
    for delta, file in sorted(rows)[:files]:
        print(f"{old.get(file, 0.0):8.1f} -> {new.get(file, 0.0):8.1f} s ({delta:+.1f})  {file}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("xml", nargs="*", type=Path, default=[Path("build/junit.xml")])
    ap.add_argument("--top", type=int, default=20, help="how many of the slowest tests")
    ap.add_argument("--files", type=int, default=30, help="how many files")
    args = ap.parse_args()
    if len(args.xml) == 2:
        compare(args.xml[0], args.xml[1], args.files)
    elif len(args.xml) == 1:
        report(args.xml[0], args.top, args.files)
    else:
        ap.error("one JUnit XML file, or two (before, after)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``novacron cost roi TRACE.csv``: offline, the figures of a hand-computed trace."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from novacron.cli.client import CliError
from novacron.cli.cost import cost_app


def test_roi_of_a_small_trace_matches_by_hand(tmp_path: Path) -> None:
    trace = tmp_path / "load.csv"
    trace.write_text(
        "timestamp,value\n"
        "2026-01-01T00:00:00+00:00,40\n2026-01-01T00:15:00+00:00,200\n"
        "2026-01-01T00:30:00+00:00,90\n2026-01-01T00:45:00+00:00,10\n"
    )
    args = [
        "roi",
        str(trace),
        "--capacity-per-vm",
        "100",
        "--price-per-vm-hour",
        "0.5",
        "--target-util",
        "0.5",
    ]
    r = CliRunner().invoke(cost_app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    # needs 1, 4, 2, 1 VMs over four 15-minute steps: static 4 VMs for 1 h, scaled 8 quarter-hours
    got = json.loads(r.output)
    assert got["step_s"] == 900 and got["static_vm_hours"] == 4.0 and got["scaled_vm_hours"] == 2.0
    assert got["static_cost"] == 2.0 and got["saving"] == 1.0 and got["saving_share"] == 0.5
    table = CliRunner().invoke(cost_app, args)
    assert table.exit_code == 0 and "saving_share" in table.output
    trace.write_text("timestamp,value\n2026-01-01T00:00:00+00:00,not a number\n")
    bad = CliRunner().invoke(cost_app, [*args, "--json"])
    assert isinstance(bad.exception, CliError) and "load.csv" in str(bad.exception)

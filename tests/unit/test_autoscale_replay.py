"""The replay's figures on a trace small enough to compute by hand, and the CLI around it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from novacron.autoscaling.replay import ReplayConfig, ReplayResult, read_trace, replay
from novacron.cli.main import app

# 4 samples of 5 minutes: 100, 300, 300, 100 load units. One VM serves 100 at 100 %; at the 0.5
# target it should carry 50, so the group needs 2, 6, 6, 2 VMs. VMs serve 60 s after launch.
TRACE = """timestamp,value
2024-01-01 00:00:00,100
2024-01-01 00:05:00,300
2024-01-01 00:10:00,300
2024-01-01 00:15:00,100
"""


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(TRACE)
    return path


def run(trace: Path, policy: str) -> ReplayResult:
    step_s, loads = read_trace(trace)
    assert (step_s, loads) == (300.0, [100.0, 300.0, 300.0, 100.0])
    config = ReplayConfig(policy=policy, capacity_per_vm=100, boot_delay_s=60, target_util=0.5)
    return replay(loads, step_s, config)


def test_hpa_figures_match_the_hand_computation(trace: Path) -> None:
    # 0-300 s: 2 VMs (started warm for the first sample), metric 0.5 = target.        2 x 300 = 600 VM-s
    # 300 s: metric 300/2/100 = 1.5, ratio 3: ceil(3 x 2) = 6, 4 launched, serving at 360 s.
    #   300-360 s: load 300 > 2 x 50 serving: 60 s = 1 violation minute.            6 x 300 = 1800 VM-s
    # 600-900 s: 6 VMs at the target.                                               6 x 300 = 1800 VM-s
    # 900 s: load 100, recommendation 2, but the 5-minute window still holds the 6s recorded every 15 s
    #   until 885 s; the one at 885 s leaves the window at 1185 s: 6 x 285 + 2 x 15 = 1740 VM-s
    # total 600 + 1800 + 1800 + 1740 = 5940 VM-s = 1.65 VM-h; 2 actions (out at 300 s, in at 1185 s)
    r = run(trace, "hpa")
    assert r.vm_hours == pytest.approx(1.65)
    assert r.violation_minutes == pytest.approx(1.0)
    assert r.actions == 2 and r.peak_vms == 6


def test_target_tracking_figures_match_the_hand_computation(trace: Path) -> None:
    # same scale-out at 300 s (1 violation minute); at 900 s the last action is 600 s old, past the
    # 300 s cooldown: in to 2 at once. 600 + 1800 + 1800 + 600 = 4800 VM-s = 1.3333 VM-h
    r = run(trace, "target")
    assert r.vm_hours == pytest.approx(4800 / 3600)
    assert r.violation_minutes == pytest.approx(1.0)
    assert r.actions == 2


def test_predictive_without_enough_history_is_target_tracking(trace: Path) -> None:
    # 20 minutes of history is less than the day the first fit waits for: the reactive floor alone
    predicted, reacted = run(trace, "predictive"), run(trace, "target")
    assert predicted.fits == 0
    figures = ("vm_hours", "violation_minutes", "actions")
    assert [getattr(predicted, f) for f in figures] == [getattr(reacted, f) for f in figures]


def test_cli_replay_prints_one_json_object(trace: Path) -> None:
    args = ["autoscale", "replay", str(trace), "--policy", "hpa", "--capacity-per-vm", "100"]
    result = CliRunner().invoke(app, [*args, "--boot-delay", "60", "--target-util", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert (figures["vm_hours"], figures["violation_minutes"], figures["actions"]) == (1.65, 1.0, 2)


def test_cli_replay_table_and_errors(trace: Path, tmp_path: Path) -> None:
    args = ["autoscale", "replay", str(trace), "--capacity-per-vm", "100", "--boot-delay", "60"]
    result = CliRunner().invoke(app, [*args, "--policy", "target", "--target-util", "0.5"])
    assert result.exit_code == 0, result.output
    assert "VM-hours            1.33" in result.output and "scaling actions     2" in result.output
    result = CliRunner().invoke(app, [*args, "--policy", "magic"])
    assert result.exit_code == 1 and "hpa, target, predictive" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n2024-01-01 00:00:00,1\n")
    result = CliRunner().invoke(app, ["autoscale", "replay", str(bad), "--capacity-per-vm", "1"])
    assert result.exit_code == 1 and "at least two samples" in result.output

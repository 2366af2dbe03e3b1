"""How a migration's progress reads in ``novacron task watch`` and what QEMU is asked for."""

from __future__ import annotations

from novacron.cli.watch import step_label
from novacron.compute.migration import DEFAULT_MAX_DOWNTIME_MS, qemu_settings


def test_watch_shows_ram_and_disk_transferred() -> None:
    task = {
        "state": "running",
        "steps": ["reserve", "prepare_target", "transfer", "start_target", "switch", "cleanup_source"],
        "step_index": 2,
        "current_step": "transfer",
        "result": {
            "progress": {
                "ram": {"transferred": 3 << 20, "remaining": 200 << 20, "total": 256 << 20},
                "disk": {"offset": 10 << 20, "len": 40 << 20},
            }
        },
    }
    assert step_label(task) == "transfer (3/6) RAM 56.0/256.0 MiB, disk 10.0/40.0 MiB"
    assert step_label({**task, "result": None}) == "transfer (3/6)"
    assert step_label({**task, "state": "cancelled"}) == "cancelled"


def test_request_options_become_qemu_parameters() -> None:
    assert qemu_settings({}) == {
        "max_downtime_ms": DEFAULT_MAX_DOWNTIME_MS,
        "max_bandwidth_bps": None,
        "auto_converge": False,
    }
    assert qemu_settings({"max_downtime_ms": 200, "max_bandwidth_mbps": 8, "auto_converge": True}) == {
        "max_downtime_ms": 200,
        "max_bandwidth_bps": 1_000_000,
        "auto_converge": True,
    }

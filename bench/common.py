"""Helpers shared by the benchmarks: a real ``novacron-server`` (the test suite's), figures, load."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the server fixture of tests/conftest.py is reused, not copied
    sys.path.insert(0, str(ROOT))

from tests.conftest import (  # noqa: E402
    GUEST_OUT,
    Guest,
    Server,
    default_project,
    import_guest_image,
    make_server,
)
from tests.integration.backupkeys import backup_settings  # noqa: E402

__all__ = [
    "GUEST_OUT",
    "Guest",
    "Server",
    "backup_settings",
    "default_project",
    "import_guest_image",
    "kill_pid",
    "load",
    "machine",
    "make_server",
    "pct",
    "running_server",
    "summary",
]


def pct(samples: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``samples``, which need not be sorted."""
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * q))]


def summary(samples: list[float], scale: float = 1.0, unit: str = "s", fmt: str = "8.3f") -> str:
    med = statistics.median(samples) * scale
    return (
        f"median={med:{fmt}} {unit}  min={min(samples) * scale:{fmt}} {unit}  "
        f"max={max(samples) * scale:{fmt}} {unit}  n={len(samples)}"
    )


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def machine() -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{now}, {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def kill_pid(pid: int, timeout_s: float = 10.0) -> None:
    """End one process we started (by its id): SIGTERM, then SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)


@contextlib.contextmanager
def running_server(**env: str) -> Iterator[Server]:
    """A real ``novacron-server`` on a temp state dir; stopped after, with every QEMU it left (by pid)."""
    import shutil

    srv = make_server(**env)
    srv.start(timeout_s=60)
    try:
        yield srv
    finally:
        srv.stop()
        run_dir = srv.state_dir / "run"
        for pidfile in run_dir.glob("*.pid") if run_dir.is_dir() else []:
            text = pidfile.read_text().strip()
            if text.isdigit():
                cmdline = Path(f"/proc/{text}/cmdline")
                if cmdline.exists() and str(pidfile).encode() in cmdline.read_bytes():
                    kill_pid(int(text))
        shutil.rmtree(srv.state_dir, ignore_errors=True)

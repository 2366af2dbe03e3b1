"""A supervised engine (real VictoriaMetrics) answers when started, comes back after SIGKILL, stops."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest

from novacron.monitoring.process import EngineFailed, SupervisedProcess
from tests.conftest import free_port, require


def _victoria(tmp_path: Path, *extra: str) -> SupervisedProcess:
    binary = shutil.which("victoria-metrics")
    require(binary is not None, "victoria-metrics is not installed (scripts/setup.sh installs it)")
    assert binary is not None
    port = free_port()
    argv = [binary, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={tmp_path / 'data'}", *extra]
    return SupervisedProcess("victoria-metrics", argv, f"http://127.0.0.1:{port}/health", tmp_path / "vm.log")


def test_engine_restarts_after_sigkill_and_stops(tmp_path: Path) -> None:
    engine = _victoria(tmp_path)
    engine.start()
    try:
        first = engine.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while engine.pid in (None, first) and time.monotonic() < deadline:
            time.sleep(0.05)
        engine.wait_ready(15)
        assert engine.restarts == 1 and engine.pid not in (None, first)
    finally:
        engine.stop()
    assert engine.pid is None
    with pytest.raises(httpx.HTTPError):
        httpx.get(engine.ready_url, timeout=1)


def test_engine_that_cannot_start_says_why(tmp_path: Path) -> None:
    engine = _victoria(tmp_path, "-retentionPeriod=not-a-duration")
    engine.ready_timeout_s = 10
    with pytest.raises(EngineFailed, match="retentionPeriod"):
        engine.start()
    engine.stop()

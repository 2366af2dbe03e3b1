"""A real NATS server with JetStream (Debian's ``/usr/sbin/nats-server``, installed by scripts/setup.sh).

:func:`start_nats` starts ``nats-server -js`` on a free loopback port with a fresh store directory
and waits until its monitoring endpoint says JetStream is healthy. :meth:`Nats.kill` and
:meth:`Nats.start` take it down and bring it back on the same port and store (an outage, for the
event bus's fallback). Under ``CI`` a missing binary fails the test (``tests.conftest.require``).
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import free_port, require

BINARY = "/usr/sbin/nats-server"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Nats:
    """One ``nats-server -js`` process on ``port``, its JetStream store in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.monitor_port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 15.0) -> None:
        argv = [BINARY, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor_port)]
        argv += ["-sd", str(self.workdir / "store")]
        with (self.workdir / "nats.log").open("ab") as log:
            # dies with the test process (SIGTERM on its death), so a killed run leaves no server
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        health = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(health, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        tail = (self.workdir / "nats.log").read_text(errors="replace")[-2000:]
        raise AssertionError(f"nats-server did not become ready: {tail}")

    def kill(self) -> None:
        """SIGKILL: the clients see the connection drop, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


@contextmanager
def start_nats(workdir: Path) -> Iterator[Nats]:
    """A JetStream-enabled NATS server, stopped (and its store removed) on exit."""
    require(Path(BINARY).exists(), f"{BINARY} is not installed (scripts/setup.sh installs nats-server)")
    workdir.mkdir(parents=True, exist_ok=True)
    server = Nats(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

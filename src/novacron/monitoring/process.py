"""Engines the node runs beside itself (VictoriaMetrics, Prometheus, vmalert, Alertmanager).

A :class:`SupervisedProcess` is started and awaited until it answers on its readiness URL, restarted
when it dies, and stopped with the node. It is spawned from its own long-lived thread with
``PR_SET_PDEATHSIG`` so that a node killed with SIGKILL does not leave an engine holding its data
directory: the kernel ties the signal to the thread that forked the child, so that thread must live as
long as the supervision does.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
#: a process that dies this soon after its start again counts as crash-looping
_QUICK_DEATH_S = 10.0
_MAX_BACKOFF_S = 30.0


class EngineFailed(RuntimeError):
    """An engine did not start or answer; the message carries the tail of its log."""


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (the engine binds it right after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class SupervisedProcess:
    """One engine process: started and made ready, restarted on death with backoff, stopped on request."""

    def __init__(  # noqa: PLR0913 - an engine is described by all of these, each optional but name/argv
        self,
        name: str,
        argv: Sequence[str],
        ready_url: str,
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = 30.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.ready_url = ready_url
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.ready_timeout_s = ready_timeout_s
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._spawned = threading.Event()
        self._thread: threading.Thread | None = None
        self._spawn_error: BaseException | None = None

    @property
    def pid(self) -> int | None:
        """The running process's pid, or None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        """Spawn the engine and return once it answers on its readiness URL (EngineFailed otherwise)."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} is already started")
        self._thread = threading.Thread(target=self._supervise, name=f"engine-{self.name}", daemon=True)
        self._thread.start()
        self._spawned.wait()
        if self._spawn_error is not None:
            raise EngineFailed(f"{self.name} could not be started: {self._spawn_error}")
        self.wait_ready(self.ready_timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        """Poll the readiness URL until it answers 2xx; EngineFailed with the log tail if the engine
        exits meanwhile or does not answer in timeout_s."""
        deadline = time.monotonic() + timeout_s
        restarts = self.restarts
        while time.monotonic() < deadline:
            proc = self._proc
            if self.restarts != restarts or (proc is not None and proc.poll() is not None):
                raise EngineFailed(f"{self.name} exited while starting:\n{self.log_tail()}")
            try:
                if httpx.get(self.ready_url, timeout=2.0).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise EngineFailed(
            f"{self.name} did not answer on {self.ready_url} in {timeout_s:.0f} s:\n{self.log_tail()}"
        )

    def reload(self) -> None:
        """Ask the engine to re-read its configuration (SIGHUP, as all of these engines understand)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGHUP)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop supervising and terminate the engine (SIGTERM, then SIGKILL after timeout_s)."""
        self._stopping.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def log_tail(self, max_bytes: int = 2000) -> str:
        """The end of the engine's log, for error messages."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(max(0, self.log_path.stat().st_size - max_bytes))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            return subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                env=self.env,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - the only way to set PDEATHSIG; no threads touched
            )
        finally:
            os.close(fd)

    def _supervise(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self._proc = self._spawn()
            except OSError as exc:
                self._spawn_error = exc
                self._spawned.set()
                return
            self._spawned.set()
            code = self._proc.wait()
            if self._stopping.is_set():
                return
            lived = time.monotonic() - started
            backoff = min(_MAX_BACKOFF_S, backoff * 2) if lived < _QUICK_DEATH_S else 1.0
            log.warning(
                "%s exited with %s after %.0f s; restarting in %.0f s", self.name, code, lived, backoff
            )
            self.restarts += 1
            self._stopping.wait(backoff)

"""The loop of a leader-elected background controller (HA monitor, backup scheduler, quota controller).

``workers.py`` starts a controller's ``run_forever`` when this replica wins the controller's
leadership and calls ``stop`` (then cancels it) the moment leadership is lost. In between, the loop
runs the controller's jobs round after round, ``tick_s`` apart: each job on its own interval, each in
a worker thread (a job's database work blocks, and the controllers' event loop must not wait on
it). A job that fails is logged and tried again when it is next due: one bad round never stops the
controller, and a failed job does not keep the others from running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One duty of a controller: a blocking call, made every ``every_s`` seconds (None: every round)."""

    name: str
    run: Callable[[], object]
    #: a callable is read before each round: an interval of the live configuration (``configsvc``)
    #: takes effect at once, measured from the job's last run
    every_s: float | Callable[[], float] | None = None

    def interval(self) -> float | None:
        """The interval in force now (None: every round)."""
        return self.every_s() if callable(self.every_s) else self.every_s


class ControllerLoop:
    """Run ``jobs`` every ``tick_s`` seconds (or their own interval) until ``stop``."""

    def __init__(self, name: str, jobs: list[Job], tick_s: float) -> None:
        self.name = name
        self.jobs = list(jobs)
        self.tick_s = tick_s
        self._stop = asyncio.Event()

    async def run_forever(self) -> None:
        """Run rounds until stopped; a loop stopped when leadership was lost runs again when it is won."""
        self._stop.clear()
        last_run: dict[int, float] = {}
        while not self._stop.is_set():
            for i, job in enumerate(self.jobs):
                now = time.monotonic()
                every = job.interval()
                due = i not in last_run or every is None or now >= last_run[i] + every
                if not due or self._stop.is_set():
                    continue
                last_run[i] = now
                await self._run(job)
            await self._pause()

    async def _pause(self) -> None:
        """Wait between rounds: ``tick_s``, or less if stopped (a subclass may be woken sooner)."""
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the controller's cancel
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.tick_s):
                await self._stop.wait()

    async def stop(self) -> None:
        """End the loop after the job now running (``workers.py`` also cancels it)."""
        self._stop.set()

    async def _run(self, job: Job) -> None:
        try:
            await asyncio.to_thread(job.run)
        except Exception:  # noqa: BLE001 - one failed round must not stop the controller
            log.exception("%s: %s failed", self.name, job.name)

"""The controller loop: rounds, per-job intervals, a failing job logged and retried, stop and restart."""

from __future__ import annotations

import asyncio
import logging

import pytest

from novacron.tasks.controller import ControllerLoop, Job


def test_jobs_run_each_round_or_on_their_interval_and_a_failure_does_not_stop_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = {"every": 0, "rare": 0, "broken": 0}

    def count(name: str) -> None:
        runs[name] += 1
        if name == "broken":
            raise RuntimeError("boom")

    loop = ControllerLoop(
        "test controller",
        [
            Job("broken", lambda: count("broken")),
            Job("every", lambda: count("every")),
            Job("rare", lambda: count("rare"), every_s=3600),
        ],
        tick_s=0.01,
    )

    async def main() -> None:
        task = asyncio.create_task(loop.run_forever())
        while runs["every"] < 5:
            await asyncio.sleep(0.01)
        await loop.stop()
        await asyncio.wait_for(task, 2)

    with caplog.at_level(logging.ERROR, logger="novacron.tasks.controller"):
        asyncio.run(main())
    assert runs["every"] >= 5 and runs["broken"] >= 5  # the failing job neither stops nor starves the others
    assert runs["rare"] == 1  # due once an hour: only the first round ran it
    assert "test controller: broken failed" in caplog.text


def test_stop_ends_the_wait_at_once_and_a_stopped_loop_runs_again() -> None:
    runs: list[int] = []
    loop = ControllerLoop("test controller", [Job("tick", lambda: runs.append(1))], tick_s=3600)

    async def run_once() -> None:
        task = asyncio.create_task(loop.run_forever())
        while not runs:
            await asyncio.sleep(0.01)
        await loop.stop()
        await asyncio.wait_for(task, 2)  # not after the hour's tick: stop wakes the wait

    async def lead_twice() -> None:
        await run_once()
        runs.clear()
        await run_once()  # leadership won again: the same loop runs again

    asyncio.run(lead_twice())
    assert runs == [1]

"""The webhook dispatcher's wake-ups (``webhooks/wake.py``) on a real SQLite log and the process's
event bus: a commit that may match a subscription starts a round at once, one that cannot does not,
a burst of commits coalesces into a few rounds, and stopping ends the pause at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from novacron import events
from novacron.db.base import Database
from novacron.db.migrate import upgrade
from novacron.db.models import Tenant
from novacron.tasks.controller import Job
from novacron.webhooks.wake import BusWokenLoop, Interest


async def _until(what: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not what():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)


def test_rounds_follow_matching_commits_coalesce_and_stop_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(f"sqlite:///{tmp_path}/t.db")
    upgrade(db)
    monkeypatch.setattr(events, "TAIL", events.Tail())  # this log's, not another test's
    with db.session() as s:
        s.add(Tenant(id="t-a", name="a"))
    rounds: list[float] = []
    loop = BusWokenLoop("test", [Job("round", lambda: rounds.append(1))], 30.0, db, lambda: None)
    loop.interests = (Interest("t-a", ("volume.*",), (), None),)

    def commit(type_: str, count: int = 1) -> None:
        for i in range(count):
            with db.session() as s:
                events.publish(s, type_, type_.split(".")[0], f"r-{i}", tenant_id="t-a")

    async def scenario() -> None:
        task = asyncio.create_task(loop.run_forever())
        await _until(lambda: len(rounds) == 1)  # the first round, at start
        await asyncio.to_thread(commit, "volume.created")
        await _until(lambda: len(rounds) == 2, 1.0)  # at once, not at the 30 s tick
        await asyncio.to_thread(commit, "vm.created")  # no subscription wants it
        await asyncio.sleep(0.3)
        assert len(rounds) == 2
        await asyncio.to_thread(commit, "volume.created", 30)  # 30 transactions, 30 wake-ups
        await _until(lambda: len(rounds) >= 3, 1.0)
        await asyncio.sleep(0.3)
        assert len(rounds) <= 12, f"{len(rounds)} rounds for a burst of 30 commits"
        started = time.monotonic()
        await loop.stop()
        await asyncio.wait_for(task, 2.0)
        assert time.monotonic() - started < 1.0

    asyncio.run(scenario())

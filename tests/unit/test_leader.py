"""Leadership: one leader per controller name among PostgreSQL sessions; SQLite always leads."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import create_engine, text

from novacron.tasks.leader import PostgresAdvisoryLock, SingleProcess, leadership_for, lock_key


def test_lock_keys_are_stable_signed_64_bit_and_distinct() -> None:
    assert lock_key("novacron.tasks") == lock_key("novacron.tasks")
    assert lock_key("novacron.tasks") != lock_key("novacron.scheduler")
    for name in ("novacron.tasks", "novacron.scheduler", "novacron.ha", "x"):
        assert -(2**63) <= lock_key(name) < 2**63


def test_sqlite_is_one_process_that_always_leads() -> None:
    leadership = leadership_for("sqlite:////tmp/x.db", "novacron.tasks")
    assert isinstance(leadership, SingleProcess)
    assert leadership.is_leader and not leadership.exclusive

    async def main() -> None:
        await asyncio.wait_for(leadership.wait_until_leader(), 1)

    asyncio.run(main())


async def _until(predicate: Any, timeout_s: float = 10.0) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout_s, "condition not reached"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def test_two_sessions_one_leader_and_takeover_on_close(postgres: Any) -> None:
    url = postgres.create_database("leader_unit")

    async def main() -> None:
        first = PostgresAdvisoryLock("novacron.tasks", url, retry_s=0.2, check_s=0.2)
        second = PostgresAdvisoryLock("novacron.tasks", url, retry_s=0.2, check_s=0.2)
        other = PostgresAdvisoryLock("novacron.scheduler", url, retry_s=0.2, check_s=0.2)
        changes: list[bool] = []
        first.on_change(changes.append)
        # transitions of the second, recorded as they happen: it may lose and win back the lock
        # between two polls of ``is_leader``
        second_changes: list[bool] = []
        second.on_change(second_changes.append)
        run_first = asyncio.create_task(first.run())
        await asyncio.wait_for(first.wait_until_leader(), 10)
        run_second = asyncio.create_task(second.run())
        run_other = asyncio.create_task(other.run())
        # another controller's name is another lock: it leads independently
        await asyncio.wait_for(other.wait_until_leader(), 10)
        await asyncio.sleep(1.0)  # several campaign rounds
        assert first.is_leader and not second.is_leader

        # the leader goes away: its session ends, the lock is free, the other session takes it
        run_first.cancel()
        # bounded: a cleanup that hangs must not hang the suite
        await asyncio.wait({run_first}, timeout=10)
        assert not first.is_leader and changes == [True, False]
        took = await _until(lambda: second.is_leader)
        assert took < 2.0

        # the same leader whose session PostgreSQL terminates notices and steps down at once
        engine = create_engine(url)
        with engine.begin() as conn:
            killed = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'novacron-leader:novacron.tasks'"
                )
            ).all()
        engine.dispose()
        assert len(killed) == 1
        seen = len(second_changes)
        lost_after = await _until(lambda: False in second_changes[seen:], 10)
        assert lost_after <= second.loss_detection_s + 2.0  # slack for a loaded 2-core machine
        # and wins again on a fresh session (nobody else campaigns)
        await asyncio.wait_for(second.wait_until_leader(), 10)

        for task in (run_second, run_other):
            task.cancel()
        await asyncio.wait({run_second, run_other}, timeout=10)
        assert not second.is_leader and not other.is_leader

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(main(), 120))
    finally:
        loop.close()  # unlike asyncio.run, never waits on a stuck task or thread at exit

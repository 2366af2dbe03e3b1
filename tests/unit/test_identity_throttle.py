"""The login throttle's shared state, on SQLite and on PostgreSQL (several replicas share it)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from novacron.config import Settings
from novacron.db.base import Database
from novacron.db.migrate import upgrade
from novacron.db.models import LoginFailure
from novacron.identity.login import HashPool, LoginBusy
from novacron.identity.throttle import LoginThrottle, Throttled, account_key, source_key


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/nc.db"
    else:
        pg: Any = request.getfixturevalue("postgres")
        url = pg.create_database(f"throttle_{int(time.time() * 1000) % 10**9}")
    database = Database(url)
    upgrade(database)  # through the Alembic migration, as a server does
    yield database
    database.engine.dispose()


def _throttle(db: Database, tmp_path: Path, **overrides: Any) -> LoginThrottle:
    settings = Settings(state_dir=tmp_path, database_url=db.url, embedded_agent=False)
    defaults = {"login_account_failures": 3, "login_source_failures": 5, "login_backoff_s": 0.3}
    return LoginThrottle(db, replace(settings, **(defaults | overrides)))


def _check(db: Database, t: LoginThrottle, username: str, source: str | None) -> int | None:
    with db.read_session() as s:
        try:
            t.check(s, username, source)
        except Throttled as exc:
            return exc.retry_after
    return None


def test_backoff_per_account_and_per_source(db: Database, tmp_path: Path) -> None:
    t = _throttle(db, tmp_path)
    kinds = []
    for _ in range(3):
        assert _check(db, t, "Alice", "192.0.2.1") is None
        with db.session() as s:
            kinds += [lock.kind for lock in t.failed(s, "alice", "192.0.2.1")]
    assert kinds == ["account"]  # blocked once, reported once
    assert _check(db, t, "alice", "192.0.2.99") == 1  # from anywhere, whatever the case
    replica = _throttle(db, tmp_path)  # another API process: the block is in the shared database
    assert _check(db, replica, "alice", "192.0.2.98") == 1
    assert _check(db, t, "bob", "192.0.2.1") is None  # the source has 2 failures to go
    for name in ("bob", "carol"):
        with db.session() as s:
            kinds = [lock.kind for lock in t.failed(s, name, "192.0.2.1")]
    assert kinds == ["source"]
    assert _check(db, t, "dave", "192.0.2.1") == 1
    assert _check(db, t, "dave", "2001:db8::1") is None
    time.sleep(0.35)
    assert _check(db, t, "alice", "192.0.2.2") is None  # the backoff passed
    with db.session() as s:
        t.succeeded(s, "alice")
        assert s.get(LoginFailure, account_key("alice")) is None
        assert s.get(LoginFailure, source_key("192.0.2.1")).failures == 5  # type: ignore[union-attr]


def test_ipv6_sources_count_per_64_and_counts_are_forgotten(db: Database, tmp_path: Path) -> None:
    assert source_key("2001:db8:1:2::5") == source_key("2001:db8:1:2:ffff::9") == "source:2001:db8:1:2::/64"
    t = _throttle(db, tmp_path, login_reset_s=0.2)
    with db.session() as s:
        t.failed(s, "x", "2001:db8::1")
        t.failed(s, "y", "2001:db8::2")
    time.sleep(0.3)
    with db.session() as s:
        t._pruned_at = 0.0
        t.failed(s, "z", "2001:db8::3")
        # the old count was forgotten (1, not 3), and the forgotten rows of x and y pruned
        assert s.get(LoginFailure, source_key("2001:db8::3")).failures == 1  # type: ignore[union-attr]
        assert s.get(LoginFailure, account_key("x")) is None


def test_concurrent_failures_lose_no_count(db: Database, tmp_path: Path) -> None:
    t = _throttle(db, tmp_path, login_account_failures=1000, login_source_failures=1000)

    def fail(i: int) -> None:
        with db.session() as s:
            t.failed(s, "target", f"192.0.2.{i}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fail, range(40)))
    with db.session() as s:
        assert s.get(LoginFailure, account_key("target")).failures == 40  # type: ignore[union-attr]


def test_hash_pool_bounds_concurrency_and_queue() -> None:
    pool = HashPool(workers=1, queue=1)
    running, release = threading.Event(), threading.Event()
    peak, active, lock = [0], [0], threading.Lock()

    def slow() -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        running.set()
        release.wait(5)
        with lock:
            active[0] -= 1
        return 1

    async def main() -> list[object]:
        first = asyncio.ensure_future(pool.run(slow))
        second = asyncio.ensure_future(pool.run(slow))  # queued
        await asyncio.sleep(0.05)
        with pytest.raises(LoginBusy):  # a third waiter is turned away at once
            await pool.run(slow)
        release.set()
        return list(await asyncio.gather(first, second))

    assert asyncio.run(main()) == [1, 1]
    assert peak[0] == 1  # never two hashes at once

"""Leadership: which replica runs a controller, so that each controller runs once in the cluster.

Every replica of the server can serve the API, but a controller (the task runner today; the
scheduler, HA monitor and rebalancer later) must run on exactly one of them. A ``Leadership`` says
whether this process leads for one controller name:

- ``SingleProcess`` (SQLite, the single-host default): one process owns the database file, so it
  always leads.
- ``PostgresAdvisoryLock`` (PostgreSQL): the leader is the process holding the session-level
  advisory lock ``pg_try_advisory_lock(key(name))`` on a dedicated connection outside the pool.
  PostgreSQL releases the lock the moment that session ends, so a killed leader frees it at once
  and another replica, polling every ``retry_s``, wins it. The leader checks every ``check_s`` that
  its session still holds the lock (a query with a timeout on that connection); any failure counts
  as lost leadership, reported at once so the controllers stop, and the process goes back to
  campaigning on a fresh connection.

An ex-leader whose session PostgreSQL dropped while the process lived may still be running for up
to ``loss_detection_s`` (one check interval plus the check timeout). ``exclusive_after`` tells a
new leader how long to wait before treating other processes' work as void.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a controller name (``novacron.tasks``, ...)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Leadership(abc.ABC):
    """Whether this process leads for one controller; ``run()`` keeps the answer current."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._leader = False
        self._since: float | None = None
        self._won = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost.set()
        self._listeners: list[Callable[[bool], None]] = []

    @property
    def is_leader(self) -> bool:
        return self._leader

    @property
    def leader_since(self) -> float | None:
        """``time.monotonic()`` when leadership was last won, None when not leading."""
        return self._since

    #: how long a process that lost leadership without dying may still run its controllers
    loss_detection_s: float = 0.0
    #: True when leading proves no other process runs the controller (then others' leases are void)
    exclusive: bool = False

    def on_change(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    def _set(self, leader: bool) -> None:
        if leader == self._leader:
            return
        self._leader = leader
        self._since = time.monotonic() if leader else None
        if leader:
            self._lost.clear()
            self._won.set()
            log.info("leading %s", self.name)
        else:
            self._won.clear()
            self._lost.set()
            log.warning("lost leadership of %s", self.name)
        for listener in self._listeners:
            try:
                listener(leader)
            except Exception:
                log.exception("leadership listener failed")

    async def wait_until_leader(self) -> None:
        await self._won.wait()

    async def wait_until_lost(self) -> None:
        await self._lost.wait()

    @abc.abstractmethod
    async def run(self) -> None:
        """Campaign and hold leadership until cancelled."""

    def close(self) -> None:
        """Give leadership up (no-op where there is nothing to release)."""
        self._set(False)


class SingleProcess(Leadership):
    """One process on one database (SQLite): trivially the leader."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._set(True)

    async def run(self) -> None:
        await asyncio.Event().wait()


class PostgresAdvisoryLock(Leadership):
    """Leads while a dedicated PostgreSQL session holds ``pg_try_advisory_lock(lock_key(name))``."""

    exclusive = True

    def __init__(
        self,
        name: str,
        url: str,
        *,
        retry_s: float = 1.0,
        check_s: float = 1.0,
        timeout_s: float = 2.0,
    ) -> None:
        super().__init__(name)
        self.url = url
        self.key = lock_key(name)
        self.retry_s = retry_s
        self.check_s = check_s
        self.timeout_s = timeout_s
        self.loss_detection_s = check_s + timeout_s
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        # a cancelled campaign leaves its worker thread running; this lock makes close() wait for
        # it, and ``_closed`` stops it opening a session (that would hold the lock) after close()
        self._io = threading.Lock()
        self._closed = False
        # its own thread, not the loop's shared pool: on a busy replica that pool's queue made the
        # check time out, and the leader gave up a lock it still held (bench/bench_scale.py)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"leader:{name}")

    # -- blocking calls, run in a worker thread -------------------------------------------------

    def _engine_for(self) -> Engine:
        if self._engine is None:
            connect_args: dict[str, object] = {"application_name": f"novacron-leader:{self.name}"}
            if self.url.startswith("postgresql+psycopg2") or self.url.startswith("postgresql:"):
                connect_args.update(
                    connect_timeout=max(1, int(self.timeout_s)),
                    keepalives=1,
                    keepalives_idle=5,
                    keepalives_interval=2,
                    keepalives_count=2,
                )
            # outside the application's pool: this session's life *is* the leadership
            self._engine = create_engine(self.url, poolclass=NullPool, connect_args=connect_args)
        return self._engine

    def _try_acquire(self) -> bool:
        with self._io:
            if self._closed:
                return False
            return self._try_acquire_locked()

    def _try_acquire_locked(self) -> bool:
        if self._conn is None:
            self._conn = self._engine_for().connect().execution_options(isolation_level="AUTOCOMMIT")
        got = self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
        return bool(got)

    def _still_held(self) -> bool:
        with self._io:
            return self._still_held_locked()

    def _still_held_locked(self) -> bool:
        if self._conn is None:
            return False
        # a bigint key shows in pg_locks as classid (high 32 bits) and objid (low 32 bits), objsubid 1
        held = self._conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND objsubid = 1"
                " AND classid::bigint = :hi AND objid::bigint = :lo"
            ),
            {"hi": (self.key >> 32) & 0xFFFFFFFF, "lo": self.key & 0xFFFFFFFF},
        ).scalar()
        return bool(held)

    def _drop_connection(self) -> None:
        with self._io:
            self._drop_connection_locked()

    def _drop_connection_locked(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()
            with contextlib.suppress(Exception):
                conn.close()

    def _release(self) -> None:
        # bounded: a worker stuck on an unreachable server must not stall shutdown; dropping the
        # connection afterwards ends the session, which releases the lock anyway
        locked = self._io.acquire(timeout=self.timeout_s + 1.0)
        try:
            self._closed = True
            conn = self._conn
            if conn is not None and self._leader:
                with contextlib.suppress(Exception):
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            self._drop_connection_locked()
        finally:
            if locked:
                self._io.release()

    # -- the campaign ---------------------------------------------------------------------------

    async def _blocking(self, fn: Callable[[], bool]) -> bool:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the result when a cancel
        # arrives as the thread finishes (gh-86296), and the campaign would never stop
        async with asyncio.timeout(self.timeout_s):
            return await asyncio.get_running_loop().run_in_executor(self._worker, fn)

    async def run(self) -> None:
        self._closed = False
        try:
            while True:
                if not self._leader:
                    try:
                        if await self._blocking(self._try_acquire):
                            self._set(True)
                            continue
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        log.warning("leadership of %s: cannot reach PostgreSQL (%s)", self.name, exc)
                        await asyncio.to_thread(self._drop_connection)
                    await asyncio.sleep(self.retry_s)
                else:
                    await asyncio.sleep(self.check_s)
                    try:
                        held = await self._blocking(self._still_held)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        log.warning("leadership of %s: check failed (%s)", self.name, exc)
                        held = False
                    if not held:
                        # stop the controllers first, then campaign again on a fresh session
                        self._set(False)
                        await asyncio.to_thread(self._drop_connection)
        finally:
            self.close()

    def close(self) -> None:
        self._release()
        super().close()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def leadership_for(database_url: str, name: str) -> Leadership:
    """PostgreSQL elects through an advisory lock; anything else is one process, always leading."""
    if database_url.startswith("postgresql"):
        return PostgresAdvisoryLock(name, database_url)
    return SingleProcess(name)

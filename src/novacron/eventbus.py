"""The event bus: followers of the event log are woken the moment an event commits, on this replica
and on every other, instead of each polling the table.

The log stays the ``events`` table, and a follower's cursor its sequence number, so delivery is at
least once and a client that reconnects (SSE ``Last-Event-ID``, WebSocket ``after``) resumes where it
left, across replica restarts. The bus only says "there may be more": ``events.publish`` arranges
for the transaction's commit to ``bump`` this process's bus, and on PostgreSQL also sends
``NOTIFY novacron_events`` (delivered at commit, dropped with a rollback); each replica runs one
``Listener`` thread holding ``LISTEN novacron_events`` on a connection of its own, which bumps its
bus. A follower still re-reads every ``FALLBACK_POLL_S`` (a notification lost while a listener
reconnects), and a listener that reconnects bumps once (what it may have missed).

With ``NOVACRON_EVENT_BUS=nats://...`` the replicas meet on NATS JetStream instead
(``eventbus_nats.py``, registered here as the ``publisher`` of committed events' sequence numbers):
no NOTIFY, no LISTEN. Whatever the mode, while the cross-replica link is down the bus is
``degraded`` and followers re-read every ``DEGRADED_POLL_S`` instead of ``FALLBACK_POLL_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

CHANNEL = "novacron_events"
#: how long a follower waits for a wake-up before it reads the log anyway
FALLBACK_POLL_S = float(os.environ.get("NOVACRON_EVENT_POLL_S", "5"))
#: how long it waits while the link between replicas is down (events of other replicas come by polling)
DEGRADED_POLL_S = float(os.environ.get("NOVACRON_EVENT_DEGRADED_POLL_S", "1"))
_ANNOUNCED = "novacron.eventbus.announced"
_PENDING = "novacron.eventbus.pending"

#: (event seq, tenant id) of a committed transaction's events, handed to the cross-replica publisher
Committed = list[tuple[int, str | None]]


class EventBus:
    """Wakes this process's asyncio waiters (on whatever loop they wait) when events commit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        #: how many times it was bumped (for tests and the benchmark)
        self.bumps = 0
        #: how replicas are linked: "local" (one process), "postgresql" (LISTEN/NOTIFY), "nats"
        self.mode = "local"
        #: the link between replicas is down: followers poll every DEGRADED_POLL_S meanwhile
        self.degraded = False
        #: how many times the link went down (the metric novacron_event_bus_fallbacks_total)
        self.fallbacks = 0
        #: who publishes committed events to the other replicas (None: NOTIFY on PostgreSQL, or none)
        self.publisher: Callable[[Committed], None] | None = None

    def link(self, up: bool) -> None:
        """The cross-replica link came up or went down: either way wake every follower (down: so
        that they wait the short fallback; up: for what was missed meanwhile)."""
        if not up and not self.degraded:
            self.fallbacks += 1
            log.warning(
                "event bus (%s): link to the other replicas lost; polling every %.1f s",
                self.mode,
                DEGRADED_POLL_S,
            )
        elif up and self.degraded:
            log.warning("event bus (%s): connected to the other replicas", self.mode)
        self.degraded = not up
        self.bump()

    def poll_interval(self) -> float:
        """How long a follower waits for a wake-up before it reads the log anyway."""
        return DEGRADED_POLL_S if self.degraded else FALLBACK_POLL_S

    def bump(self) -> None:
        """Wake every waiter (thread-safe: commits happen on worker threads)."""
        with self._lock:
            self.bumps += 1
            waiters = list(self._waiters)
        for loop, ev in waiters:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                loop.call_soon_threadsafe(ev.set)

    @contextlib.contextmanager
    def waiter(self) -> Any:
        """An ``asyncio.Event`` set at the next bump; register it before reading the log, so a
        commit between the read and the wait is not missed."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                self._waiters.discard(entry)


BUS = EventBus()


def announce(session: Session, row: Any = None) -> None:
    """Have the session's commit wake the followers, here and on every replica (once per
    transaction, however many events it writes). ``row``: the event (its seq and tenant go to a
    publisher, read once the flush has numbered it)."""
    publisher = BUS.publisher
    if publisher is not None and row is not None:
        session.info.setdefault(_PENDING, []).append(row)
    if session.info.get(_ANNOUNCED):
        return
    session.info[_ANNOUNCED] = True
    bind = session.get_bind()
    if publisher is None and bind.dialect.name == "postgresql":
        # no autoflush: the caller may still be filling in the rows it has added (the NOTIFY
        # depends on none of them and is sent at commit anyway)
        with session.no_autoflush:
            session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})

    numbered: Committed = []

    def flushed(s: Session, _context: Any) -> None:
        # numbered by the flush, not yet expired by the commit: read the rows' values now
        numbered.extend((r.seq, r.tenant_id) for r in s.info.pop(_PENDING, ()) if r.seq is not None)

    def forget(s: Session) -> None:
        s.info.pop(_ANNOUNCED, None)
        s.info.pop(_PENDING, None)
        if event.contains(s, "after_flush", flushed):
            event.remove(s, "after_flush", flushed)

    def committed(s: Session) -> None:
        forget(s)
        BUS.bump()
        if publisher is not None and numbered:
            publisher(numbered)

    if publisher is not None:
        event.listen(session, "after_flush", flushed)
    event.listen(session, "after_commit", committed, once=True)
    event.listen(session, "after_rollback", forget, once=True)


class Listener:
    """``LISTEN novacron_events`` on PostgreSQL, bumping ``BUS`` for each notification (a thread)."""

    def __init__(self, database_url: str, bus: EventBus = BUS) -> None:
        self.dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.bus = bus
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="novacron-eventbus", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._listen()
                delay = 0.5
            except Exception as exc:  # noqa: BLE001 - the database restarts; the bus must outlive it
                self.bus.link(False)
                log.warning("event bus: LISTEN connection lost (%s); again in %.1f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)

    def _listen(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self.dsn)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"LISTEN {CHANNEL}")
            self.bus.link(True)  # and a bump: what committed while no one listened
            while not self._stop.is_set():
                if select.select([conn], [], [], 1.0) == ([], [], []):
                    continue
                conn.poll()
                if conn.notifies:
                    conn.notifies.clear()
                    self.bus.bump()
        finally:
            conn.close()


def listener_for(database_url: str) -> Listener | None:
    """The replica's listener when the platform runs on PostgreSQL (None on SQLite: one process)."""
    if make_url(database_url).get_backend_name() != "postgresql":
        return None
    BUS.mode = "postgresql"
    return Listener(database_url)

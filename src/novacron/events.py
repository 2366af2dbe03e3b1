"""The event log: every state change is a row, followed by clients over SSE or WebSocket.

Events are written in the same transaction as the change they describe, so a
follower never sees an event for a change that rolled back. Followers read by
sequence number, which works the same with several API processes, and are woken
by the event bus (``eventbus.py``) when an event commits on any replica.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import re
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from novacron import eventbus
from novacron.db.models import Event
from novacron.identity.principal import Principal
from novacron.service import Service

if TYPE_CHECKING:
    from novacron.db.base import Database


def publish(
    session: Session,
    type_: str,
    resource_type: str,
    resource_id: str,
    *,
    tenant_id: str | None,
    project_id: str | None = None,
    **data: Any,
) -> Event:
    event = Event(
        type=type_,
        resource_type=resource_type,
        resource_id=resource_id,
        tenant_id=tenant_id,
        project_id=project_id,
        data=data,
    )
    session.add(event)
    eventbus.announce(session, event)
    return event


def _visible(principal: Principal, types: Sequence[str]) -> Select[Event]:
    stmt = select(Event)
    if not principal.is_global:
        # tenant-less events (hosts, platform) are shown to admins only
        stmt = stmt.where(Event.tenant_id == principal.tenant_id)
    if types:
        stmt = stmt.where(or_(*(Event.type.like(t.replace("*", "%")) for t in types)))
    return stmt


def visible_since(
    session: Session, principal: Principal, after_seq: int, limit: int = 200, types: Sequence[str] = ()
) -> list[Event]:
    stmt = _visible(principal, types).where(Event.seq > after_seq)
    return list(session.scalars(stmt.order_by(Event.seq).limit(limit)))


def visible_tail(
    session: Session, principal: Principal, limit: int, types: Sequence[str] = ()
) -> list[Event]:
    """The newest ``limit`` events the principal may see, oldest first (a dashboard's "recent")."""
    stmt = _visible(principal, types).order_by(Event.seq.desc()).limit(limit)
    return list(reversed(list(session.scalars(stmt))))


def latest_seq(session: Session) -> int:
    last = session.scalar(select(Event.seq).order_by(Event.seq.desc()).limit(1))
    return last or 0


def as_dict(event: Event) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "time": event.time.isoformat(),
        "type": event.type,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "tenant_id": event.tenant_id,
        "project_id": event.project_id,
        "data": event.data,
    }


class EventService(Service):
    """The event log as the caller may see it, one page at a time."""

    def page(self, after: int, limit: int, types: Sequence[str], *, tail: bool = False) -> list[Event]:
        """Up to ``limit`` events after ``after`` (``tail``: the newest ``limit``), oldest first."""
        if tail:
            return visible_tail(self.session, self.principal, limit, types)
        return visible_since(self.session, self.principal, after, limit, types)


async def start_seq(db: Database, after: int | None) -> int:
    """Where following starts: ``after``, or the newest event now."""
    if after is not None:
        return after

    def latest() -> int:
        with db.session() as s:
            return latest_seq(s)

    return await to_thread.run_sync(latest)


def _matcher(types: Sequence[str]) -> re.Pattern[str] | None:
    """The LIKE patterns of ``_visible`` (``*`` and ``_`` wildcards) as one regex; None: any type."""
    if not types:
        return None
    parts = ["".join(".*" if c == "*" else "." if c == "_" else re.escape(c) for c in t) for t in types]
    return re.compile("|".join(f"(?:{p})" for p in parts))


class Tail:
    """The newest events of the log, read once per bus wake-up for every follower of this process.

    Without it each follower ran its own query per wake-up (1,000 followers: 1,000 queries per event).
    It holds every event after ``floor``, in ``seq`` order; a follower whose cursor is behind
    ``floor`` (catching up from an old ``after``) reads the log itself until it has caught up.
    """

    SIZE = 2000

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._seqs: list[int] = []
        self._lock = threading.Lock()
        #: one reader of the log at a time (threads of several event loops may refresh)
        self._reading = threading.Lock()
        self._read_at = -1
        self._read_time = 0.0
        self.floor: int | None = None
        #: one refresh at a time per event loop (a refresh is a thread hop; every follower awaits it)
        self._refreshing: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    def fresh(self) -> bool:
        """Read since the last bump, and within the poll interval: a follower whose wait for a
        wake-up timed out (a link down, a wake-up lost) has the log read again."""
        bus = eventbus.BUS
        return self._read_at == bus.bumps and time.monotonic() - self._read_time < bus.poll_interval()

    def refresh(self, db: Database) -> None:
        """Read what committed since the last read, once per bump (blocking: call it in a thread).
        The query runs outside the data lock, so followers reading the tail never wait on it."""
        with self._reading:
            bumps = eventbus.BUS.bumps
            if self.fresh():
                return
            read_time = time.monotonic()
            with db.read_session() as s:
                floor = self.floor if self.floor is not None else latest_seq(s)
                last = self._seqs[-1] if self._seqs else floor
                stmt = select(Event).where(Event.seq > last).order_by(Event.seq).limit(self.SIZE)
                rows = [(e.seq, as_dict(e)) for e in s.scalars(stmt)]
            with self._lock:
                self.floor = floor
                for seq, e in rows:
                    self._seqs.append(seq)
                    self._events.append(e)
                if len(self._events) > 2 * self.SIZE:  # trimmed in steps: a slice, not a pop per event
                    self.floor = self._seqs[-self.SIZE - 1]
                    del self._events[: -self.SIZE], self._seqs[: -self.SIZE]
            self._read_at, self._read_time = bumps, read_time

    async def refreshed(self, db: Database) -> None:
        """Make the tail fresh, with one thread hop per wake-up however many followers await it."""
        if self.fresh():
            return
        lock = self._refreshing.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with lock:
            if not self.fresh():
                await to_thread.run_sync(self.refresh, db)

    def since(self, cursor: int, principal: Principal, types: Sequence[str]) -> list[dict[str, Any]] | None:
        """What ``principal`` may see after ``cursor`` (at most 500), or None if the tail does not
        reach back that far. Memory only: called on the event loop."""
        with self._lock:
            if self.floor is None or cursor < self.floor:
                return None
            wanted = _matcher(types)
            out = []
            for e in self._events[bisect.bisect_right(self._seqs, cursor) :]:
                if not (principal.is_global or e["tenant_id"] == principal.tenant_id):
                    continue
                if wanted is None or wanted.fullmatch(e["type"]):
                    out.append(e)
                    if len(out) == 500:
                        break
            return out


TAIL = Tail()


async def follow(
    db: Database, principal: Principal, after: int | None, types: Sequence[str]
) -> AsyncIterator[list[dict[str, Any]]]:
    """The events the principal may see from ``after`` on, in batches, for as long as it is followed.

    Reads go through the shared ``TAIL`` (one query per wake-up for all the followers of this
    process, then memory) or, for a follower behind it, the log itself in a worker thread (the
    event loop must not wait on the database).
    """

    def from_log(after_seq: int) -> list[dict[str, Any]]:
        with db.read_session() as s:
            return [as_dict(e) for e in visible_since(s, principal, after_seq, 500, types)]

    async def batch(after_seq: int) -> list[dict[str, Any]]:
        await TAIL.refreshed(db)
        shared = TAIL.since(after_seq, principal, types)
        return shared if shared is not None else await to_thread.run_sync(from_log, after_seq)

    cursor = await start_seq(db, after)
    while True:
        with eventbus.BUS.waiter() as woken:
            rows = await batch(cursor)
            if not rows:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(eventbus.BUS.poll_interval()):
                        await woken.wait()
                continue
        cursor = rows[-1]["seq"]
        yield rows

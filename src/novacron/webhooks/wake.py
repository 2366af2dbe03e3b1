"""The webhook dispatcher's wake-ups: a round the moment an event that may match a subscription
commits, on this replica or any other, instead of every tick.

The dispatcher's ``ControllerLoop`` holds one ``eventbus.BUS`` waiter for as long as it runs (the
bus is bumped at every commit of events here, and by LISTEN/NOTIFY or NATS for other replicas'
commits). A bump between rounds ends the pause if the events that committed (read from the shared
``events.TAIL``, one query per bump for every follower of the process) include one a subscription
may want; bumps during a round set the waiter once, so a burst costs one more round, not one per
event, and rounds are at least ``MIN_GAP_S`` apart. Without a wake-up a round still comes at the
earliest pending delivery's retry time, and at the latest after ``tick_s`` (the fallback:
``NOVACRON_WEBHOOK_TICK_S``), or the bus's degraded poll while the link between replicas is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from novacron import eventbus, events
from novacron.identity.principal import Principal
from novacron.tasks.controller import ControllerLoop, Job

if TYPE_CHECKING:
    from novacron.db.base import Database
    from novacron.db.models import WebhookSubscription

log = logging.getLogger(__name__)

#: rounds woken by the bus are at least this far apart (a burst of commits coalesces)
MIN_GAP_S = 0.05
#: reads the tail for every tenant (the filter only decides whether to run a round)
_EVERYONE = Principal("", "webhook-dispatcher", "system", None, frozenset({"global"}), kind="system")


@dataclass(frozen=True)
class Interest:
    """What one subscription wants, kept in memory to judge the events of a wake-up."""

    tenant_id: str | None
    event_types: tuple[str, ...]
    resource_types: tuple[str, ...]
    project_id: str | None

    @classmethod
    def of(cls, sub: WebhookSubscription) -> Interest:
        return cls(sub.tenant_id, tuple(sub.event_types), tuple(sub.resource_types or ()), sub.project_id)

    def wants(self, e: dict[str, Any]) -> bool:
        if self.tenant_id is not None and e["tenant_id"] != self.tenant_id:
            return False
        if not any(fnmatch.fnmatchcase(e["type"], p) for p in self.event_types):
            return False
        if self.resource_types and e["resource_type"] not in self.resource_types:
            return False
        return self.project_id is None or e["project_id"] == self.project_id


class BusWokenLoop(ControllerLoop):
    """A ``ControllerLoop`` whose pause ends early on a bus wake-up that matters, or at ``next_due``."""

    def __init__(
        self,
        name: str,
        jobs: list[Job],
        tick_s: float,
        db: Database,
        next_due: Callable[[], float | None],
    ) -> None:
        super().__init__(name, jobs, tick_s)
        self.db = db
        #: monotonic time of the earliest pending delivery's attempt (None: none pending)
        self.next_due = next_due
        #: the subscriptions' interests, as of the last fill (None: not read yet)
        self.interests: tuple[Interest, ...] | None = None
        #: the newest event judged
        self.seen: int | None = None
        #: rounds started by a wake-up (tests and the benchmark)
        self.woken_rounds = 0
        self._woken: asyncio.Event | None = None
        self._round_at = 0.0

    async def run_forever(self) -> None:
        with eventbus.BUS.waiter() as woken:
            self._woken = woken
            try:
                await super().run_forever()
            finally:
                self._woken = None

    async def stop(self) -> None:
        await super().stop()
        if self._woken is not None:
            self._woken.set()

    async def _pause(self) -> None:
        woken = self._woken
        assert woken is not None
        bus = eventbus.BUS
        while not self._stop.is_set():
            now = time.monotonic()
            until = now + (min(self.tick_s, bus.poll_interval()) if bus.degraded else self.tick_s)
            due = self.next_due()
            if due is not None:
                until = min(until, due)
            if until <= now:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(until - now):
                    await woken.wait()
            if not woken.is_set():
                break  # the timer: retries due, or the fallback
            woken.clear()
            if self._stop.is_set():
                return
            if await self._judged():
                self.woken_rounds += 1
                await asyncio.sleep(max(0.0, self._round_at + MIN_GAP_S - time.monotonic()))
                break
        self._round_at = time.monotonic()

    async def _judged(self) -> bool:
        """``_matters``, a failure of which (the database restarting) runs the round anyway: the
        controller's loop must outlive it, and the round's own failure is logged by the loop."""
        try:
            return await self._matters()
        except Exception:  # noqa: BLE001 - judged "maybe": the round decides
            log.warning("webhook dispatcher: reading the events of a wake-up failed", exc_info=True)
            return True

    async def _matters(self) -> bool:
        """Whether what committed since the last look may go to a subscription (when unsure: yes).
        A bump without new events is a delivery queued by hand (``test``, ``retry``) or the link
        between replicas changing; a change of a subscription refreshes ``interests``."""
        tail = events.TAIL
        await tail.refreshed(self.db)
        floor, seen, interests = tail.floor, self.seen, self.interests
        rows = tail.since(seen, _EVERYONE, ()) if seen is not None else None
        if rows is None:  # the first look, or fallen behind the tail
            self.seen = floor
            return True
        if not rows or interests is None or len(rows) >= 500:
            self.seen = rows[-1]["seq"] if rows else seen
            return True
        self.seen = rows[-1]["seq"]
        return any(e["resource_type"] == "webhook" or any(i.wants(e) for i in interests) for e in rows)

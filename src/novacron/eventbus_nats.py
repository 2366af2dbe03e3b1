"""The event bus on NATS JetStream (``NOVACRON_EVENT_BUS=nats://host:port``), for installations
past what one PostgreSQL ``LISTEN`` connection per replica suits.

Each replica runs one :class:`NatsRelay`: a thread with an asyncio loop of its own holding one NATS
connection. Once a transaction that wrote events has committed, ``eventbus.announce`` hands the
events' (seq, tenant) to the relay, which publishes each to the JetStream stream ``NOVACRON_EVENTS``
on the subject ``novacron.events.<tenant id>`` (``platform`` for tenant-less events) with the seq as
payload and message id (JetStream drops a duplicate) and the replica's origin id as a header. Every
replica follows the stream with an ordered push consumer from the newest message and bumps its bus
for each message of another replica. The ``events`` table stays the source of truth and a
follower's cursor its seq: the stream only says "there may be more", so it keeps an hour of them.

When NATS is unreachable (not started, killed, a network cut) the relay marks the bus degraded
(followers read the log every ``DEGRADED_POLL_S`` meanwhile; a warning in the log and
``novacron_event_bus_fallbacks_total``), retries with backoff up to 5 s, and on reconnecting marks it
up and bumps once for what it may have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from typing import Any

from novacron.eventbus import BUS, Committed, EventBus

log = logging.getLogger(__name__)

STREAM = "NOVACRON_EVENTS"
SUBJECT_PREFIX = "novacron.events"
#: the stream carries wake-ups, not the log: an hour of them is plenty for anyone replaying
MAX_AGE_S = 3600.0
ORIGIN_HEADER = "Novacron-Origin"
_FIRST_DELAY_S = 0.25
_MAX_BACKOFF_S = 5.0
_CONNECT_TIMEOUT_S = 2.0


def subject(tenant_id: str | None) -> str:
    return f"{SUBJECT_PREFIX}.{tenant_id or 'platform'}"


def is_nats_url(url: str) -> bool:
    return url.startswith(("nats://", "tls://"))


class NatsRelay:
    """Publishes this replica's committed events to JetStream and wakes its followers on others'."""

    def __init__(self, url: str, bus: EventBus = BUS) -> None:
        self.url = url
        self.bus = bus
        self.origin = uuid.uuid4().hex
        #: messages published and publications that failed (NATS down): for tests and the benchmark
        self.published = 0
        self.failed = 0
        #: the newest event not published while NATS was down: published once the link is back
        self._missed: tuple[tuple[int, str | None], ...] = ()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Committed] | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="novacron-eventbus-nats", daemon=True)

    def start(self) -> None:
        self.bus.mode = "nats"
        self.bus.degraded = True  # until the first connection: followers poll meanwhile
        self._thread.start()
        self._ready.wait(5)
        self.bus.publisher = self.publish

    def stop(self) -> None:
        if self.bus.publisher == self.publish:
            self.bus.publisher = None
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                loop.call_soon_threadsafe(stopping.set)
        self._thread.join(timeout=5)

    def publish(self, committed: Committed) -> None:
        """Queue a committed transaction's events for publication (any thread; never blocks)."""
        loop, queue = self._loop, self._queue
        if loop is None or queue is None or self.bus.degraded:
            # the others read them at their next poll, or at the wake-up this sends on reconnecting
            self.failed += len(committed)
            self._missed = (max([*committed, *self._missed]),)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, committed)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._ready.set()
        delay = _FIRST_DELAY_S
        while not self._stopping.is_set():
            try:
                await self._session()
            except Exception as exc:  # noqa: BLE001 - NATS restarts; the bus must outlive it
                if not self.bus.degraded:  # it was up: a new outage, retried quickly at first
                    delay = _FIRST_DELAY_S
                self.bus.link(False)
                # once per outage at warning level (then every retry at debug: up to one per 5 s)
                say = log.warning if delay == _FIRST_DELAY_S else log.debug
                say("event bus: NATS %s unreachable (%s); again in %.2f s", self.url, exc, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            delay = min(delay * 2, _MAX_BACKOFF_S)

    async def _session(self) -> None:
        """One connection: subscribe, mark the link up, publish until it is lost or stopped."""
        import nats
        from nats.js.api import DeliverPolicy, StorageType
        from nats.js.errors import NotFoundError

        assert self._queue is not None and self._stopping is not None
        lost = asyncio.Event()

        async def closed() -> None:
            lost.set()

        nc = await nats.connect(
            self.url,
            allow_reconnect=False,
            connect_timeout=_CONNECT_TIMEOUT_S,
            max_reconnect_attempts=0,
            disconnected_cb=closed,
            closed_cb=closed,
            error_cb=_quiet,
            name=f"novacron-{self.origin[:8]}",
        )
        try:
            js = nc.jetstream(timeout=_CONNECT_TIMEOUT_S)
            try:
                await js.stream_info(STREAM)
            except NotFoundError:
                await js.add_stream(
                    name=STREAM, subjects=[f"{SUBJECT_PREFIX}.>"], max_age=MAX_AGE_S, storage=StorageType.FILE
                )
            everything = f"{SUBJECT_PREFIX}.>"
            await js.subscribe(
                everything, cb=self._delivered, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
            )
            self.bus.link(True)
            missed, self._missed = self._missed, ()
            await asyncio.gather(*(self._send(js, seq, tenant) for seq, tenant in missed))
            await self._pump(js, lost)
            if not self._stopping.is_set():
                raise ConnectionError("connection lost")
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _pump(self, js: Any, lost: asyncio.Event) -> None:
        """Publish queued events until the connection is lost or the relay stops."""
        assert self._queue is not None and self._stopping is not None
        stop = asyncio.ensure_future(self._stopping.wait())
        gone = asyncio.ensure_future(lost.wait())
        try:
            while True:
                item = asyncio.ensure_future(self._queue.get())
                await asyncio.wait({item, stop, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not item.done():
                    item.cancel()
                    return
                batch = item.result()
                while not self._queue.empty():  # a burst: publish it concurrently
                    batch = batch + self._queue.get_nowait()
                await asyncio.gather(*(self._send(js, seq, tenant) for seq, tenant in batch))
        finally:
            stop.cancel()
            gone.cancel()

    async def _send(self, js: Any, seq: int, tenant_id: str | None) -> None:
        headers = {"Nats-Msg-Id": str(seq), ORIGIN_HEADER: self.origin}
        try:
            await js.publish(subject(tenant_id), str(seq).encode(), headers=headers)
            self.published += 1
        except Exception as exc:  # noqa: BLE001 - the others fall back to polling; the log is the truth
            self.failed += 1
            log.warning("event bus: publishing event %s to NATS failed (%s)", seq, exc)

    async def _delivered(self, msg: Any) -> None:
        if (msg.headers or {}).get(ORIGIN_HEADER) != self.origin:  # our own: bumped at commit
            self.bus.bump()


async def _quiet(exc: Exception) -> None:
    """nats-py's error callback: the relay logs the loss itself (once, with its retry delay)."""
    log.debug("event bus: NATS client error: %s", exc)


def relay_for(url: str) -> NatsRelay | None:
    """The replica's relay when ``NOVACRON_EVENT_BUS`` names a NATS server (None otherwise)."""
    return NatsRelay(url) if is_nats_url(url) else None

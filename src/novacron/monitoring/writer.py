"""The batching background writer between the report path and the metrics store.

Agents report every second and their reports must never wait on the store: ``submit`` only appends
to a bounded queue. One thread takes what has queued up since its last take as one remote-write
request (so batches grow with the load and a sample waits about one round trip) and encodes it
while the request before it is in flight. When the store is down the request is kept and sent
again with backoff; meanwhile the queue fills, and past ``max_pending`` samples the oldest are
dropped and counted in ``dropped``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from novacron.monitoring.blocks import Chunk
from novacron.monitoring.queued import QueueWorker
from novacron.monitoring.remote_write import RemoteWriteRejected
from novacron.monitoring.store import MetricsStore, StoreUnavailable

log = logging.getLogger(__name__)

_FIRST_BACKOFF_S = 0.25
_MAX_BACKOFF_S = 5.0
#: a failing store is logged at most this often
_LOG_EVERY_S = 30.0


class SeriesWriter(QueueWorker):
    """Sends submitted samples to ``store`` from its own thread, in batches of up to ``max_batch``.

    Counters (read by the platform's own metrics): ``written``, ``dropped`` (queue overflow while
    the store was slow or down), ``rejected`` (refused by the store for good: out-of-order or too
    old for Prometheus), ``failures`` (send attempts that found the store down).
    """

    thread_name = "metrics-writer"

    def __init__(self, store: MetricsStore, max_pending: int = 1_000_000, max_batch: int = 200_000) -> None:
        super().__init__()
        self.store = store
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.written = 0
        self.dropped = 0
        self.rejected = 0
        self.failures = 0
        self._queue: deque[Chunk] = deque()
        self._pending = 0
        self._sending = 0
        self._last_log = 0.0

    @property
    def pending(self) -> int:
        """Samples queued or being sent."""
        return self._pending + self._sending

    def submit(self, chunk: Chunk) -> None:
        """Queue ``chunk``: samples (oldest first) or a report's block; never blocks on the store."""
        if not len(chunk):
            return
        with self._cond:
            self._queue.append(chunk)
            self._pending += len(chunk)
            self._drop_overflow()
            self._cond.notify()

    def _busy(self) -> bool:
        return bool(self._pending or self._sending)

    def stop(self, flush_s: float = 2.0, join_s: float | None = None) -> None:
        """Send what is queued (for up to ``flush_s``), then stop the thread (a send in hand may
        take the store's timeout)."""
        super().stop(flush_s, flush_s + self.store.timeout_s if join_s is None else join_s)

    def _drop_overflow(self) -> None:
        while self._pending + self._sending > self.max_pending and self._queue:
            oldest = self._queue.popleft()
            self._pending -= len(oldest)
            self.dropped += len(oldest)

    def _take(self, wait: bool) -> tuple[list[Chunk], int]:
        """The oldest chunks, up to ``max_batch`` samples (at least one chunk when there is one),
        and their size; waits for one when ``wait``."""
        with self._cond:
            while wait and not self._queue and not self._stopping:
                self._cond.wait()
            chunks: list[Chunk] = []
            size = 0
            while self._queue and (not chunks or size + len(self._queue[0]) <= self.max_batch):
                chunk = self._queue.popleft()
                chunks.append(chunk)
                size += len(chunk)
            self._pending -= size
            self._sending += size
            return chunks, size

    def _run(self) -> None:
        # One request is in flight (in the pool's thread) while the next batch is taken and
        # encoded here, so the store's ingestion and the encoding overlap; requests still go one
        # at a time, in order, as engines want a series' samples.
        with ThreadPoolExecutor(1, thread_name_prefix="metrics-post") as pool:
            in_flight: tuple[Future[None], bytes, int] | None = None
            while True:
                chunks, size = self._take(wait=in_flight is None)
                body = self._prepare(chunks, size) if chunks else None
                if in_flight is not None:
                    self._finish(pool, *in_flight)
                    in_flight = None
                if body is not None:
                    in_flight = (pool.submit(self.store.send, body), body, size)
                elif not chunks and self._stopping:
                    with self._cond:
                        if not self._queue:
                            return

    def _prepare(self, chunks: list[Chunk], size: int) -> bytes | None:
        """The request of ``chunks``; None (and counted rejected) when they cannot be encoded."""
        try:
            return self.store.prepare(chunks)
        except Exception:  # a batch that cannot be encoded must not end the thread (and all writes)
            log.exception("metrics writer dropped %d samples it could not encode", size)
            self._done(size, rejected=True)
            return None

    def _finish(self, pool: ThreadPoolExecutor, sent: Future[None], body: bytes, size: int) -> None:
        """Wait for a request; while the store is down, send it again with backoff (newer samples
        queue meanwhile, the oldest of them dropped past ``max_pending``) until it is taken,
        refused, or the writer stops."""
        backoff = _FIRST_BACKOFF_S
        while True:
            try:
                sent.result()
            except StoreUnavailable as exc:
                self.failures += 1
                self._log(
                    f"metrics store unavailable; {self.pending} samples wait, {self.dropped} dropped: {exc}"
                )
                if self._stop_event.wait(backoff):
                    self._done(size, rejected=False, lost=True)
                    return
                backoff = min(_MAX_BACKOFF_S, backoff * 2)
                sent = pool.submit(self.store.send, body)
                continue
            except RemoteWriteRejected as exc:
                self._log(f"metrics store refused {size} samples: {exc}")
                self._done(size, rejected=True)
            else:
                self._done(size, rejected=False)
            return

    def _done(self, size: int, rejected: bool, lost: bool = False) -> None:
        with self._cond:
            self._sending -= size
            if rejected:
                self.rejected += size
            elif lost:
                self.dropped += size
            else:
                self.written += size
            self._cond.notify_all()

    def _log(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            log.warning("%s", message)

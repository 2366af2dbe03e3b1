"""The batching background writer between the report path and the metrics store.

Agents report every second and their reports must never wait on the store: ``submit`` only appends
to a bounded queue. One thread sends what has queued up since its last send as one remote-write
request (so batches grow with the load and a sample waits one round trip at most). When the store
is down the batch is kept and sent again with backoff; meanwhile the queue fills, and past
``max_pending`` samples the oldest are dropped and counted in ``dropped``.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from novacron.monitoring.queued import QueueWorker
from novacron.monitoring.remote_write import RemoteWriteRejected, Sample
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
        self._queue: deque[list[Sample]] = deque()
        self._pending = 0
        self._sending = 0
        self._last_log = 0.0

    @property
    def pending(self) -> int:
        """Samples queued or being sent."""
        return self._pending + self._sending

    def submit(self, samples: list[Sample]) -> None:
        """Queue ``samples`` (oldest first); never blocks on the store."""
        if not samples:
            return
        with self._cond:
            self._queue.append(samples)
            self._pending += len(samples)
            self._drop_overflow()
            self._cond.notify()

    def _busy(self) -> bool:
        return bool(self._pending or self._sending)

    def stop(self, flush_s: float = 2.0, join_s: float | None = None) -> None:
        """Send what is queued (for up to ``flush_s``), then stop the thread (a send in hand may
        take the store's timeout)."""
        super().stop(flush_s, flush_s + self.store.timeout_s if join_s is None else join_s)

    def _drop_overflow(self) -> None:
        while self._pending > self.max_pending and self._queue:
            oldest = self._queue.popleft()
            self._pending -= len(oldest)
            self.dropped += len(oldest)

    def _take(self) -> list[list[Sample]]:
        """The oldest chunks, up to ``max_batch`` samples (at least one chunk); waits for one."""
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            chunks: list[list[Sample]] = []
            size = 0
            while self._queue and (not chunks or size + len(self._queue[0]) <= self.max_batch):
                chunk = self._queue.popleft()
                chunks.append(chunk)
                size += len(chunk)
            self._pending -= size
            self._sending = size
            return chunks

    def _give_back(self, chunks: list[list[Sample]]) -> None:
        """A batch the store did not take goes back in front, to be sent first (samples of a series
        must arrive in order), unless newer ones have pushed it out meanwhile."""
        with self._cond:
            self._queue.extendleft(reversed(chunks))
            self._pending += self._sending
            self._sending = 0
            self._drop_overflow()

    def _run(self) -> None:
        backoff = _FIRST_BACKOFF_S
        while True:
            chunks = self._take()
            if not chunks:
                return  # stopping, and nothing is left
            try:
                self.store.write(sample for chunk in chunks for sample in chunk)
            except StoreUnavailable as exc:
                self.failures += 1
                self._give_back(chunks)
                self._log(
                    f"metrics store unavailable; {self._pending} samples wait, {self.dropped} dropped: {exc}"
                )
                if self._stop_event.wait(backoff):
                    return
                backoff = min(_MAX_BACKOFF_S, backoff * 2)
                continue
            except RemoteWriteRejected as exc:
                self.rejected += self._sending
                self._log(f"metrics store refused {self._sending} samples: {exc}")
            except Exception:  # a batch that cannot be encoded must not end the thread (and all writes)
                self.rejected += self._sending
                log.exception("metrics writer dropped %d samples it could not send", self._sending)
            else:
                self.written += self._sending
            backoff = _FIRST_BACKOFF_S
            with self._cond:
                self._sending = 0
                self._cond.notify_all()

    def _log(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            log.warning("%s", message)

"""A daemon thread working off a queue, as the metrics writer and the anomaly feed do.

The report path only appends under ``_cond`` and never waits on the work; ``flush`` waits until the
queue is worked off (shutdown, tests), and ``stop`` flushes briefly, then ends the thread.
"""

from __future__ import annotations

import abc
import threading
import time


class QueueWorker(abc.ABC):
    """Start, flush and stop of a thread that works off a queue guarded by ``_cond``.

    A subclass says when it has work queued or in hand (``_busy``, read under ``_cond``), works in
    ``_run`` until ``_stopping`` with nothing left, and notifies ``_cond`` when an item is done.
    """

    #: the thread's name (in logs and dumps)
    thread_name = "queue-worker"

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._stopping = False
        #: set on stop: ends a wait between retries at once (new items do not)
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    @abc.abstractmethod
    def _busy(self) -> bool:
        """Whether work is queued or in hand (called under ``_cond``)."""

    @abc.abstractmethod
    def _run(self) -> None:
        """Work off the queue until stopped with nothing left."""

    def start(self) -> None:
        """Start the thread."""
        self._stopping = False
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued so far is worked off; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._busy():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
        return True

    def stop(self, flush_s: float = 2.0, join_s: float | None = None) -> None:
        """Work off what is queued (for up to ``flush_s``), then end the thread (waiting ``join_s``,
        by default ``flush_s``, for an item in hand)."""
        self.flush(flush_s)
        with self._cond:
            self._stopping = True
            self._stop_event.set()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(flush_s if join_s is None else join_s)
            self._thread = None

"""Live charts pushed to their viewers: one drawing loop per subject, however many viewers.

A viewer of a VM's or a host's live chart (the 5-minute range) subscribes once (``ChartService``
checks its right to the subject then) and is sent server-sent events: first ``event: chart``, the
whole chart in the chart API's JSON; then, each step of the chart, ``event: points``, the chart's new
start and end and only the points that are new (or whose value changed since the last draw, as a
late sample can change the newest point), so that a client merges them by time and trims what is
older than ``start``.

Whatever the number of viewers, a subject (store, tenant scope, subject) has one drawing loop in
this process: each step it draws once (``charts.draw``, in a worker thread), compares the chart with
the one before, serializes the frame once and hands the same bytes to every subscriber's queue.
A queue holds at most ``QUEUE_FRAMES`` frames: a subscriber that falls further behind (a slow
client) loses its backlog and is sent the current whole chart instead, so no viewer holds memory
without bound. The loop stops when its last subscriber leaves. A stream ends after
``MAX_FOLLOW_S`` so that the viewer's right is checked again when it reconnects.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import math
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from novacron.errors import DomainError

if TYPE_CHECKING:
    from novacron.monitoring.charts import Chart

log = logging.getLogger(__name__)

#: the range a live chart shows
LIVE_RANGE = "5m"
#: frames a subscriber may fall behind before it is sent the whole chart again instead
QUEUE_FRAMES = 32
#: a comment is sent when no frame went out for this long, so that proxies keep the stream open
KEEPALIVE_S = 15.0
#: a stream ends after this long; the client reconnects and its right is checked again
MAX_FOLLOW_S = 600.0
#: how long after a step's end the step is drawn: its last samples must have reached the store
DRAW_LAG_S = 0.3
#: after a failed draw the loop tries again this much later
RETRY_S = 2.0
#: how many of a line's newest points are compared with the last draw's for a changed value
RECHECKED_POINTS = 10

KEEPALIVE_FRAME = b": keep-alive\n\n"
OPENING_FRAME = b": live chart\n\n"


class _Signal(enum.Enum):
    #: the subscriber lost frames: send it the whole chart
    RESYNC = "resync"
    #: the drawing loop ended on an error: end the stream (the client reconnects)
    END = "end"


Item = bytes | _Signal


@dataclass(frozen=True)
class LiveSubject:
    """What one drawing loop draws: ``key`` (store, tenant scope, kind, subject id) is shared by
    every viewer of the same chart; ``draw`` draws its 5-minute chart ending now."""

    key: tuple[str, str | None, str, str]
    draw: Callable[[], Chart]


@dataclass(frozen=True)
class LiveStats:
    """The hub's counters: drawing loops ever started, draws made, loops and subscribers now."""

    loops_started: int
    draws: int
    loops: int
    subscribers: int


def _number(v: float) -> float | None:
    # NaN and infinities are null, as in the chart API's JSON
    return v if math.isfinite(v) else None


def chart_json(chart: Chart) -> dict[str, Any]:
    """The chart as the chart API answers it (``ChartOut``)."""
    return {
        "id": chart.subject_id,
        "range": chart.range,
        "start": chart.start,
        "end": chart.end,
        "step_s": chart.step_s,
        "series": [
            {
                "name": s.name,
                "title": s.title,
                "unit": s.unit,
                "points": [(t, _number(v)) for t, v in s.points],
            }
            for s in chart.series
        ],
    }


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _same_lines(a: Chart, b: Chart) -> bool:
    return a.step_s == b.step_s and [s.name for s in a.series] == [s.name for s in b.series]


def _changed(before: float | None, now: float) -> bool:
    return before is not None and before != now and not (math.isnan(before) and math.isnan(now))


def points_since(before: Chart, now: Chart) -> dict[str, Any] | None:
    """The ``points`` frame from ``before`` to ``now`` (charts of the same lines): each line's points
    newer than its last in ``before``, and those of its last few whose value changed. None when
    ``now`` ends no later than ``before`` (nothing to send)."""
    if now.end <= before.end:
        return None
    lines = []
    for old, new in zip(before.series, now.series, strict=True):
        last = old.points[-1][0] if old.points else -math.inf
        recent = dict(old.points[-RECHECKED_POINTS:])
        points = [(t, _number(v)) for t, v in new.points if t > last or _changed(recent.get(t), v)]
        if points:
            lines.append({"name": new.name, "points": points})
    return {"id": now.subject_id, "range": now.range, "start": now.start, "end": now.end, "series": lines}


def next_frame(before: Chart | None, now: Chart) -> tuple[bytes | None, bool]:
    """The frame that takes a viewer from ``before`` to ``now`` and whether it is a whole chart:
    a whole chart when there is none before or the lines changed, else the new points (None:
    nothing new)."""
    if before is None or not _same_lines(before, now):
        return sse("chart", chart_json(now)), True
    delta = points_since(before, now)
    return (sse("points", delta) if delta is not None else None), False


class _Feed:
    """One subject's drawing loop and its subscribers' queues."""

    def __init__(self, subject: LiveSubject, queue_frames: int) -> None:
        self.subject = subject
        self.queue_frames = queue_frames
        self.queues: set[asyncio.Queue[Item]] = set()
        self.chart: Chart | None = None
        self.task: asyncio.Task[None] | None = None
        self.last_sent = time.monotonic()
        self._chart_frame: bytes | None = None

    def join(self) -> asyncio.Queue[Item]:
        queue: asyncio.Queue[Item] = asyncio.Queue(self.queue_frames)
        if self.chart is not None:
            queue.put_nowait(self.chart_frame())
        self.queues.add(queue)
        return queue

    def chart_frame(self) -> bytes:
        """The current chart as a whole-chart frame, serialized once for all who need it (a
        keep-alive before the first chart: the store has not answered yet)."""
        if self.chart is None:
            return KEEPALIVE_FRAME
        if self._chart_frame is None:
            self._chart_frame = sse("chart", chart_json(self.chart))
        return self._chart_frame

    def publish(self, item: Item) -> None:
        """Hand ``item`` to every subscriber; one whose queue is full gets the whole chart instead."""
        self.last_sent = time.monotonic()
        for queue in self.queues:
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(item if item is _Signal.END else _Signal.RESYNC)

    def drawn(self, chart: Chart, frame: bytes | None, whole: bool) -> None:
        self.chart = chart
        self._chart_frame = frame if whole else None
        if frame is not None:
            self.publish(frame)


class LiveCharts:
    """The process's live charts: a drawing loop per subject followed by at least one viewer;
    ``queue_frames`` frames at most wait for each viewer."""

    def __init__(self, queue_frames: int = QUEUE_FRAMES) -> None:
        self.queue_frames = queue_frames
        self._feeds: dict[tuple[str, str | None, str, str], _Feed] = {}
        self._loops_started = 0
        self._draws = 0

    def stats(self) -> LiveStats:
        """The hub's counters, for tests and the benchmark."""
        subscribers = sum(len(feed.queues) for feed in self._feeds.values())
        return LiveStats(self._loops_started, self._draws, len(self._feeds), subscribers)

    async def follow(self, subject: LiveSubject, max_s: float = MAX_FOLLOW_S) -> AsyncGenerator[bytes, None]:
        """The subject's live chart as server-sent events, for ``max_s`` seconds at most. The
        caller's right to the subject was checked before (``ChartService``)."""
        feed = self._feeds.get(subject.key) or self._start(subject)
        queue = feed.join()
        until = time.monotonic() + max_s
        try:
            yield OPENING_FRAME
            while time.monotonic() < until:
                item = await queue.get()
                if item is _Signal.END:
                    return
                yield feed.chart_frame() if item is _Signal.RESYNC else item
        finally:
            self._leave(feed, queue)

    def _start(self, subject: LiveSubject) -> _Feed:
        feed = _Feed(subject, self.queue_frames)
        self._feeds[subject.key] = feed
        self._loops_started += 1
        feed.task = asyncio.get_running_loop().create_task(self._run(feed), name=f"live-chart {subject.key}")
        feed.task.add_done_callback(lambda task: self._ended(feed, task))
        return feed

    def _leave(self, feed: _Feed, queue: asyncio.Queue[Item]) -> None:
        feed.queues.discard(queue)
        if not feed.queues and self._feeds.get(feed.subject.key) is feed:
            del self._feeds[feed.subject.key]
            if feed.task is not None:
                feed.task.cancel()

    def _ended(self, feed: _Feed, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        # the loop failed on what it does not expect: its viewers reconnect and start a new one
        log.error("live chart %s stopped", feed.subject.key, exc_info=task.exception())
        if self._feeds.get(feed.subject.key) is feed:
            del self._feeds[feed.subject.key]
        feed.publish(_Signal.END)

    async def _run(self, feed: _Feed) -> None:
        """Draw the subject each step, shortly after the step's end, until cancelled."""
        while True:
            try:
                chart, frame, whole = await asyncio.to_thread(self._draw, feed)
            except DomainError as exc:
                log.warning("live chart %s: %s", feed.subject.key, exc)
                await self._sleep(feed, RETRY_S)
                continue
            self._draws += 1
            feed.drawn(chart, frame, whole)
            next_draw = chart.end + chart.step_s + DRAW_LAG_S
            await self._sleep(feed, next_draw - time.time())

    def _draw(self, feed: _Feed) -> tuple[Chart, bytes | None, bool]:
        # in a worker thread: the store's answer is read and the frame serialized off the event loop
        chart = feed.subject.draw()
        frame, whole = next_frame(feed.chart, chart)
        return chart, frame, whole

    async def _sleep(self, feed: _Feed, seconds: float) -> None:
        """Wait ``seconds``, sending keep-alive comments meanwhile when no frame goes out."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            await asyncio.sleep(min(left, KEEPALIVE_S))
            if time.monotonic() - feed.last_sent >= KEEPALIVE_S:
                feed.publish(KEEPALIVE_FRAME)

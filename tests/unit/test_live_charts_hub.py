"""The live chart hub: a viewer gets the whole chart then only what is new; a slow viewer's backlog
is replaced by the whole chart; the drawing loop stops with its last viewer."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator

from novacron.monitoring.charts import Chart, ChartSeries
from novacron.monitoring.livecharts import LiveCharts, LiveSubject, next_frame

STEP_S = 0.05


def _chart(end: float, step_s: float = 1.0, names: tuple[str, ...] = ("cpu", "rss")) -> Chart:
    """A 5-minute chart ending at ``end``: one point a step, the value being the point's time."""
    times = [end - step_s * i for i in range(10, -1, -1)]
    lines = [ChartSeries(n, n.upper(), "cores", [(t, t) for t in times]) for n in names]
    return Chart("vm-1", "5m", end - 300, end, step_s, lines)


def _parse(frame: bytes) -> tuple[str, dict[str, object]]:
    event, data = frame.decode().rstrip("\n").split("\n")
    return event.removeprefix("event: "), json.loads(data.removeprefix("data: "))


def test_the_next_frame_carries_only_new_or_changed_points() -> None:
    before = _chart(1000.0)
    frame, whole = next_frame(None, before)
    event, data = _parse(frame or b"")
    assert (event, whole, data["end"], len(data["series"])) == ("chart", True, 1000.0, 2)  # type: ignore[arg-type]
    # two steps later; the newest point of cpu's last draw was revised by a late sample
    revised = _chart(1002.0)
    revised.series[0].points[-3] = (1000.0, 7.0)
    frame, whole = next_frame(before, revised)
    event, data = _parse(frame or b"")
    assert event == "points" and not whole
    assert data == {
        "id": "vm-1",
        "range": "5m",
        "start": 702.0,
        "end": 1002.0,
        "series": [
            {"name": "cpu", "points": [[1000.0, 7.0], [1001.0, 1001.0], [1002.0, 1002.0]]},
            {"name": "rss", "points": [[1001.0, 1001.0], [1002.0, 1002.0]]},
        ],
    }
    assert next_frame(revised, revised) == (None, False)  # the same step again: nothing to send
    # a line that appears (a new CPU mode) makes the whole chart the next frame
    frame, whole = next_frame(revised, _chart(1003.0, names=("cpu", "rss", "disk")))
    assert whole and _parse(frame or b"")[0] == "chart"
    # NaN is null in the frame, as in the chart API's JSON
    nan = _chart(1004.0)
    nan.series[1].points[-1] = (1004.0, math.nan)
    frame, _whole = next_frame(_chart(1003.0), nan)
    assert _parse(frame or b"")[1]["series"] == [
        {"name": "cpu", "points": [[1004.0, 1004.0]]},
        {"name": "rss", "points": [[1004.0, None]]},
    ]


def _subject() -> LiveSubject:
    """A subject drawn from a clock: a chart ending at the last ``STEP_S`` boundary."""
    return LiveSubject(
        ("http://store", "t-1", "vm", "vm-1"),
        lambda: _chart(math.floor(time.time() / STEP_S) * STEP_S, STEP_S),
    )


async def _next(frames: AsyncIterator[bytes]) -> tuple[str, dict[str, object]]:
    frame = await asyncio.wait_for(anext(frames), 10)
    return _parse(frame)


async def _wait(check: object, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def _slow_viewer() -> None:
    hub = LiveCharts(queue_frames=2)
    fast, slow = hub.follow(_subject()), hub.follow(_subject())
    assert await anext(fast) == await anext(slow) == b": live chart\n\n"
    event, first = await _next(fast)
    assert event == "chart"
    assert await _next(slow) == (event, first)  # joined before the first draw: the same frame
    # the slow viewer reads nothing for 4 steps: its queue of 2 overflows
    drawn = hub.stats().draws
    for _ in range(4):
        event, _data = await _next(fast)
        assert event == "points"
    await _wait(lambda: hub.stats().draws >= drawn + 4)
    event, caught_up = await _next(slow)
    assert event == "chart" and caught_up["end"] > first["end"]  # type: ignore[operator]
    assert hub.stats().loops_started == 1 and hub.stats().subscribers == 2
    await fast.aclose()
    assert hub.stats().loops == 1  # the slow viewer still follows
    await slow.aclose()
    assert hub.stats() == hub.stats().__class__(1, hub.stats().draws, 0, 0)


def test_a_slow_viewer_gets_the_whole_chart_instead_of_its_backlog() -> None:
    asyncio.run(_slow_viewer())


async def _stream_ends() -> None:
    hub = LiveCharts()
    frames = hub.follow(_subject(), max_s=0.3)
    got = [frame async for frame in frames]
    assert got[0] == b": live chart\n\n" and got[1].startswith(b"event: chart\n")
    assert hub.stats().loops == 0


def test_a_stream_ends_after_its_time_and_its_loop_with_it() -> None:
    asyncio.run(_stream_ends())


async def _broken_loop() -> None:
    hub = LiveCharts()

    def broken() -> Chart:
        raise RuntimeError("a bug in drawing")

    frames = hub.follow(LiveSubject(("http://store", None, "host", "h-1"), broken))
    assert [frame async for frame in frames] == [b": live chart\n\n"]
    assert hub.stats().loops == 0  # the next viewer starts a new loop


def test_a_loop_that_fails_ends_its_streams() -> None:
    asyncio.run(_broken_loop())

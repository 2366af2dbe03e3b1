"""Following the platform over time: waiting for a durable task, and the event stream.

``wait_task`` polls ``GET /v1/tasks/{id}`` with a growing pause (0.1 s up to 1 s) and calls
``on_progress`` with the task each time its state, step or progress changed. Polling rather than the
event stream: it needs only ``task:read`` (a token may lack ``event:read``) and cannot miss the
end of a task that finished before a stream was open.

``follow_events`` reads ``/v1/events/stream`` (server-sent events). When the connection breaks it
reconnects with ``Last-Event-ID`` set to the last event it yielded, so the server resumes right
after it: no event is lost and none is yielded twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from novacron.sdk.core import RETRY_STATUSES, Core
from novacron.sdk.errors import ApiError, TaskFailed, TransportError, WaitTimeout

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})

ProgressCallback = Callable[[dict[str, Any]], None]


def wait_task(
    core: Core,
    task_id: str,
    *,
    on_progress: ProgressCallback | None = None,
    timeout: float | None = None,
    raise_on_failure: bool = True,
) -> dict[str, Any]:
    """The task once it ended. Raises ``TaskFailed`` if it did not succeed (unless told not to),
    ``WaitTimeout`` after ``timeout`` seconds (the task goes on)."""
    deadline = time.monotonic() + timeout if timeout is not None else None
    pause, seen = 0.1, None
    while True:
        task: dict[str, Any] = core.call("GET", "/v1/tasks/{task_id}", path_params={"task_id": task_id})
        mark = (task.get("state"), task.get("step_index"), task.get("current_step"), task.get("progress"))
        if mark != seen:
            seen = mark
            if on_progress is not None:
                on_progress(task)
        if task.get("state") in TERMINAL:
            if raise_on_failure and task.get("state") != "succeeded":
                raise TaskFailed(task)
            return task
        if deadline is not None and time.monotonic() + pause > deadline:
            raise WaitTimeout(f"task {task_id} is still {task.get('state')} after {timeout:.0f} s", task)
        time.sleep(pause)
        pause = min(1.0, pause * 1.5)


@dataclass(frozen=True)
class Event:
    """One event of the log (``GET /v1/events`` items, the stream's ``data``)."""

    seq: int
    type: str
    resource_type: str
    resource_id: str
    tenant_id: str | None
    project_id: str | None
    time: str
    data: dict[str, Any]

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Event:
        return cls(
            seq=int(raw["seq"]),
            type=str(raw["type"]),
            resource_type=str(raw.get("resource_type") or ""),
            resource_id=str(raw.get("resource_id") or ""),
            tenant_id=raw.get("tenant_id"),
            project_id=raw.get("project_id"),
            time=str(raw.get("time") or ""),
            data=dict(raw.get("data") or {}),
        )


def parse_sse(lines: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """``(id, event, data)`` for each server-sent event in a stream of lines; comments are skipped."""
    ident = event = ""
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield ident, event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            ident = value
        elif name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield ident, event or "message", "\n".join(data)


def _start(core: Core, types: str | None) -> int:
    """The seq to follow from when none is given: the newest visible event now (so that a
    reconnect before the first event still resumes from the moment the follow began)."""
    page = core.call("GET", "/v1/events", params={"tail": True, "limit": 1, "types": types})
    return max([int(e["seq"]) for e in page.get("items", [])] or [0])


def follow_events(
    core: Core,
    *,
    types: Iterable[str] | str | None = None,
    last_event_id: int | None = None,
    max_reconnects: int = 10,
) -> Generator[Event, None, None]:
    """Events as they happen, after ``last_event_id`` (default: from now). Endless: stop by
    breaking out of the loop. ``max_reconnects`` consecutive failed reconnections raise."""
    kinds = types if isinstance(types, str) or types is None else ",".join(types)
    last = last_event_id if last_event_id is not None else _start(core, kinds)
    failures = 0
    while True:
        try:
            with core.stream(
                "/v1/events/stream", params={"types": kinds}, headers={"Last-Event-ID": str(last)}
            ) as response:
                for _, _, data in parse_sse(response.iter_lines()):
                    event = Event.of(json.loads(data))
                    if event.seq <= last:  # never twice, whatever the server replays
                        continue
                    last, failures = event.seq, 0
                    yield event
        except (TransportError, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.status not in RETRY_STATUSES:
                raise
            failures += 1
            if failures > max_reconnects:
                raise
            time.sleep(min(5.0, 0.2 * 2.0 ** (failures - 1)))
            continue
        # the server closed the stream cleanly (a restart, a proxy's limit): reconnect too
        time.sleep(0.1)

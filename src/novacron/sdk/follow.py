"""Following the platform over time: waiting for a durable task, and the event stream.

``wait_task`` reads the task (``GET /v1/tasks/{id}``) and the newest task events (its steps so far,
replayed first), then follows its ``task.*`` events on the stream from just before that read, and
calls ``on_progress`` with the task (as ``TaskOut``) each time its state, step or progress changed:
every step is seen, in order, however fast the task.
The task's own record stays the truth: after the task's end event, and after every 2 s without
one, it is read again, so a lost event delays nothing. A caller who may not read events
(``event:read``) gets polling with a growing pause (0.1 s up to 1 s) instead.

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
#: how many of the newest task events a wait looks back through for the task's earlier steps
HISTORY = 200

ProgressCallback = Callable[[dict[str, Any]], None]


def wait_task(  # noqa: PLR0913  (all keyword-only)
    core: Core,
    task_id: str,
    *,
    on_progress: ProgressCallback | None = None,
    timeout: float | None = None,
    raise_on_failure: bool = True,
    use_events: bool = True,
) -> dict[str, Any]:
    """The task once it ended. Raises ``TaskFailed`` if it did not succeed (unless told not to),
    ``WaitTimeout`` after ``timeout`` seconds (the task goes on)."""
    deadline = time.monotonic() + timeout if timeout is not None else None
    last, history = _history(core, task_id) if use_events else (None, [])
    seen: list[tuple[Any, ...]] = []

    def report(task: dict[str, Any]) -> None:
        mark = (task.get("state"), task.get("step_index"), task.get("progress"))
        if not seen or seen[-1] != mark:
            seen.append(mark)
            if on_progress is not None:
                on_progress(task)

    task: dict[str, Any] = core.call("GET", "/v1/tasks/{task_id}", path_params={"task_id": task_id})
    before = task
    for event in history:  # what the task did before this call: its start and each step, in order
        if event.type in ("task.started", "task.progress"):
            before = _apply(before, event)
            report(before)
    report(task)
    pause = 0.1
    while task.get("state") not in TERMINAL:
        left = deadline - time.monotonic() if deadline is not None else None
        if left is not None and left <= 0:
            raise WaitTimeout(f"task {task_id} is still {task.get('state')} after {timeout:.0f} s", task)
        if last is not None:
            # the stream shows every step as it ends; a quiet window falls back to a GET below
            window = min(2.0, left) if left is not None else 2.0
            task, last = _task_events(core, task, last, window, report)
        else:
            time.sleep(min(pause, left) if left is not None else pause)
            pause = min(1.0, pause * 1.5)
        task = core.call("GET", "/v1/tasks/{task_id}", path_params={"task_id": task_id})
        report(task)
    if raise_on_failure and task.get("state") != "succeeded":
        raise TaskFailed(task)
    return task


def _history(core: Core, task_id: str) -> tuple[int | None, list[Event]]:
    """Where to follow task events from (the newest visible one) and the recent events of this
    task; None when events may not be read (polling then)."""
    try:
        page = core.call("GET", "/v1/events", params={"tail": True, "limit": HISTORY, "types": "task.*"})
    except ApiError as exc:
        if exc.status in (401, 403, 404):
            return None, []
        raise
    events = sorted((Event.of(e) for e in page.get("items", [])), key=lambda e: e.seq)
    return max([e.seq for e in events] or [0]), [e for e in events if e.resource_id == task_id]


def _apply(task: dict[str, Any], event: Event) -> dict[str, Any]:
    """``task`` as ``event`` (its start, or the end of one of its steps) left it."""
    steps: list[str] = list(task.get("steps") or [])
    if event.type == "task.started":
        return {
            **task,
            "state": "running",
            "progress": 0,
            "step_index": 0,
            "current_step": steps[0] if steps else None,
        }
    if event.type != "task.progress":
        return task
    step = event.data.get("step")
    index = steps.index(step) + 1 if step in steps else int(task.get("step_index") or 0)
    current = steps[index] if index < len(steps) else None
    progress = int(event.data.get("progress") or 0)
    return {**task, "state": "running", "progress": progress, "step_index": index, "current_step": current}


def _task_events(
    core: Core, task: dict[str, Any], last: int, window: float, report: ProgressCallback
) -> tuple[dict[str, Any], int | None]:
    """Apply the task's events to ``task`` until it ends or ``window`` seconds pass without one."""
    try:
        with core.stream(
            "/v1/events/stream",
            params={"types": "task.*"},
            headers={"Last-Event-ID": str(last)},
            read_timeout=window,
        ) as response:
            for _, _, data in parse_sse(response.iter_lines()):
                event = Event.of(json.loads(data))
                last = max(last, event.seq)
                if event.resource_id != task["id"]:
                    continue
                if event.type.removeprefix("task.") in TERMINAL:
                    break
                after = _apply(task, event)
                if int(after.get("progress") or 0) >= int(task.get("progress") or 0):  # not an older one
                    task = after
                    report(task)
    except TransportError:
        pass  # the quiet window ended (a read timeout) or the connection broke: the GET decides
    except ApiError as exc:
        if exc.status not in (401, 403, 404, *RETRY_STATUSES):
            raise
        return task, None
    return task, last


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

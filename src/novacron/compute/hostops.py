"""Operations the control plane asks of a host's agent, queued as rows and awaited.

A task step calls ``call()`` with a typed request (``agent/protocol.py``): it queues a HostOperation
(once: the id is derived from the task and step) and waits for the host's agent to report the result.
Agents claim the operations of their own host only, whether they run in this process (all-in-one) or
on another machine over HTTPS.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, or_, select, update

from novacron.agent.protocol import Request, encode
from novacron.db.base import utcnow
from novacron.db.models import VM, Host, HostOperation, Image, Task
from novacron.monitoring import tracing
from novacron.tasks.runner import StepFailed

if TYPE_CHECKING:
    from novacron.context import Context

#: the database is polled this often only as a fallback: this process is woken by events when it
#: queues or completes an operation itself (other replicas are seen at the next poll)
POLL_S = 0.5
#: an operation claimed this long ago by an agent that has not answered is offered again
RECLAIM_AFTER = timedelta(minutes=10)
#: the id prefix of a request outside any task (a console read)
ONE_OFF = "req-"

#: called when an operation is queued, so an in-process agent need not wait for its next poll
_listeners: list[Callable[[str], None]] = []
_queued: dict[str, threading.Event] = {}
_completed: dict[str, threading.Event] = {}
_events_lock = threading.Lock()


def on_queued(listener: Callable[[str], None]) -> None:
    _listeners.append(listener)


def _event(table: dict[str, threading.Event], key: str) -> threading.Event:
    with _events_lock:
        return table.setdefault(key, threading.Event())


def queued_event(host_id: str) -> threading.Event:
    """Set when an operation is queued for ``host_id`` in this process (long-polling agents wait on it)."""
    return _event(_queued, host_id)


def operation_id(task: Task, op: str) -> str:
    return f"{task.id}:{task.step_index}:{op}"


def _queue(
    ctx: Context,
    op_id: str,
    host_id: str,
    task_id: str | None,
    op: str,
    instance_id: str,
    payload: dict[str, Any] | None,
) -> None:
    with ctx.db.session() as s:
        fenced = s.execute(select(Host.name, Host.fenced_at).where(Host.id == host_id)).one_or_none()
        if fenced is not None and fenced.fenced_at is not None:
            # its agent is cut off or dead and runs nothing: waiting for an answer would be in vain
            raise StepFailed(f"Host {fenced.name} failed and was fenced; it runs no operation.")
        if s.get(HostOperation, op_id) is None:
            s.add(
                HostOperation(
                    id=op_id,
                    host_id=host_id,
                    task_id=task_id,
                    op=op,
                    instance_id=instance_id,
                    payload=_seal(ctx, op_id, payload or {}),
                    traceparent=tracing.traceparent(),
                )
            )
    wake(host_id)


def _seal(ctx: Context, op_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Keys and credentials handed to an agent (``secrets``) wait in the database sealed."""
    if "secrets" not in payload:
        return payload
    from novacron.identity.sealing import secrets_aad

    return {**payload, "secrets": {"sealed": _sealed(ctx, payload["secrets"], secrets_aad(op_id))}}


def _unseal(ctx: Context, op_id: str, payload: dict[str, Any] | None) -> dict[str, Any]:
    payload = payload or {}
    secrets = payload.get("secrets")
    sealed = secrets.get("sealed") if isinstance(secrets, dict) else None
    if sealed is None:
        return payload
    from novacron.identity.sealing import secrets_aad

    return {**payload, "secrets": _opened(ctx, sealed, secrets_aad(op_id))}


def _sealed(ctx: Context, value: Any, aad: str) -> str:
    from novacron.identity.encryption import encryption_for

    return encryption_for(ctx.settings).seal(json.dumps(value).encode(), aad)


def _opened(ctx: Context, sealed: str, aad: str) -> Any:
    from novacron.identity.encryption import encryption_for

    return json.loads(encryption_for(ctx.settings).open(sealed, aad))


def _one_off(op_id: str) -> bool:
    """A request outside any task (:func:`call_blocking`): its answer is read once, then dropped."""
    return op_id.startswith(ONE_OFF)


def result_aad(op_id: str) -> str:
    return f"host_operations.result:{op_id}"


def wake(host_id: str) -> None:
    """Tell this process's waiting agents that ``host_id`` has a new operation (after its commit)."""
    queued_event(host_id).set()
    for listener in _listeners:
        listener(host_id)


def _outcome(ctx: Context, op_id: str, host_id: str, op: str) -> dict[str, Any] | None:
    """The result once the agent answered, None while it has not; raises StepFailed on failure."""
    with ctx.db.session() as s:
        row = s.get(HostOperation, op_id)
        assert row is not None
        state, result, error = row.state, row.result, row.error
    if state == "done":
        if _one_off(op_id) and isinstance(result, dict) and "sealed" in result:
            return dict(_opened(ctx, result["sealed"], result_aad(op_id)))
        return result or {}
    if state == "failed":
        raise StepFailed(error or f"{op} failed on host {host_id}")
    return None


def _timed_out(host_id: str, op: str, timeout_s: float) -> StepFailed:
    return StepFailed(f"The agent of host {host_id} did not answer '{op}' within {timeout_s:.0f}s.")


async def call(
    ctx: Context,
    host_id: str,
    task: Task,
    request: Request,
    instance_id: str,
    timeout_s: float = 300.0,
    key: str = "",
) -> dict[str, Any]:
    """Queue ``request`` for a task step (once per step and ``key``) and wait for the host's answer.

    ``key`` tells apart several operations of the same kind in one step (one per VM of a runbook).
    """
    op = request.OP
    op_id = operation_id(task, op) + (f":{key}" if key else "")
    # queued inside its span, so the agent's span of the operation is this one's child
    with tracing.child(tracing.API, f"hostop {op}", {"novacron.op": op, "novacron.host_id": host_id}):
        _queue(ctx, op_id, host_id, task.id, op, instance_id, encode(request))
        done = _event(_completed, op_id)
        deadline = asyncio.get_running_loop().time() + timeout_s
        try:
            while (result := _outcome(ctx, op_id, host_id, op)) is None:
                if asyncio.get_running_loop().time() > deadline:
                    raise _timed_out(host_id, op, timeout_s)
                await asyncio.to_thread(done.wait, POLL_S)
        finally:
            with _events_lock:
                _completed.pop(op_id, None)
    return result


def call_blocking(
    ctx: Context, host_id: str, request: Request, instance_id: str, timeout_s: float = 10.0
) -> dict[str, Any]:
    """A one-off request outside any task (reading a console log); for worker threads, not event loops."""
    op = request.OP
    op_id = f"{ONE_OFF}{secrets.token_hex(8)}:{op}"
    _queue(ctx, op_id, host_id, None, op, instance_id, encode(request))
    done = _event(_completed, op_id)
    deadline = time.monotonic() + timeout_s
    try:
        while (result := _outcome(ctx, op_id, host_id, op)) is None:
            if time.monotonic() > deadline:
                raise _timed_out(host_id, op, timeout_s)
            done.wait(POLL_S)
    finally:
        with _events_lock:
            _completed.pop(op_id, None)
        # no task resumes a one-off request: its answer (a tenant's console text) is not kept in the
        # database (secure_delete zeroes it), and one that timed out is not run later
        with ctx.db.session() as s:
            s.execute(delete(HostOperation).where(HostOperation.id == op_id))
    return result


def claim(ctx: Context, host_id: str, limit: int = 16) -> list[dict[str, Any]]:
    """Hand the host's pending operations to its agent (and ones it claimed but never answered)."""
    now = utcnow()
    with ctx.db.session() as s:
        rows = list(
            s.scalars(
                select(HostOperation)
                .where(
                    HostOperation.host_id == host_id,
                    or_(
                        HostOperation.state == "pending",
                        (HostOperation.state == "running") & (HostOperation.claimed_at < now - RECLAIM_AFTER),
                    ),
                )
                .order_by(HostOperation.created_at)
                .limit(limit)
            )
        )
        for row in rows:
            row.state = "running"
            row.claimed_at = now
        return [
            {
                "id": r.id,
                "op": r.op,
                "instance_id": r.instance_id,
                "payload": _unseal(ctx, r.id, r.payload),
                "traceparent": r.traceparent,
            }
            for r in rows
        ]


def running_traceparent(ctx: Context, host_id: str, op_id: str) -> str | None:
    """The trace context of an operation ``host_id``'s agent is running (None: not its, or none)."""
    with ctx.db.read_session() as s:
        return s.scalar(
            select(HostOperation.traceparent).where(
                HostOperation.id == op_id, HostOperation.host_id == host_id, HostOperation.state == "running"
            )
        )


def requeue_unanswered(ctx: Context, host_id: str) -> None:
    """An agent that restarted never answers what it had claimed: offer those again at once."""
    with ctx.db.session() as s:
        s.execute(
            update(HostOperation)
            .where(HostOperation.host_id == host_id, HostOperation.state == "running")
            .values(state="pending", claimed_at=None)
        )


def host_needs_image(session: Any, host_id: str, image: Image) -> bool:
    """Whether ``host_id``'s agent may fetch ``image``: a public one, or the image of a VM the host
    runs or has an operation for (a VM arriving by migration is not yet the host's). A node
    credential must not read every tenant's private images."""
    if image.public:
        return True
    on_host = (VM.host_id == host_id) | VM.id.in_(
        select(HostOperation.instance_id).where(
            HostOperation.host_id == host_id, HostOperation.state.in_(("pending", "running"))
        )
    )
    return session.scalar(select(VM.id).where(VM.image_id == image.id, on_host).limit(1)) is not None


def complete(
    ctx: Context, host_id: str, op_id: str, result: dict[str, Any] | None, error: str | None
) -> bool:
    with ctx.db.session() as s:
        row = s.get(HostOperation, op_id)
        if row is None or row.host_id != host_id or row.state != "running":
            return False
        row.state = "failed" if error else "done"
        if _one_off(op_id) and result is not None:
            # a one-off answer (a tenant's console text) never reaches the file or its WAL in clear
            result = {"sealed": _sealed(ctx, result, result_aad(op_id))}
        row.result = result
        row.error = error
        if "secrets" in (row.payload or {}):
            # keys handed to the agent for this operation only (backups): not kept in the database
            row.payload = {k: v for k, v in row.payload.items() if k != "secrets"}
    with _events_lock:
        waiter = _completed.get(op_id)
    if waiter is not None:
        waiter.set()
    return True


def progress(ctx: Context, host_id: str, op_id: str, detail: dict[str, Any]) -> bool:
    """Show a running operation's progress on its task; True when the user asked to cancel it.

    ``detail["fraction"]`` (0-1) is the operation's share of its step; the task's ``progress``
    moves within that step, and ``result.progress`` shows the detail until the task ends.
    """
    with ctx.db.session() as s:
        op = s.get(HostOperation, op_id)
        if op is None or op.host_id != host_id or op.state != "running" or op.task_id is None:
            return False
        task = s.get(Task, op.task_id)
        if task is None or task.state != "running":
            return False
        fraction = _fraction(detail.get("fraction"))
        task.progress = max(task.progress, int(100 * (task.step_index + fraction) / max(len(task.steps), 1)))
        task.result = {**(task.result or {}), "progress": detail}  # an earlier step's result stays
        return bool(task.cancel_requested)


def _fraction(value: Any) -> float:
    """An agent's ``fraction`` as a number in [0, 1]: 0 for anything else (text, NaN, a list)."""
    try:
        fraction = float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return min(max(fraction, 0.0), 1.0) if math.isfinite(fraction) else 0.0

"""Durable tasks: long work as rows with steps, run under a lease, resumed after a crash.

A task's ``step_index`` is committed after each step, so a restarted runner
resumes at the first step not yet done. Steps are idempotent: a step that was
running when the process died runs again. A step that fails makes the handler
roll back what the earlier steps did, and the task ends ``failed``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import secrets
import socket
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from novacron import events
from novacron.db.base import new_id, utcnow
from novacron.db.models import Task
from novacron.monitoring import tracing

if TYPE_CHECKING:
    from novacron.context import Context

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=15)
#: a database restart or failover is waited out this long (retries x seconds) before a task fails
DB_RETRIES, DB_RETRY_S = 30, 2.0
TERMINAL = ("succeeded", "failed", "cancelled")


class StepFailed(Exception):
    """A step could not complete; the message is shown to the user as the task error."""


class LeaseLost(Exception):
    """Another runner took the task over; this one must stop touching it."""


#: kind -> the steps during (or before) which a task of that kind can still be cancelled
CANCELLABLE: dict[str, frozenset[str]] = {}


class TaskHandler(abc.ABC):
    kind: ClassVar[str]
    steps: ClassVar[list[str]]
    #: a cancel asked for before or during one of these steps rolls the task back and ends it
    #: ``cancelled``; once a later step began it is too late and the task runs to its end
    cancellable_steps: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.cancellable_steps:
            CANCELLABLE[cls.kind] = cls.cancellable_steps

    @abc.abstractmethod
    async def run_step(self, ctx: Context, task: Task, step: str) -> None: ...

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:  # noqa: B027 - optional hook
        """Undo what earlier steps did; must be safe to call more than once."""

    async def on_success(self, ctx: Context, task: Task) -> None:  # noqa: B027 - optional hook
        """Called once, after the last step."""


def can_cancel(task: Task) -> bool:
    """Whether a cancel asked for now would still stop ``task``."""
    steps = CANCELLABLE.get(task.kind, frozenset())
    if task.state not in ("pending", "running") or task.step_index >= len(task.steps):
        return False
    return task.steps[task.step_index] in steps


class Cancelled(Exception):
    """The user cancelled the task while a cancellable step ran or was next."""


def create_task(
    session: Session,
    handler: type[TaskHandler],
    resource_type: str,
    resource_id: str,
    *,
    tenant_id: str | None,
    project_id: str | None,
    params: dict[str, Any] | None = None,
) -> Task:
    task = Task(
        id=new_id("task"),
        tenant_id=tenant_id,
        project_id=project_id,
        kind=handler.kind,
        resource_type=resource_type,
        resource_id=resource_id,
        steps=list(handler.steps),
        params=params or {},
        state="pending",
        # its steps continue the trace of the request that asked for it
        traceparent=tracing.traceparent(),
    )
    session.add(task)
    session.flush()
    events.publish(
        session, "task.created", "task", task.id, tenant_id=tenant_id, project_id=project_id, kind=task.kind
    )
    return task


def _owner_alive(owner: str | None, this_host: str | None = None) -> bool:
    """An owner is ``host:pid:nonce``; on this host a dead pid means the lease is void at once."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != (this_host or socket.gethostname()):
        return True  # another host's lease expires on its own
    try:
        os.kill(int(pid_text), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


class TaskRunner:
    def __init__(self, ctx: Context, handlers: list[TaskHandler], concurrency: int = 8) -> None:
        self.ctx = ctx
        self.handlers = {h.kind: h for h in handlers}
        # the configured host name (the machine's by default): two replicas given different names
        # on one machine are treated as two hosts, whose pids mean nothing to each other
        self.host = ctx.settings.host_name
        self.owner = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        self.concurrency = concurrency
        self._running: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        #: set while this runner provably is the only one (it holds the cluster's leader lock):
        #: then a lease held by any other owner is void, whoever and wherever that owner is
        self.exclusive = False

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def wake(self) -> None:
        """Look for new work now rather than at the next poll; callable from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._wake.set)

    async def run_forever(self, poll_s: float = 0.5) -> None:
        self._stopping = False  # a runner stopped when leadership was lost runs again when it is won
        while not self._stopping:
            try:
                self._claim_and_start()
            except Exception:
                log.exception("task runner poll failed")
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel (gh-86296)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_s):
                    await self._wake.wait()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for t in list(self._running.values()):
            t.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def drain(self, timeout_s: float = 60.0) -> None:
        """Wait until no task is pending or running (for tests and orderly shutdown)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            with self.ctx.db.session() as s:
                busy = s.scalar(select(Task.id).where(Task.state.in_(("pending", "running"))).limit(1))
            if busy is None and not self._running:
                return
            self._wake.set()
            await asyncio.sleep(0.1)
        raise TimeoutError("tasks still running")

    def _claim_and_start(self) -> None:
        free = self.concurrency - len(self._running)
        if free <= 0:
            return
        now = utcnow()
        with self.ctx.db.session() as s:
            candidates = list(
                s.scalars(
                    select(Task)
                    .where(Task.state.in_(("pending", "running")))
                    .order_by(Task.created_at)
                    .limit(100)
                )
            )
            busy_resources = {t.resource_id for t in candidates if t.id in self._running}
            for task in candidates:
                if free <= 0:
                    break
                if task.id in self._running or task.resource_id in busy_resources:
                    continue
                if task.state == "running":
                    lease_valid = task.lease_expires is not None and task.lease_expires > now
                    # our own lease on a task we no longer run (stopped when leadership was lost) is void
                    foreign = task.lease_owner != self.owner
                    if (
                        lease_valid
                        and foreign
                        and not self.exclusive
                        and _owner_alive(task.lease_owner, self.host)
                    ):
                        busy_resources.add(task.resource_id)
                        continue
                    log.warning(
                        "resuming task %s at step %s from %s (%s)",
                        task.id,
                        task.step_index,
                        task.lease_owner,
                        "this runner leads" if lease_valid else "owner gone",
                    )
                # one task per resource at a time, in creation order
                earlier = s.scalar(
                    select(Task.id).where(
                        Task.resource_id == task.resource_id,
                        Task.state.in_(("pending", "running")),
                        Task.created_at < task.created_at,
                        Task.id != task.id,
                    )
                )
                if earlier is not None:
                    busy_resources.add(task.resource_id)
                    continue
                # ``attempts`` fences the claim: only one runner moves it from the value it read
                claimed = s.execute(
                    update(Task)
                    .where(Task.id == task.id, Task.attempts == task.attempts)
                    .values(
                        state="running",
                        lease_owner=self.owner,
                        lease_expires=now + LEASE,
                        attempts=task.attempts + 1,
                    )
                ).rowcount  # type: ignore[attr-defined]
                if claimed:
                    busy_resources.add(task.resource_id)
                    free -= 1
                    self._running[task.id] = asyncio.create_task(self._execute(task.id))

    async def _renew_lease(self, task_id: str) -> None:
        while True:
            await asyncio.sleep(LEASE.total_seconds() / 3)
            try:
                with self.ctx.db.session() as s:
                    renewed = s.execute(
                        update(Task)
                        .where(Task.id == task_id, Task.lease_owner == self.owner, Task.state == "running")
                        .values(lease_expires=utcnow() + LEASE)
                    ).rowcount  # type: ignore[attr-defined]
            except OperationalError as exc:  # the database restarting: renew at the next round
                log.warning("task %s: lease not renewed (database unreachable: %s)", task_id, exc.orig)
                continue
            if not renewed:
                log.warning("task %s: lease taken over by another runner; stopping here", task_id)
                running = self._running.get(task_id)
                if running is not None:
                    running.cancel()
                return

    async def _execute(self, task_id: str) -> None:
        renew = asyncio.create_task(self._renew_lease(task_id))
        try:
            await self._execute_through_outages(task_id)
        except asyncio.CancelledError:
            raise
        except LeaseLost:
            log.warning("task %s: lease taken over by another runner; stopping here", task_id)
        except Exception as exc:
            log.exception("task %s crashed", task_id)
            try:
                self._finish(task_id, "failed", error=f"internal error: {type(exc).__name__}: {exc}")
            except Exception:
                log.exception("could not record the failure of task %s", task_id)
        finally:
            renew.cancel()
            self._running.pop(task_id, None)
            self._wake.set()

    async def _execute_through_outages(self, task_id: str) -> None:
        """Run the task's steps; the database going away (a restart, a failover) is waited out and
        the interrupted step run again (every step is idempotent), rather than failing the task."""
        for attempt in range(DB_RETRIES + 1):
            try:
                with self._span(task_id):
                    await self._execute_steps(task_id)
                return
            except OperationalError as exc:
                if attempt == DB_RETRIES:
                    raise
                log.warning("task %s: database unreachable (%s); its step runs again", task_id, exc.orig)
                await asyncio.sleep(DB_RETRY_S)

    def _span(self, task_id: str) -> contextlib.AbstractContextManager[Any]:
        """The task's span, in the trace of the request that created it (a new trace otherwise)."""
        with self.ctx.db.read_session() as s:
            kind, parent = s.execute(select(Task.kind, Task.traceparent).where(Task.id == task_id)).one()
        attributes = {"novacron.task.id": task_id, "novacron.task.kind": kind}
        return tracing.continued(tracing.API, f"task {kind}", parent, attributes)

    def _load(self, task_id: str) -> Task:
        with self.ctx.db.session() as s:
            task = s.get(Task, task_id)
            assert task is not None
            return task

    async def _execute_steps(self, task_id: str) -> None:
        task = self._load(task_id)
        handler = self.handlers.get(task.kind)
        if handler is None:
            self._finish(task_id, "failed", error=f"no handler for task kind {task.kind}")
            return
        if task.step_index == 0:
            self._publish(task, "task.started")
        while task.step_index < len(task.steps):
            step = task.steps[task.step_index]
            try:
                if self._cancel_requested(task_id, handler, step):
                    raise Cancelled
                with tracing.child(tracing.API, f"step {step}", {"novacron.task.step": step}):
                    await handler.run_step(self.ctx, task, step)
            except (asyncio.CancelledError, OperationalError):
                raise  # an unreachable database is no failure of the step: _execute_through_outages
            except Exception as exc:
                # a step cut short by the user's cancel fails with the cancel as its cause
                cancelled = isinstance(exc, Cancelled) or self._cancel_requested(task_id, handler, step)
                if cancelled:
                    error = f"Cancelled on request (during step {step})."
                elif isinstance(exc, StepFailed):
                    error = str(exc)
                else:
                    error = f"{step}: {type(exc).__name__}: {exc}"
                    log.exception("task %s step %s failed", task_id, step)
                self._check_lease(task_id)
                try:
                    await handler.rollback(self.ctx, task, error)
                except Exception:
                    log.exception("rollback of task %s failed", task_id)
                self._finish(task_id, "cancelled" if cancelled else "failed", error=error)
                return
            with self.ctx.db.session() as s:
                row = s.get(Task, task_id)
                assert row is not None
                if row.lease_owner != self.owner:
                    raise LeaseLost(task_id)
                row.step_index += 1
                row.progress = int(100 * row.step_index / max(len(row.steps), 1))
                events.publish(
                    s,
                    "task.progress",
                    "task",
                    row.id,
                    tenant_id=row.tenant_id,
                    project_id=row.project_id,
                    step=step,
                    progress=row.progress,
                )
                task = row
        self._check_lease(task_id)
        await handler.on_success(self.ctx, task)
        self._finish(task_id, "succeeded")

    def _cancel_requested(self, task_id: str, handler: TaskHandler, step: str) -> bool:
        if step not in handler.cancellable_steps:
            return False
        with self.ctx.db.session() as s:
            return bool(s.scalar(select(Task.cancel_requested).where(Task.id == task_id)))

    def _check_lease(self, task_id: str) -> None:
        with self.ctx.db.session() as s:
            if s.scalar(select(Task.lease_owner).where(Task.id == task_id)) != self.owner:
                raise LeaseLost(task_id)

    def _publish(self, task: Task, type_: str, **data: Any) -> None:
        with self.ctx.db.session() as s:
            events.publish(
                s, type_, "task", task.id, tenant_id=task.tenant_id, project_id=task.project_id, **data
            )

    def _finish(self, task_id: str, state: str, error: str | None = None) -> None:
        with self.ctx.db.session() as s:
            row = s.get(Task, task_id)
            assert row is not None
            if row.lease_owner != self.owner:
                raise LeaseLost(task_id)
            row.state = state
            row.error = error
            row.lease_owner = None
            row.lease_expires = None
            row.finished_at = utcnow()
            if state == "succeeded":
                row.progress = 100
            # inside the task's span: the line carries the trace_id of the request that asked for it
            log.info("task %s (%s of %s/%s) %s%s", row.id, row.kind, row.resource_type, row.resource_id,
                     state, f": {error}" if error else "")  # fmt: skip
            events.publish(
                s,
                f"task.{state}",
                "task",
                row.id,
                tenant_id=row.tenant_id,
                project_id=row.project_id,
                kind=row.kind,
                target=f"{row.resource_type}/{row.resource_id}",
                error=error,
            )
            kind, lasted = row.kind, (row.finished_at - row.created_at).total_seconds()
        # counted once the end is committed: a finish that lost its lease is not an end
        self.ctx.platform_metrics.task_finished(kind, state, lasted)

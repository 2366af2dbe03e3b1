"""Tasks as callers see them: list, read and cancel; and waking the runner for new ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import Task
from novacron.db.resolve import resolve, scoped
from novacron.errors import Conflict
from novacron.service import Service
from novacron.tasks.runner import TERMINAL, can_cancel

if TYPE_CHECKING:
    from novacron.context import Context


def wake_on_commit(session: Session, ctx: Context) -> None:
    """Have the task runner look for work as soon as ``session`` commits the tasks it created."""
    runner = ctx.tasks
    if runner is not None:
        event.listen(session, "after_commit", lambda _session: runner.wake(), once=True)


class TaskService(Service):
    """The tasks the caller may see, and their cancellation."""

    def list(
        self,
        params: ListParams,
        *,
        state: str | None = None,
        resource_id: str | None = None,
        kind: str | None = None,
    ) -> tuple[list[Task], str | None]:
        """One page of tasks, filtered by state, resource and kind."""
        stmt = scoped(select(Task), Task, self.principal)
        stmt = where_equal(stmt, (Task.state, state), (Task.resource_id, resource_id), (Task.kind, kind))
        return paginate(self.session, stmt, Task, params)

    def get(self, task_id: str) -> Task:
        """The task of this id, if the caller may see it."""
        return resolve(self.session, self.principal, Task, task_id)

    def cancel(self, task_id: str) -> Task:
        """Ask a running task to stop before its point of no return; it ends ``cancelled``."""
        task = self.get(task_id)
        if task.state in TERMINAL:
            raise Conflict(f"Task '{task.id}' already ended ({task.state}).")
        if not can_cancel(task):
            step = task.steps[task.step_index] if task.step_index < len(task.steps) else "its end"
            raise Conflict(f"Task '{task.id}' ({task.kind}) cannot be cancelled at step {step}.")
        task.cancel_requested = True
        self.session.flush()
        return task

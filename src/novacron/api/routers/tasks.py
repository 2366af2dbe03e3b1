"""/v1/tasks: durable operations with their steps and progress."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import select

from novacron.api.deps import ReadSessionDep, SessionDep, require
from novacron.api.errors import Problem
from novacron.api.listing import Page
from novacron.compute.scope import get_visible, scoped
from novacron.db.listing import ListParams, paginate
from novacron.db.models import Task
from novacron.identity.principal import Principal
from novacron.tasks.runner import TERMINAL, can_cancel

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

CanTaskRead = Annotated[Principal, Depends(require("task:read"))]
CanTaskCancel = Annotated[Principal, Depends(require("task:cancel"))]


class TaskOut(BaseModel):
    id: str
    kind: str
    resource_type: str
    resource_id: str
    project_id: str | None
    state: str
    steps: list[str]
    current_step: str | None
    step_index: int
    progress: int
    error: str | None
    result: dict[str, Any] | None
    attempts: int
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, t: Task) -> TaskOut:
        current = t.steps[t.step_index] if t.step_index < len(t.steps) and t.state == "running" else None
        return cls(
            id=t.id,
            kind=t.kind,
            resource_type=t.resource_type,
            resource_id=t.resource_id,
            project_id=t.project_id,
            state=t.state,
            steps=list(t.steps),
            current_step=current,
            step_index=t.step_index,
            progress=t.progress,
            error=t.error,
            result=t.result,
            attempts=t.attempts,
            cancel_requested=t.cancel_requested,
            created_at=t.created_at,
            updated_at=t.updated_at,
            finished_at=t.finished_at,
        )


@router.get("", response_model=Page[TaskOut])
def list_tasks(
    session: ReadSessionDep,
    principal: CanTaskRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "-created_at",
    state: str | None = None,
    resource_id: str | None = None,
    kind: str | None = None,
) -> Page[TaskOut]:
    stmt = scoped(select(Task), Task, principal)
    for col, value in ((Task.state, state), (Task.resource_id, resource_id), (Task.kind, kind)):
        if value is not None:
            stmt = stmt.where(col == value)
    rows, nxt = paginate(
        session, stmt, Task, ListParams(limit, cursor, sort, ("created_at", "updated_at", "state"))
    )
    return Page[TaskOut](items=[TaskOut.of(t) for t in rows], next_cursor=nxt)


@router.get("/{task_id}", response_model=TaskOut)
def get_task(task_id: str, session: ReadSessionDep, principal: CanTaskRead) -> TaskOut:
    return TaskOut.of(get_visible(session, Task, task_id, principal, "task"))


@router.post("/{task_id}/cancel", status_code=202, response_model=TaskOut)
def cancel_task(task_id: str, session: SessionDep, principal: CanTaskCancel) -> TaskOut:
    """Ask a running task to stop (migrations, before the VM switches host); it ends ``cancelled``."""
    task = get_visible(session, Task, task_id, principal, "task")
    if task.state in TERMINAL:
        raise Problem(409, "Conflict", f"Task '{task.id}' already ended ({task.state}).")
    if not can_cancel(task):
        step = task.steps[task.step_index] if task.step_index < len(task.steps) else "its end"
        raise Problem(409, "Conflict", f"Task '{task.id}' ({task.kind}) cannot be cancelled at step {step}.")
    task.cancel_requested = True
    session.flush()
    return TaskOut.of(task)

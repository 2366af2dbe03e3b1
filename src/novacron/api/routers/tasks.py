"""/v1/tasks: durable operations with their steps and progress."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from novacron.api.deps import service
from novacron.api.listing import Page, list_query
from novacron.db.listing import ListParams
from novacron.db.models import Task
from novacron.tasks.service import TaskService

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

TaskReader = Annotated[TaskService, Depends(service(TaskService, "task:read", write=False))]
TaskCanceller = Annotated[TaskService, Depends(service(TaskService, "task:cancel"))]
TaskList = Annotated[ListParams, Depends(list_query(("created_at", "updated_at", "state"), "-created_at"))]


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
    tasks: TaskReader,
    page: TaskList,
    state: str | None = None,
    resource_id: str | None = None,
    kind: str | None = None,
) -> Page[TaskOut]:
    rows, nxt = tasks.list(page, state=state, resource_id=resource_id, kind=kind)
    return Page[TaskOut](items=[TaskOut.of(t) for t in rows], next_cursor=nxt)


@router.get("/{task_id}", response_model=TaskOut)
def get_task(task_id: str, tasks: TaskReader) -> TaskOut:
    return TaskOut.of(tasks.get(task_id))


@router.post("/{task_id}/cancel", status_code=202, response_model=TaskOut)
def cancel_task(task_id: str, tasks: TaskCanceller) -> TaskOut:
    """Ask a running task to stop (migrations, before the VM switches host); it ends ``cancelled``."""
    return TaskOut.of(tasks.cancel(task_id))

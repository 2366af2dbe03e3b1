"""/v1/dr/runbooks: disaster-recovery runbooks, their drills, and RPO/RTO against targets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from novacron.api.concurrency import Idempotency, check_if_match, set_etag
from novacron.api.deps import CtxDep, ReadSessionDep, SessionDep, require
from novacron.api.errors import name_taken
from novacron.api.listing import ListParams, Page, paginate
from novacron.backup.dr import DRDrill, rpo_status
from novacron.compute.scope import get_visible, resolve_project, scoped
from novacron.db.base import new_id
from novacron.db.models import DRRunbook
from novacron.identity.principal import Principal
from novacron.tasks.runner import create_task

router = APIRouter(prefix="/v1/dr/runbooks", tags=["dr"])

CanRead = Annotated[Principal, Depends(require("dr:read"))]
CanWrite = Annotated[Principal, Depends(require("dr:write"))]
NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vm: str = Field(min_length=1, max_length=64, description="id or name of the backed-up VM")
    name: str | None = Field(default=None, pattern=NAME, description="name of the restored VM")
    wait_for: str | None = Field(default=None, min_length=1, max_length=200, description="console marker")


class RunbookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    project_id: str | None = Field(default=None, max_length=40)
    steps: list[Step] = Field(min_length=1, max_length=100, description="restored in this order")
    rpo_target_s: int = Field(default=86400, ge=1, description="newest backup at most this old")
    rto_target_s: int = Field(default=3600, ge=1, description="every VM up within this long")


class RunbookOut(BaseModel):
    id: str
    name: str
    project_id: str
    tenant_id: str
    steps: list[dict[str, Any]]
    rpo_target_s: int
    rto_target_s: int
    last_drill: dict[str, Any] | None
    last_drill_at: datetime | None
    #: each VM's RPO now (age of its newest available backup)
    rpo: list[dict[str, Any]] = Field(default_factory=list)
    created_at: datetime
    version: int


def _out(session: Any, r: DRRunbook, with_rpo: bool = False) -> RunbookOut:
    out = RunbookOut.model_validate(r, from_attributes=True)
    if with_rpo:
        out.rpo = rpo_status(session, r)
    return out


@router.post("", status_code=201, response_model=RunbookOut)
def create_runbook(request: Request, session: SessionDep, principal: CanWrite, body: RunbookCreate) -> Any:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    project = resolve_project(session, principal, body.project_id)
    if session.scalar(
        select(DRRunbook.id).where(DRRunbook.project_id == project.id, DRRunbook.name == body.name)
    ):
        raise name_taken("runbook", body.name, "body.name")
    runbook = DRRunbook(
        id=new_id("drb"),
        tenant_id=project.tenant_id,
        project_id=project.id,
        name=body.name,
        steps=[s.model_dump(exclude_none=True) for s in body.steps],
        rpo_target_s=body.rpo_target_s,
        rto_target_s=body.rto_target_s,
    )
    session.add(runbook)
    session.flush()
    out = _out(session, runbook)
    idem.remember(201, out.model_dump(mode="json"))
    return out


@router.get("", response_model=Page[RunbookOut])
def list_runbooks(
    session: ReadSessionDep,
    principal: CanRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "name",
    name: str | None = None,
) -> Page[RunbookOut]:
    stmt = scoped(select(DRRunbook), DRRunbook, principal)
    if name is not None:
        stmt = stmt.where(DRRunbook.name == name)
    rows, nxt = paginate(session, stmt, DRRunbook, ListParams(limit, cursor, sort), ("name", "created_at"))
    return Page[RunbookOut](items=[_out(session, r) for r in rows], next_cursor=nxt)


@router.get("/{runbook_id}", response_model=RunbookOut)
def get_runbook(
    runbook_id: str, response: Response, session: ReadSessionDep, principal: CanRead
) -> RunbookOut:
    runbook = get_visible(session, DRRunbook, runbook_id, principal, "runbook")
    set_etag(response, runbook)
    return _out(session, runbook, with_rpo=True)


@router.delete("/{runbook_id}", status_code=204)
def delete_runbook(runbook_id: str, request: Request, session: SessionDep, principal: CanWrite) -> Response:
    runbook = get_visible(session, DRRunbook, runbook_id, principal, "runbook")
    check_if_match(request, runbook)
    session.delete(runbook)
    return Response(status_code=204)


@router.post("/{runbook_id}/drill", status_code=202)
def drill(
    runbook_id: str, request: Request, ctx: CtxDep, session: SessionDep, principal: CanWrite
) -> Response:
    """Run the runbook for real: restore every VM in order and measure RPO and RTO."""
    runbook = get_visible(session, DRRunbook, runbook_id, principal, "runbook")
    idem = Idempotency(request, principal, session, {"drill": runbook.id})
    if (replay := idem.replay()) is not None:
        return replay
    task = create_task(
        session, DRDrill, "dr-runbook", runbook.id, tenant_id=runbook.tenant_id, project_id=runbook.project_id
    )
    payload = {"task_id": task.id, "runbook_id": runbook.id}
    idem.remember(202, payload)
    if ctx.tasks is not None:
        ctx.tasks.wake()
    return JSONResponse(payload, status_code=202, headers={"Location": f"/v1/tasks/{task.id}"})

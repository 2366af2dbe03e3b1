"""/v1/server-groups: VMs placed together (affinity) or apart (anti-affinity), per project.

``hard`` (the default) refuses a create the policy cannot satisfy, with the reason in the task's
error; soft only weighs. Members are the VMs created with ``server_group``. A group's policy is
fixed once created (as in Nova); delete it when it has no members left.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events
from novacron.api.concurrency import Idempotency, check_if_match, set_etag
from novacron.api.deps import SessionDep, require
from novacron.api.errors import Problem, name_taken
from novacron.api.listing import Page
from novacron.compute.scope import get_visible, resolve_project, scoped
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import VM, ServerGroup
from novacron.identity.principal import Principal

router = APIRouter(prefix="/v1/server-groups", tags=["server-groups"])

CanRead = Annotated[Principal, Depends(require("server-group:read"))]
CanWrite = Annotated[Principal, Depends(require("server-group:write"))]


class ServerGroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,62})$")
    policy: Literal["affinity", "anti-affinity"]
    hard: bool = Field(default=True, description="refuse a create the policy cannot satisfy")
    project_id: str | None = Field(default=None, max_length=40)


class ServerGroupOut(BaseModel):
    id: str
    name: str
    policy: str
    hard: bool
    project_id: str
    tenant_id: str
    members: list[str]
    created_at: datetime
    version: int

    @classmethod
    def of(cls, session: Session, g: ServerGroup) -> ServerGroupOut:
        members = session.scalars(select(VM.id).where(VM.server_group_id == g.id).order_by(VM.created_at))
        return cls(
            id=g.id,
            name=g.name,
            policy=g.policy,
            hard=g.hard,
            project_id=g.project_id,
            tenant_id=g.tenant_id,
            members=list(members),
            created_at=g.created_at,
            version=g.version,
        )


@router.get("", response_model=Page[ServerGroupOut])
def list_server_groups(
    session: SessionDep,
    principal: CanRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "created_at",
    name: str | None = None,
    project_id: str | None = None,
) -> Page[ServerGroupOut]:
    stmt = scoped(select(ServerGroup), ServerGroup, principal)
    for col, value in ((ServerGroup.name, name), (ServerGroup.project_id, project_id)):
        if value is not None:
            stmt = stmt.where(col == value)
    rows, nxt = paginate(session, stmt, ServerGroup, ListParams(limit, cursor, sort, ("created_at", "name")))
    return Page[ServerGroupOut](items=[ServerGroupOut.of(session, g) for g in rows], next_cursor=nxt)


@router.post("", status_code=201, response_model=ServerGroupOut)
def create_server_group(
    body: ServerGroupCreate, request: Request, session: SessionDep, principal: CanWrite
) -> Response:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    project = resolve_project(session, principal, body.project_id)
    if session.scalar(
        select(ServerGroup.id).where(ServerGroup.project_id == project.id, ServerGroup.name == body.name)
    ):
        raise name_taken("server group", body.name, "body.name")
    group = ServerGroup(
        id=new_id("sg"),
        project_id=project.id,
        tenant_id=project.tenant_id,
        name=body.name,
        policy=body.policy,
        hard=body.hard,
    )
    session.add(group)
    session.flush()
    events.publish(
        session,
        "server_group.created",
        "server_group",
        group.id,
        tenant_id=group.tenant_id,
        project_id=group.project_id,
        name=group.name,
    )
    return idem.created(ServerGroupOut.of(session, group), group)


@router.get("/{group_id}", response_model=ServerGroupOut)
def get_server_group(
    group_id: str, response: Response, session: SessionDep, principal: CanRead
) -> ServerGroupOut:
    group = get_visible(session, ServerGroup, group_id, principal, "server group")
    set_etag(response, group)
    return ServerGroupOut.of(session, group)


@router.delete("/{group_id}", status_code=204)
def delete_server_group(
    group_id: str, request: Request, session: SessionDep, principal: CanWrite
) -> Response:
    group = get_visible(session, ServerGroup, group_id, principal, "server group")
    check_if_match(request, group)
    members = session.scalar(select(VM.id).where(VM.server_group_id == group.id).limit(1))
    if members is not None:
        raise Problem(
            409, "Conflict", f"Server group '{group.name}' still has members; delete its VMs first."
        )
    events.publish(
        session,
        "server_group.deleted",
        "server_group",
        group.id,
        tenant_id=group.tenant_id,
        project_id=group.project_id,
        name=group.name,
    )
    session.delete(group)
    return Response(status_code=204)

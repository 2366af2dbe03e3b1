"""/v1/server-groups: VMs placed together (affinity) or apart (anti-affinity), per project.

``hard`` (the default) refuses a create the policy cannot satisfy, with the reason in the task's
error; soft only weighs. Members are the VMs created with ``server_group``. A group's policy is
fixed once created (as in Nova); delete it when it has no members left.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.compute.server_groups import ServerGroupService, ServerGroupSpec, ServerGroupView
from novacron.db.listing import ListParams

router = APIRouter(prefix="/v1/server-groups", tags=["server-groups"])

GroupReader = Annotated[
    ServerGroupService, Depends(service(ServerGroupService, "server-group:read", write=False))
]
GroupWriter = Annotated[ServerGroupService, Depends(service(ServerGroupService, "server-group:write"))]
GroupList = Annotated[ListParams, Depends(list_query(("created_at", "name")))]


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
    def of(cls, view: ServerGroupView) -> ServerGroupOut:
        g = view.group
        return cls(
            id=g.id,
            name=g.name,
            policy=g.policy,
            hard=g.hard,
            project_id=g.project_id,
            tenant_id=g.tenant_id,
            members=view.members,
            created_at=g.created_at,
            version=g.version,
        )


@router.get("", response_model=Page[ServerGroupOut])
def list_server_groups(
    groups: GroupReader, page: GroupList, name: str | None = None, project_id: str | None = None
) -> Page[ServerGroupOut]:
    rows, nxt = groups.list(page, name=name, project_id=project_id)
    return Page[ServerGroupOut](items=[ServerGroupOut.of(g) for g in rows], next_cursor=nxt)


@router.post("", status_code=201, response_model=ServerGroupOut)
def create_server_group(body: ServerGroupCreate, groups: GroupWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    view = groups.create(ServerGroupSpec(body.name, body.policy, body.hard, body.project_id))
    return idem.created(ServerGroupOut.of(view), view.group)


@router.get("/{group_id}", response_model=ServerGroupOut)
def get_server_group(group_id: str, response: Response, groups: GroupReader) -> ServerGroupOut:
    view = groups.get(group_id)
    set_etag(response, view.group)
    return ServerGroupOut.of(view)


@router.delete("/{group_id}", status_code=204)
def delete_server_group(group_id: str, request: Request, groups: GroupWriter) -> Response:
    group = groups.get(group_id).group
    check_if_match(request, group)
    groups.delete(group)
    return Response(status_code=204)

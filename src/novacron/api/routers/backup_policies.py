"""/v1/backup-policies: backup schedules and GFS retention for one VM or every VM of a project."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from novacron.api.concurrency import Idempotency, check_if_match
from novacron.api.deps import ReadSessionDep, SessionDep, require
from novacron.api.errors import invalid, name_taken
from novacron.api.listing import Page
from novacron.backup import service
from novacron.compute.scope import get_visible, resolve_project, scoped
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import VM, BackupPolicy
from novacron.errors import DomainError
from novacron.identity.principal import Principal

router = APIRouter(prefix="/v1/backup-policies", tags=["backups"])
CanRead = Annotated[Principal, Depends(require("backup:read"))]
CanWrite = Annotated[Principal, Depends(require("backup:policy"))]
NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
RetentionKey = Literal["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"]


class PolicyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    vm: str | None = Field(default=None, max_length=64, description="one VM (default: the whole project)")
    project_id: str | None = Field(default=None, max_length=40)
    target: str | None = Field(default=None, max_length=64)
    interval_s: int = Field(default=86400, ge=10, le=366 * 86400, description="seconds between backups")
    retention: dict[RetentionKey, Annotated[int, Field(ge=0, le=10000)]] = Field(default_factory=dict)
    immutable_s: int = Field(default=0, ge=0, le=10 * 366 * 86400, description="no deletion this long")
    enabled: bool = True


class PolicyOut(BaseModel):
    id: str
    name: str
    project_id: str
    tenant_id: str
    vm_id: str | None
    target_id: str
    interval_s: int
    retention: dict[str, int]
    immutable_s: int
    enabled: bool
    last_run_at: datetime | None
    created_at: datetime
    version: int


@router.post("", status_code=201, response_model=PolicyOut)
def create_policy(request: Request, session: SessionDep, principal: CanWrite, body: PolicyCreate) -> Any:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    vm_id = None
    if body.vm is not None:
        try:
            vm = get_visible(session, VM, body.vm, principal, "vm")
        except DomainError as exc:
            raise invalid("body.vm", f"no VM '{body.vm}' is visible to you", 404) from exc
        project_id, tenant_id, vm_id = vm.project_id, vm.tenant_id, vm.id
    else:
        project = resolve_project(session, principal, body.project_id)
        project_id, tenant_id = project.id, project.tenant_id
    if session.scalar(
        select(BackupPolicy.id).where(BackupPolicy.project_id == project_id, BackupPolicy.name == body.name)
    ):
        raise name_taken("backup policy", body.name, "body.name")
    target = service.default_target(session, body.target)
    policy = BackupPolicy(
        id=new_id("bkp"),
        tenant_id=tenant_id,
        project_id=project_id,
        name=body.name,
        vm_id=vm_id,
        target_id=target.id,
        interval_s=body.interval_s,
        retention=dict(body.retention),
        immutable_s=body.immutable_s,
        enabled=body.enabled,
    )
    session.add(policy)
    session.flush()
    out = PolicyOut.model_validate(policy, from_attributes=True)
    idem.remember(201, out.model_dump(mode="json"))
    return out


@router.get("", response_model=Page[PolicyOut])
def list_policies(
    session: ReadSessionDep,
    principal: CanRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "name",
    name: str | None = None,
) -> Page[PolicyOut]:
    stmt = scoped(select(BackupPolicy), BackupPolicy, principal)
    if name is not None:
        stmt = stmt.where(BackupPolicy.name == name)
    rows, nxt = paginate(session, stmt, BackupPolicy, ListParams(limit, cursor, sort, ("name", "created_at")))
    return Page[PolicyOut](
        items=[PolicyOut.model_validate(r, from_attributes=True) for r in rows], next_cursor=nxt
    )


@router.get("/{policy_id}", response_model=PolicyOut)
def get_policy(policy_id: str, session: ReadSessionDep, principal: CanRead) -> PolicyOut:
    return PolicyOut.model_validate(
        get_visible(session, BackupPolicy, policy_id, principal, "backup policy"), from_attributes=True
    )


@router.delete("/{policy_id}", status_code=204)
def delete_policy(policy_id: str, request: Request, session: SessionDep, principal: CanWrite) -> Response:
    policy = get_visible(session, BackupPolicy, policy_id, principal, "backup policy")
    check_if_match(request, policy)
    session.delete(policy)
    return Response(status_code=204)

"""/v1/backup-policies: backup schedules and GFS retention for one VM or every VM of a project."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.backup.policies import BackupPolicyService, PolicySpec
from novacron.db.listing import ListParams
from novacron.db.models import BackupPolicy

router = APIRouter(prefix="/v1/backup-policies", tags=["backups"])
PolicyReader = Annotated[
    BackupPolicyService, Depends(service(BackupPolicyService, "backup:read", write=False))
]
PolicyWriter = Annotated[BackupPolicyService, Depends(service(BackupPolicyService, "backup:policy"))]
PolicyList = Annotated[ListParams, Depends(list_query(("name", "created_at"), "name"))]
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

    @classmethod
    def of(cls, p: BackupPolicy) -> PolicyOut:
        return cls.model_validate(p, from_attributes=True)


@router.post("", status_code=201, response_model=PolicyOut)
def create_policy(body: PolicyCreate, policies: PolicyWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    policy = policies.create(PolicySpec(**body.model_dump()))
    return idem.created(PolicyOut.of(policy), policy)


@router.get("", response_model=Page[PolicyOut])
def list_policies(policies: PolicyReader, page: PolicyList, name: str | None = None) -> Page[PolicyOut]:
    rows, nxt = policies.list(page, name=name)
    return Page[PolicyOut](items=[PolicyOut.of(r) for r in rows], next_cursor=nxt)


@router.get("/{policy_id}", response_model=PolicyOut)
def get_policy(policy_id: str, policies: PolicyReader) -> PolicyOut:
    return PolicyOut.of(policies.get(policy_id))


@router.delete("/{policy_id}", status_code=204)
def delete_policy(policy_id: str, request: Request, policies: PolicyWriter) -> Response:
    policy = policies.get(policy_id)
    check_if_match(request, policy)
    policies.delete(policy)
    return Response(status_code=204)

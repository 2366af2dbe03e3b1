"""/v1/role-assignments: which user or API key holds which role, on the tenant or one project,
optionally only on resources whose labels match (``identity/roles.py``, ``identity/authz.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.deps import IdempotencyDep, service
from novacron.api.routers.roles import Labels
from novacron.db.models import RoleAssignment
from novacron.identity.roles import AssignmentService, AssignmentSpec

router = APIRouter(prefix="/v1/role-assignments", tags=["roles"])

Reader = Annotated[AssignmentService, Depends(service(AssignmentService, "user:read", write=False))]
Writer = Annotated[AssignmentService, Depends(service(AssignmentService, "user:write"))]


class AssignmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: a built-in role's name or one of your tenant's custom roles
    role: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    #: the user (id or username) who holds it; or name ``api_key`` instead
    user: str | None = Field(None, max_length=64)
    #: the API key (id) that holds it
    api_key: str | None = Field(None, max_length=40)
    #: a project (id or name): the role holds there only; omitted: the whole tenant
    project: str | None = Field(None, max_length=64)
    #: only on resources carrying all of these labels (enforced on VMs)
    labels: Labels = Field(default_factory=dict, max_length=16)


class AssignmentOut(BaseModel):
    id: str
    tenant_id: str
    user_id: str | None
    api_key_id: str | None
    role: str
    #: "tenant" or "project"
    scope: str
    project_id: str | None
    labels: dict[str, str]
    created_at: datetime

    @classmethod
    def of(cls, a: RoleAssignment) -> AssignmentOut:
        return cls(
            id=a.id,
            tenant_id=a.tenant_id,
            user_id=a.user_id,
            api_key_id=a.api_key_id,
            role=a.role,
            scope="project" if a.project_id else "tenant",
            project_id=a.project_id,
            labels=dict(a.labels or {}),
            created_at=a.created_at,
        )


@router.get("", response_model=list[AssignmentOut])
def list_assignments(
    assignments: Reader,
    user: Annotated[str | None, Query(max_length=64, description="id or username")] = None,
) -> list[AssignmentOut]:
    return [AssignmentOut.of(a) for a in assignments.list(user)]


@router.post("", status_code=201, response_model=AssignmentOut)
def create_assignment(body: AssignmentCreate, assignments: Writer, idem: IdempotencyDep) -> Response:
    """Give a user or an API key a role (no more than you hold); it applies at their next request."""
    if (replay := idem.replay(body)) is not None:
        return replay
    spec = AssignmentSpec(body.role, body.user, body.api_key, body.project, body.labels)
    row = assignments.create(spec)
    return idem.created(AssignmentOut.of(row), row)


@router.get("/{assignment_id}", response_model=AssignmentOut)
def get_assignment(assignment_id: str, assignments: Reader) -> AssignmentOut:
    return AssignmentOut.of(assignments.get(assignment_id))


@router.delete("/{assignment_id}", status_code=204)
def delete_assignment(assignment_id: str, assignments: Writer) -> Response:
    assignments.delete(assignment_id)
    return Response(status_code=204)

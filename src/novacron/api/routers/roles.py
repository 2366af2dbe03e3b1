"""/v1/roles: the built-in roles (read-only) and the tenant's custom roles, with their permissions.

A custom role names permissions of the catalogue (those the built-in roles grant; an unknown one is
a 422 naming ``body.permissions[i]``), each held by its creator, and may act only on resources
whose labels match ``labels`` (``identity/authz.py``). Users and API keys hold roles through
``/v1/role-assignments``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.db.models import CustomRole
from novacron.identity.permissions import ROLES
from novacron.identity.roles import RoleService, RoleSpec

router = APIRouter(prefix="/v1/roles", tags=["roles"])

#: listing needs no permission (every caller may see what roles exist); changing needs user:write
RoleLister = Annotated[RoleService, Depends(service(RoleService, None, write=False))]
RoleReader = Annotated[RoleService, Depends(service(RoleService, "user:read", write=False))]
RoleWriter = Annotated[RoleService, Depends(service(RoleService, "user:write"))]

PERMISSION = r"^[a-z][a-z-]*(:[a-z-]+)?$"
Permission = Annotated[str, Field(pattern=PERMISSION, max_length=64)]
LabelKey = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._/-]{0,62}$")]
Labels = dict[LabelKey, Annotated[str, Field(max_length=63)]]


class RoleOut(BaseModel):
    name: str
    permissions: list[str]
    #: built-in roles are read-only and the same in every tenant
    builtin: bool = True
    id: str | None = None
    tenant_id: str | None = None
    description: str = ""
    #: the role acts only on resources carrying all of these labels ({}: any)
    labels: dict[str, str] = {}
    created_at: datetime | None = None
    version: int | None = None

    @classmethod
    def of(cls, r: CustomRole) -> RoleOut:
        return cls(
            name=r.name,
            permissions=list(r.permissions),
            builtin=False,
            id=r.id,
            tenant_id=r.tenant_id,
            description=r.description,
            labels=dict(r.labels or {}),
            created_at=r.created_at,
            version=r.version,
        )


class RoleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="1-64 lowercase letters, digits, . _ -"
    )
    permissions: list[Permission] = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=255)
    labels: Labels = Field(default_factory=dict, max_length=16)
    #: platform administrators name the tenant; others create in their own
    tenant_id: str | None = Field(None, max_length=64)


class RoleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    permissions: list[Permission] | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=255)
    labels: Labels | None = Field(None, max_length=16)


@router.get("", response_model=list[RoleOut])
def list_roles(roles: RoleLister) -> list[RoleOut]:
    """The built-in roles, then your tenant's custom roles (every tenant's for platform administrators)."""
    builtin = [RoleOut(name=name, permissions=sorted(perms)) for name, perms in ROLES.items()]
    return builtin + [RoleOut.of(r) for r in roles.custom()]


@router.post("", status_code=201, response_model=RoleOut)
def create_role(body: RoleCreate, roles: RoleWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    spec = RoleSpec(body.name, body.permissions, body.description, body.labels, body.tenant_id)
    role = roles.create(spec)
    return idem.created(RoleOut.of(role), role)


@router.get("/{role}", response_model=RoleOut)
def get_role(role: str, response: Response, roles: RoleReader) -> RoleOut:
    """A role by name (a built-in one too) or a custom role's id."""
    if role in ROLES:
        return RoleOut(name=role, permissions=sorted(ROLES[role]))
    found = roles.get(role)
    set_etag(response, found)
    return RoleOut.of(found)


@router.patch("/{role}", response_model=RoleOut)
def update_role(
    role: str, body: RoleUpdate, request: Request, response: Response, roles: RoleWriter
) -> RoleOut:
    """Change a custom role (built-in ones are read-only: 403); its holders get it at their next request."""
    found = roles.get(role)
    check_if_match(request, found)
    roles.update(found, body.permissions, body.description, body.labels)
    set_etag(response, found)
    return RoleOut.of(found)


@router.delete("/{role}", status_code=204)
def delete_role(role: str, roles: RoleWriter) -> Response:
    """Delete a custom role nobody is assigned (409 naming the assignments otherwise)."""
    roles.delete(role)
    return Response(status_code=204)

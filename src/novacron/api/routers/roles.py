"""/v1/roles: the roles a user can hold and the permissions each grants."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from novacron.api.deps import PrincipalDep
from novacron.identity.permissions import ROLES

router = APIRouter(prefix="/v1/roles", tags=["roles"])


class RoleOut(BaseModel):
    name: str
    permissions: list[str]


@router.get("", response_model=list[RoleOut])
def list_roles(principal: PrincipalDep) -> list[RoleOut]:
    """The roles a user can hold and the permissions each grants (the same for every caller)."""
    return [RoleOut(name=name, permissions=sorted(perms)) for name, perms in ROLES.items()]

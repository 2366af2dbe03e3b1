"""/v1/users: accounts, their roles and passwords; a caller without ``global`` sees its tenant's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.audit import OriginDep
from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.api.routers.tokens import Text
from novacron.db.listing import ListParams
from novacron.db.models import User
from novacron.identity.users import UserChanges, UserFilter, UserService, UserSpec

router = APIRouter(prefix="/v1/users", tags=["users"])

UserReader = Annotated[UserService, Depends(service(UserService, "user:read", write=False))]
UserWriter = Annotated[UserService, Depends(service(UserService, "user:write"))]
#: any caller: your own password needs no permission, another's needs ``user:write`` (checked there)
PasswordSetter = Annotated[UserService, Depends(service(UserService, None, write=False))]
UserList = Annotated[ListParams, Depends(list_query(("username", "created_at", "role"), "username"))]

USERNAME = r"^[a-z0-9][a-z0-9._@-]{0,63}$"
Role = Literal["admin", "tenant-admin", "member", "viewer", "compliance", "none"]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(pattern=USERNAME)
    #: at least 12 characters, not a common or breached password, not easy to guess (zxcvbn)
    password: Text = Field(min_length=12, max_length=1024)
    role: Role = "member"
    #: required for platform administrators creating tenant users; must be null for role admin
    tenant_id: str | None = Field(None, max_length=64)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    disabled: bool | None = None


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: at least 12 characters, not a common or breached password, not easy to guess (zxcvbn)
    password: Text = Field(min_length=12, max_length=1024)
    #: required when changing your own password
    current_password: Text | None = Field(None, max_length=1024)


class UserOut(BaseModel):
    id: str
    username: str
    role: str
    tenant_id: str | None
    disabled: bool
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, u: User) -> UserOut:
        return cls(
            id=u.id,
            username=u.username,
            role=u.role,
            tenant_id=u.tenant_id,
            disabled=u.disabled,
            created_at=u.created_at,
            updated_at=u.updated_at,
            version=u.version,
        )


def user_filter(
    username: str | None = None,
    role: str | None = None,
    tenant_id: str | None = None,
    disabled: bool | None = None,
) -> UserFilter:
    """The user list's filters (query parameters)."""
    return UserFilter(username, role, tenant_id, disabled)


@router.get("", response_model=Page[UserOut])
def list_users(
    users: UserReader, page: UserList, match: Annotated[UserFilter, Depends(user_filter)]
) -> Page[UserOut]:
    rows, nxt = users.list(page, match)
    return Page[UserOut](items=[UserOut.of(u) for u in rows], next_cursor=nxt)


@router.post("", status_code=201, response_model=UserOut)
def create_user(body: UserCreate, users: UserWriter, idem: IdempotencyDep) -> Response:
    # hashed first: the replay check opens the transaction, and hashing must not hold its write lock
    password_hash = users.new_password_hash(body.password, body.username)
    if (replay := idem.replay(body)) is not None:
        return replay
    spec = UserSpec(body.username, password_hash, role=body.role, tenant_id=body.tenant_id)
    user = users.create(spec)
    return idem.created(UserOut.of(user), user)


@router.get("/{user_id}", response_model=UserOut)
def get_user(user_id: str, response: Response, users: UserReader) -> UserOut:
    user = users.get(user_id)
    set_etag(response, user)
    return UserOut.of(user)


@router.patch("/{user_id}", response_model=UserOut)
def update_user(
    user_id: str, body: UserUpdate, request: Request, response: Response, users: UserWriter
) -> UserOut:
    user = users.get(user_id)
    check_if_match(request, user)
    users.update(user, UserChanges(**body.model_dump()))
    set_etag(response, user)
    return UserOut.of(user)


@router.delete("/{user_id}", status_code=204)
def delete_user(user_id: str, users: UserWriter) -> Response:
    users.delete(user_id)
    return Response(status_code=204)


@router.post("/{user_id}/password", status_code=204)
def change_password(user_id: str, body: PasswordChange, users: PasswordSetter, origin: OriginDep) -> Response:
    """Set a new password; every session of the user ends (log in again with the new one).

    Proving your current password goes through the login throttle (429 + ``Retry-After``)."""
    users.change_password(user_id, body.password, body.current_password, origin)
    return Response(status_code=204)

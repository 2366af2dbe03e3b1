"""/v1/api-keys: machine identities acting for their owner with a subset of its permissions.

The key's token is in the answer to its creation only; it is sent as ``Authorization: Bearer
nck_...`` like an access token. Your own keys need no permission; others' are for administrators.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.db.base import utcnow
from novacron.db.listing import ListParams
from novacron.db.models import ApiKey
from novacron.identity.apikeys import ApiKeyService, ApiKeySpec

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])

KeyReader = Annotated[ApiKeyService, Depends(service(ApiKeyService, None, write=False))]
KeyWriter = Annotated[ApiKeyService, Depends(service(ApiKeyService, None))]
KeyList = Annotated[ListParams, Depends(list_query(("name", "created_at", "expires_at"), "created_at"))]

PERMISSION = r"^[a-z][a-z-]*(:[a-z-]+)?$"


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: unique among your keys, e.g. "ci-deploy"
    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="1-64 lowercase letters, digits, . _ -"
    )
    #: what it may do, each a permission your role holds (GET /v1/roles lists them); omitted: all of yours
    permissions: list[Annotated[str, Field(pattern=PERMISSION, max_length=64)]] | None = Field(
        None, min_length=1, max_length=200
    )
    #: days until it stops working (1 to 365)
    expires_in_days: int = Field(90, ge=1, le=365)
    #: a project (id or name): the key acts only on that project's VMs (and reads images and
    #: flavors); omitted: your whole tenant
    project: str | None = Field(None, max_length=64)


class ApiKeyOut(BaseModel):
    id: str
    name: str
    user_id: str
    tenant_id: str | None
    permissions: list[str]
    created_at: datetime
    expires_at: datetime
    #: active, expired or revoked
    state: str
    last_used_at: datetime | None
    last_used_from: str | None
    revoked_at: datetime | None
    #: the project it is limited to (null: the owner's tenant)
    project_id: str | None = None

    @classmethod
    def of(cls, k: ApiKey) -> ApiKeyOut:
        state = "revoked" if k.revoked_at else "expired" if k.expires_at <= utcnow() else "active"
        return cls(
            id=k.id,
            name=k.name,
            user_id=k.user_id,
            tenant_id=k.tenant_id,
            permissions=list(k.permissions),
            created_at=k.created_at,
            expires_at=k.expires_at,
            state=state,
            last_used_at=k.last_used_at,
            last_used_from=k.last_used_from,
            revoked_at=k.revoked_at,
            project_id=k.project_id,
        )


class ApiKeyCreated(ApiKeyOut):
    #: the key's token, ``nck_<id>_<secret>``: shown in this answer only (a replay of the request
    #: with its Idempotency-Key answers null), so store it now
    token: str | None


@router.post("", status_code=201, response_model=ApiKeyCreated)
def create_api_key(body: ApiKeyCreate, keys: KeyWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    perms = tuple(body.permissions) if body.permissions else None
    spec = ApiKeySpec(body.name, perms, body.expires_in_days, body.project)
    key, token = keys.create(spec)
    out = ApiKeyOut.of(key).model_dump(mode="json")
    idem.remember(201, {**out, "token": None})  # the secret is never stored, not even for a replay
    return JSONResponse(ApiKeyCreated(**out, token=token).model_dump(mode="json"), status_code=201)


@router.get("", response_model=Page[ApiKeyOut])
def list_api_keys(
    keys: KeyReader,
    page: KeyList,
    everyone: Annotated[
        bool, Query(description="those of every user you administer, not only yours")
    ] = False,
) -> Page[ApiKeyOut]:
    rows, nxt = keys.list(page, everyone)
    return Page[ApiKeyOut](items=[ApiKeyOut.of(k) for k in rows], next_cursor=nxt)


@router.get("/{key_id}", response_model=ApiKeyOut)
def get_api_key(key_id: str, keys: KeyReader) -> ApiKeyOut:
    return ApiKeyOut.of(keys.get(key_id))


@router.delete("/{key_id}", status_code=204)
def revoke_api_key(key_id: str, keys: KeyWriter) -> Response:
    """Revoke the key: the next request made with it is refused."""
    keys.revoke(key_id)
    return Response(status_code=204)

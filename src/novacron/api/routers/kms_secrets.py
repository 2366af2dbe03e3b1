"""/v1/kms/secrets: the tenant's secrets, encrypted under its keys, written into VMs by cloud-init.

The value is write-only: it goes in with the creation and never comes out of the API (a VM
created with ``secrets: [name]`` finds it at its ``path``). An idempotent retry of a creation is
recognised by its other fields: the value is not kept, not even hashed, for the replay.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.db.listing import ListParams
from novacron.db.models import TenantSecret
from novacron.errors import InvalidInput
from novacron.identity.kms_secrets import SecretService, SecretSpec

router = APIRouter(prefix="/v1/kms/secrets", tags=["kms"])

SecretReader = Annotated[SecretService, Depends(service(SecretService, "kms:read", write=False))]
SecretWriter = Annotated[SecretService, Depends(service(SecretService, "secret:write"))]
SecretList = Annotated[ListParams, Depends(list_query(("name", "created_at"), "name"))]


class SecretCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    #: the value as text; or ``secret_b64`` for bytes (one of the two)
    secret_value: str | None = Field(None, max_length=32 * 1024)
    secret_b64: str | None = Field(None, max_length=44 * 1024)
    #: the key (id or name) that encrypts it; omitted: the tenant's key ``secrets`` (made if absent)
    key: str | None = Field(None, min_length=1, max_length=64)
    #: where the guest finds it; omitted: /run/novacron/secrets/<name>
    path: str | None = Field(None, max_length=255)
    #: the tenant (id or name) a platform administrator makes it for; others: their own
    tenant: str | None = Field(None, max_length=64)


class SecretOut(BaseModel):
    id: str
    tenant_id: str
    name: str
    key_id: str
    path: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, s: TenantSecret) -> SecretOut:
        return cls(
            id=s.id,
            tenant_id=s.tenant_id,
            name=s.name,
            key_id=s.key_id,
            path=s.path,
            created_at=s.created_at,
            updated_at=s.updated_at,
        )


def _value(body: SecretCreate) -> bytes:
    if (body.secret_value is None) == (body.secret_b64 is None):
        raise InvalidInput("secret_value", "give the value as secret_value (text) or secret_b64, one of them")
    if body.secret_value is not None:
        return body.secret_value.encode()
    try:
        return base64.b64decode(body.secret_b64 or "", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("secret_b64", "not standard base64") from None


@router.post("", status_code=201, response_model=SecretOut)
def create_secret(body: SecretCreate, secrets: SecretWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    row = secrets.create_secret(SecretSpec(body.name, _value(body), body.key, body.path, body.tenant))
    out = SecretOut.of(row).model_dump(mode="json")
    idem.remember(201, out)
    return JSONResponse(out, status_code=201)


@router.get("", response_model=Page[SecretOut])
def list_secrets(secrets: SecretReader, page: SecretList) -> Page[SecretOut]:
    rows, nxt = secrets.list_secrets(page)
    return Page[SecretOut](items=[SecretOut.of(s) for s in rows], next_cursor=nxt)


@router.get("/{secret}", response_model=SecretOut)
def get_secret(secret: str, secrets: SecretReader) -> SecretOut:
    return SecretOut.of(secrets.get_secret(secret))


@router.delete("/{secret}", status_code=204)
def delete_secret(secret: str, secrets: SecretWriter) -> Response:
    secrets.delete_secret(secret)
    return Response(status_code=204)

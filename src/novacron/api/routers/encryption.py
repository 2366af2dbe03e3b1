"""/v1/key-encryption-keys: the platform's KEKs (which provider, which key wraps) and their rotation.

Rotation is an admin action (permission ``key:rotate``), audited like every mutating request
with the rotation's report as the record's detail: a new KEK, every sealed secret of the database
and every backup target's tenant keys re-wrapped under it, then the old KEKs retired (kept, and
named in the answer, when a target could not be reached: retiring them would lose those keys).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.audit import audit_detail
from novacron.api.deps import CtxDep, require
from novacron.identity.encryption import encryption_for
from novacron.identity.mfa_policy import require_step_up_now
from novacron.identity.principal import Principal
from novacron.identity.sealing import rotate

router = APIRouter(tags=["tokens"])

CanRotate = Annotated[Principal, Depends(require("key:rotate"))]


class KEKsOut(BaseModel):
    provider: str = Field(description="file, pkcs11 or vault")
    current: str = Field(description="the KEK that wraps new data keys")
    keks: list[str] = Field(description="every KEK that can still unwrap")


class KEKRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    retire: bool = Field(default=True, description="retire the old KEKs once nothing needs them")


class KEKRotationOut(BaseModel):
    new_kek: str
    rewrapped: int = Field(description="sealed values of the database re-wrapped")
    targets: dict[str, int | None] = Field(
        description="backup target -> tenant keys re-wrapped (null: failed)"
    )
    retired: list[str]
    kept: list[str] = Field(description="old KEKs still needed (see errors) or kept on request")
    errors: list[str]


@router.get("/v1/key-encryption-keys", response_model=KEKsOut)
def list_keks(ctx: CtxDep, principal: CanRotate) -> KEKsOut:
    keys = encryption_for(ctx.settings).keys
    return KEKsOut(provider=keys.kind, current=keys.current_id, keks=keys.kek_ids())


@router.post("/v1/key-encryption-keys/rotate", response_model=KEKRotationOut)
def rotate_keks(request: Request, ctx: CtxDep, principal: CanRotate, body: KEKRotate | None = None) -> Any:
    """A new KEK; every stored secret and backup tenant key re-wrapped under it; old KEKs retired."""
    require_step_up_now(ctx.db, principal, "Rotating the key-encryption keys")
    report = rotate(ctx.settings, ctx.db, retire=body.retire if body else True)
    out = KEKRotationOut(**vars(report))
    audit_detail(request, out.model_dump(mode="json"))
    return out

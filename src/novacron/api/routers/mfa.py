"""/v1/mfa: the caller's second factor (TOTP, recovery codes, step-up), tenants' MFA policies and a
platform admin's reset of a user's factor.

Secrets are write-only: the TOTP secret and the recovery codes are in the answer that makes them
and nowhere after (a replay of the request with its Idempotency-Key answers them null). Requests
that carry a code (confirm, verify, disable) are checked through the login throttle; a code is
single use, so such a request is not replayed but refused the second time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.audit import OriginDep
from novacron.api.deps import CtxDep, IdempotencyDep, PrincipalDep, service
from novacron.identity.mfa import MfaService
from novacron.identity.mfa_codes import MfaCodes

router = APIRouter(tags=["mfa"])

MfaReader = Annotated[MfaService, Depends(service(MfaService, None, write=False))]
MfaWriter = Annotated[MfaService, Depends(service(MfaService, None))]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def codes(ctx: CtxDep, origin: OriginDep) -> MfaCodes:
    """The code checker for this request's client address (the throttle counts by it)."""
    return MfaCodes(ctx.tokens, origin.source)


CodesDep = Annotated[MfaCodes, Depends(codes)]


class CodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: the 6 digits your authenticator app shows now
    code: str = Field(pattern=r"^[0-9 ]{6,8}$")


class CodeOrRecoveryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: a current 6-digit code, or one of your recovery codes (XXXX-XXXX-XXXX-XXXX)
    code: str = Field(pattern=r"^[0-9A-Za-z -]{6,24}$")


class MfaStatusOut(BaseModel):
    #: none, pending (enrolled, not confirmed) or enrolled
    totp: str
    recovery_codes_left: int
    #: whether your tenant's policy requires a second factor of you
    required: bool
    #: until when this login session may do sensitive actions without a new code
    step_up_until: datetime | None


class EnrolmentOut(BaseModel):
    #: base32, to type into an authenticator app; shown in this answer only (null on a replay)
    secret: str | None
    #: the same as an otpauth:// URI (what a QR code carries); null on a replay
    otpauth_uri: str | None
    #: confirm with POST /v1/mfa/totp/confirm and a first code
    confirm: str = "/v1/mfa/totp/confirm"


class RecoveryCodesOut(BaseModel):
    #: ten single-use codes, each replacing a TOTP code once: shown in this answer only
    recovery_codes: list[str] | None


class StepUpOut(BaseModel):
    step_up_until: datetime | None


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: who must have a second factor: nobody, the admins (admin, tenant-admin) or everyone
    require: Literal["none", "admins", "everyone"]


class PolicyOut(BaseModel):
    tenant_id: str
    require: str


@router.get("/v1/mfa", response_model=MfaStatusOut)
def mfa_status(mfa: MfaReader) -> MfaStatusOut:
    """Your second factor: whether it is enrolled, recovery codes left, your tenant's requirement."""
    return MfaStatusOut(**vars(mfa.status()))


@router.post("/v1/mfa/totp", status_code=201, response_model=EnrolmentOut)
def enrol_totp(mfa: MfaWriter, idem: IdempotencyDep) -> Response:
    """Start enrolling an authenticator app: a new secret, shown once. It counts once confirmed."""
    if (replay := idem.replay({})) is not None:
        return replay
    done = mfa.enrol()
    idem.remember(201, EnrolmentOut(secret=None, otpauth_uri=None).model_dump())  # never stored in clear
    out = EnrolmentOut(secret=done.secret, otpauth_uri=done.otpauth_uri)
    return JSONResponse(out.model_dump(), status_code=201, headers=NO_STORE)


@router.post("/v1/mfa/totp/confirm", response_model=RecoveryCodesOut)
def confirm_totp(body: CodeIn, checker: CodesDep, principal: PrincipalDep) -> JSONResponse:
    """Confirm enrolment with a first code: the factor counts from now on. Returns ten recovery
    codes, shown this once (a wrong code counts towards the login throttle)."""
    out = RecoveryCodesOut(recovery_codes=checker.confirm(principal, body.code))
    return JSONResponse(out.model_dump(), headers=NO_STORE)


@router.post("/v1/mfa/verify", response_model=StepUpOut)
def verify_code(body: CodeIn, checker: CodesDep, principal: PrincipalDep, mfa: MfaReader) -> StepUpOut:
    """Step-up: prove a current code; this login session may do sensitive actions for 5 minutes."""
    checker.verify(principal, body.code)
    return StepUpOut(step_up_until=mfa.status().step_up_until)


@router.post("/v1/mfa/totp/disable", status_code=204)
def disable_totp(body: CodeOrRecoveryIn, checker: CodesDep, principal: PrincipalDep) -> Response:
    """Remove your authenticator and recovery codes; needs a current code or a recovery code."""
    checker.disable(principal, body.code)
    return Response(status_code=204)


@router.post("/v1/mfa/recovery-codes", status_code=201, response_model=RecoveryCodesOut)
def regenerate_recovery_codes(mfa: MfaWriter, idem: IdempotencyDep) -> Response:
    """Ten new recovery codes replacing the old ones (step-up: a code verified in the last 5 min)."""
    if (replay := idem.replay({})) is not None:
        return replay
    out = RecoveryCodesOut(recovery_codes=mfa.regenerate_recovery_codes())
    idem.remember(201, {"recovery_codes": None})
    return JSONResponse(out.model_dump(), status_code=201, headers=NO_STORE)


@router.get("/v1/tenants/{tenant_id}/mfa-policy", response_model=PolicyOut)
def get_mfa_policy(tenant_id: str, mfa: MfaReader) -> PolicyOut:
    """Who in the tenant must have a second factor."""
    tenant, require = mfa.policy(tenant_id)
    return PolicyOut(tenant_id=tenant.id, require=require)


@router.put("/v1/tenants/{tenant_id}/mfa-policy", response_model=PolicyOut)
def set_mfa_policy(tenant_id: str, body: PolicyIn, mfa: MfaWriter, idem: IdempotencyDep) -> Response:
    """Require a second factor of the tenant's admins or everyone (``user:write``). Covered users
    without one can only enrol until they do."""
    if (replay := idem.replay(body)) is not None:
        return replay
    tenant, require = mfa.set_policy(tenant_id, body.require)
    out = PolicyOut(tenant_id=tenant.id, require=require).model_dump()
    idem.remember(200, out)
    return JSONResponse(out)


@router.delete("/v1/users/{user_id}/mfa", status_code=204)
def reset_user_mfa(user_id: str, mfa: MfaWriter) -> Response:
    """Platform admin: remove a user's second factor (a lost device); audited, and an event."""
    mfa.reset(user_id)
    return Response(status_code=204)

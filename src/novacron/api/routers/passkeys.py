"""/v1/mfa/webauthn and /v1/tokens/mfa/webauthn: WebAuthn passkeys as a second factor.

Registration is two calls (options, then the browser's credential); the login's second step is
two calls too (options for the password step's ``mfa_token``, then the assertion), answered like
``POST /v1/tokens/mfa``. The relying party is the host the request reached (``identity/passkeys``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.audit import OriginDep
from novacron.api.deps import CtxDep, IdempotencyDep, PrincipalDep, service
from novacron.api.openapi import raises
from novacron.api.routers.mfa import MfaReader, StepUpOut
from novacron.api.session_cookie import set_refresh_cookie, wants_cookie
from novacron.db.models import MfaPasskey
from novacron.identity.passkeys import PasskeyLogin, PasskeyService, Rp

router = APIRouter(tags=["mfa"])

PasskeyReader = Annotated[PasskeyService, Depends(service(PasskeyService, None, write=False))]
PasskeyWriter = Annotated[PasskeyService, Depends(service(PasskeyService, None))]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def rp_of(request: Request) -> Rp:
    """The relying party: the host this request reached, and its origin."""
    return Rp.of(request.url.scheme, request.headers.get("host") or request.url.netloc)


RpDep = Annotated[Rp, Depends(rp_of)]


async def passkey_login(ctx: CtxDep, origin: OriginDep) -> PasskeyLogin:
    """The passkey checker for this request's client address (the throttle counts by it)."""
    return PasskeyLogin(ctx.tokens, origin.source)


LoginDep = Annotated[PasskeyLogin, Depends(passkey_login)]


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: what ``navigator.credentials.create`` returned, as JSON (``PublicKeyCredential.toJSON()``)
    credential: dict[str, Any]
    #: a name to tell your passkeys apart
    name: str = Field(default="Passkey", min_length=1, max_length=64)


class RenameIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)


class PasskeyOut(BaseModel):
    id: str
    name: str
    #: the authenticator's credential id (base64url)
    credential_id: str
    sign_count: int
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, row: MfaPasskey) -> PasskeyOut:
        return cls(
            id=row.id,
            name=row.name,
            credential_id=row.credential_id,
            sign_count=row.sign_count,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
        )


class PasskeyList(BaseModel):
    items: list[PasskeyOut]


class AssertionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: what ``navigator.credentials.get`` returned, as JSON
    credential: dict[str, Any]


class LoginOptionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: the password step's challenge (``POST /v1/tokens``)
    mfa_token: str = Field(min_length=8, max_length=128)


class LoginIn(LoginOptionsIn):
    #: what ``navigator.credentials.get`` returned, as JSON
    credential: dict[str, Any]


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str | None
    token_type: str = "Bearer"
    expires_in: int


@router.post("/v1/mfa/webauthn/register/options")
def passkey_register_options(passkeys: PasskeyWriter, rp: RpDep) -> JSONResponse:
    """Options for ``navigator.credentials.create``; its challenge is good for two minutes, once."""
    return JSONResponse(passkeys.register_options(rp), headers=NO_STORE)


@router.post("/v1/mfa/webauthn/register", status_code=201, response_model=PasskeyOut)
def passkey_register(body: RegisterIn, passkeys: PasskeyWriter, rp: RpDep, idem: IdempotencyDep) -> Response:
    """Store the passkey the browser made for the registration challenge: a second factor."""
    if (replay := idem.replay(body)) is not None:
        return replay
    out = PasskeyOut.of(passkeys.register(rp, body.credential, body.name)).model_dump(mode="json")
    idem.remember(201, out)
    return JSONResponse(out, status_code=201)


@router.get("/v1/mfa/webauthn/credentials", response_model=PasskeyList)
def passkey_list(passkeys: PasskeyReader) -> PasskeyList:
    """Your passkeys."""
    return PasskeyList(items=[PasskeyOut.of(row) for row in passkeys.list()])


@router.patch("/v1/mfa/webauthn/credentials/{passkey_id}", response_model=PasskeyOut)
def passkey_rename(passkey_id: str, body: RenameIn, passkeys: PasskeyWriter) -> PasskeyOut:
    """Rename one of your passkeys."""
    return PasskeyOut.of(passkeys.rename(passkey_id, body.name))


@router.delete("/v1/mfa/webauthn/credentials/{passkey_id}", status_code=204)
def passkey_delete(passkey_id: str, passkeys: PasskeyWriter) -> Response:
    """Remove one of your passkeys (refused for the last factor your tenant requires)."""
    passkeys.delete(passkey_id)
    return Response(status_code=204)


@router.post("/v1/mfa/webauthn/verify/options")
@raises(403, 409)
def passkey_stepup_options(checker: LoginDep, principal: PrincipalDep, rp: RpDep) -> JSONResponse:
    """Step-up with a passkey: options for ``navigator.credentials.get`` (your passkeys)."""
    return JSONResponse(checker.stepup_options(principal, rp), headers=NO_STORE)


@router.post("/v1/mfa/webauthn/verify", response_model=StepUpOut)
@raises(403, 429)
def passkey_stepup(
    body: AssertionIn, checker: LoginDep, principal: PrincipalDep, rp: RpDep, mfa: MfaReader
) -> StepUpOut:
    """Step-up: sign with one of your passkeys; this login session may do sensitive actions for
    5 minutes (like ``POST /v1/mfa/verify`` with a code)."""
    checker.stepup(principal, body.credential, rp)
    return StepUpOut(step_up_until=mfa.status().step_up_until)


@router.post("/v1/tokens/mfa/webauthn/options")
@raises(401, 409)
def passkey_login_options(body: LoginOptionsIn, checker: LoginDep, rp: RpDep) -> JSONResponse:
    """A login's second step with a passkey: options for ``navigator.credentials.get``."""
    return JSONResponse(checker.options(body.mfa_token, rp), headers=NO_STORE)


@router.post("/v1/tokens/mfa/webauthn", response_model=TokensOut)
@raises(401, 429)
def passkey_login_verify(
    body: LoginIn, checker: LoginDep, rp: RpDep, request: Request, origin: OriginDep
) -> JSONResponse:
    """A login's second step: the password step's ``mfa_token`` and an assertion by one of the
    user's passkeys. Refusals count towards the login throttle; the challenge ends after five."""
    try:
        done = checker.redeem_passkey(body.mfa_token, body.credential, rp)
    finally:  # the audit record names the account, refused or not
        if checker.owner is not None:
            user_id, username, tenant_id = checker.owner
            hints = {"actor_id": user_id, "actor_name": username, "resource_id": user_id}
            origin.note.hint(tenant_id=tenant_id, **hints)
    cookie = wants_cookie(request)
    out = TokensOut(
        access_token=done.access_token,
        refresh_token=None if cookie else done.refresh_token,
        expires_in=done.expires_in,
    )
    response = JSONResponse(out.model_dump(), headers=NO_STORE)
    if cookie:
        set_refresh_cookie(response, done.refresh_token, checker.tokens.settings.refresh_token_ttl_s)
    return response

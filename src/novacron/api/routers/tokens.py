"""/v1/tokens and the signing keys: log in, refresh, who am I, sign out; the keys that verify tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Cookie, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from novacron.api.audit import OriginDep
from novacron.api.deps import CtxDep, service
from novacron.api.openapi import raises
from novacron.api.session_cookie import (
    COOKIE,
    check_same_site,
    clear_refresh_cookie,
    set_refresh_cookie,
    wants_cookie,
)
from novacron.identity.grants import Grants
from novacron.identity.login import MfaChallenged
from novacron.identity.sessions import Caller, SessionService, SigningKeyService
from novacron.identity.tokens import unauthorized

router = APIRouter(tags=["tokens"])

SessionReader = Annotated[SessionService, Depends(service(SessionService, None, write=False))]
SessionWriter = Annotated[SessionService, Depends(service(SessionService, None))]
KeyRotator = Annotated[SigningKeyService, Depends(service(SigningKeyService, "key:rotate"))]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _unicode(value: str) -> str:
    # JSON may carry lone surrogates ("\ud800"): they cannot be hashed or stored, so 422, not 500
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogate code points)") from None
    return value


Text = Annotated[str, AfterValidator(_unicode)]


class PasswordGrant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grant_type: Literal["password"] = "password"
    username: Text = Field(min_length=1, max_length=64)
    password: Text = Field(min_length=1, max_length=1024)
    #: your tenant (name or id), unless you are a platform user or in tenant "default"; or write
    #: the username as name@tenant (identity/lookup.py)
    tenant: Text | None = Field(None, min_length=1, max_length=64)


class SecondFactorGrant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: the ``mfa_token`` of the password step's answer
    mfa_token: str = Field(min_length=1, max_length=128)
    #: the 6 digits of your authenticator app, or one of your recovery codes
    code: str = Field(pattern=r"^[0-9A-Za-z -]{6,24}$")


class MfaChallengeOut(BaseModel):
    #: always true: the password was right, now send a code to POST /v1/tokens/mfa
    mfa_required: bool = True
    #: good for ``expires_in`` seconds and a few wrong codes
    mfa_token: str
    expires_in: int
    methods: list[str] = ["totp", "recovery_code"]


class RefreshGrant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=1, max_length=256)


class TokenOut(BaseModel):
    access_token: str
    #: null when it was set as the dashboard's HttpOnly cookie instead (``X-Requested-With`` sent)
    refresh_token: str | None
    token_type: str = "Bearer"
    #: seconds until the access token expires
    expires_in: int


class WhoAmI(BaseModel):
    user_id: str
    username: str
    role: str
    tenant_id: str | None
    tenant_name: str | None
    permissions: list[str]
    token_id: str
    expires_at: datetime | None
    #: your tenant requires a second factor you have not enrolled: this token may only enrol one
    mfa_enrol_required: bool = False

    @classmethod
    def of(cls, caller: Caller) -> WhoAmI:
        principal = caller.principal
        exp = principal.extra.get("exp")
        return cls(
            user_id=principal.user_id,
            username=principal.username,
            role=principal.role,
            tenant_id=principal.tenant_id,
            tenant_name=caller.tenant_name,
            permissions=sorted(principal.permissions),
            token_id=principal.token_id,
            expires_at=datetime.fromtimestamp(int(exp), UTC) if exp else None,
            mfa_enrol_required=principal.extra.get("mfa") == "enrol",
        )


def _token_response(
    access: str, refresh: str, expires_in: int, *, cookie_ttl: int | None = None
) -> JSONResponse:
    """The tokens in JSON; with ``cookie_ttl`` the refresh token goes into the cookie only."""
    in_body = refresh if cookie_ttl is None else None
    out = TokenOut(access_token=access, refresh_token=in_body, expires_in=expires_in)
    response = JSONResponse(out.model_dump(), headers=NO_STORE)
    if cookie_ttl is not None:
        set_refresh_cookie(response, refresh, cookie_ttl)
    return response


async def grants(ctx: CtxDep, origin: OriginDep) -> Grants:
    """The grants of a caller without a token yet (async: no thread-pool hop)."""
    return Grants(ctx.tokens, origin)


GrantsDep = Annotated[Grants, Depends(grants)]


@router.post("/v1/tokens", response_model=TokenOut | MfaChallengeOut)
async def create_token(body: PasswordGrant, grants: GrantsDep, request: Request) -> JSONResponse:
    """Log in with username and password; returns an access token and a refresh token.

    A user of a tenant other than ``default`` names it: ``tenant`` (its name or id), or the
    username written ``name@tenant``. Without either, only platform users and users of tenant
    ``default`` are looked at; an unknown tenant is answered like an unknown user.

    Failed logins are throttled per account and per client address: after a few, each further
    try must wait longer (429 with ``Retry-After``), whether or not the password is right.

    With an ``X-Requested-With`` header (the dashboard) the refresh token is set as an HttpOnly,
    Secure, SameSite=Strict cookie for ``/v1/tokens/refresh`` only and ``refresh_token`` is null.

    A user with a second factor gets no tokens here but ``mfa_required`` and an ``mfa_token``
    to send with a code to ``POST /v1/tokens/mfa``."""
    done = await grants.password(body.username, body.password, body.tenant)
    if isinstance(done, MfaChallenged):
        out = MfaChallengeOut(mfa_token=done.mfa_token, expires_in=done.expires_in)
        return JSONResponse(out.model_dump(), headers=NO_STORE)
    ttl = grants.tokens.settings.refresh_token_ttl_s if wants_cookie(request) else None
    return _token_response(done.access_token, done.refresh_token, done.expires_in, cookie_ttl=ttl)


@router.post("/v1/tokens/mfa", response_model=TokenOut)
@raises(401, 429)  # MfaCodes.redeem: an expired challenge or a wrong code; the login throttle
def second_factor(body: SecondFactorGrant, grants: GrantsDep, request: Request) -> JSONResponse:
    """A login's second step: the password step's ``mfa_token`` and a TOTP code (or a recovery
    code, single use). Wrong codes count towards the login throttle; the challenge ends after five."""
    done = grants.second_factor(body.mfa_token, body.code)
    ttl = grants.tokens.settings.refresh_token_ttl_s if wants_cookie(request) else None
    return _token_response(done.access_token, done.refresh_token, done.expires_in, cookie_ttl=ttl)


# not named refresh_token: the OpenAPI builder follows names, and the tokens' attribute of that
# name would lend the login this endpoint's 403; the operation id stays the one clients know
@router.post(
    "/v1/tokens/refresh",
    response_model=TokenOut,
    operation_id="refresh_token_v1_tokens_refresh_post",
    summary="Refresh Token",
)
def trade_refresh_token(
    grants: GrantsDep,
    request: Request,
    body: RefreshGrant | None = None,
    cookie: Annotated[str | None, Cookie(alias=COOKIE, max_length=256)] = None,
) -> JSONResponse:
    """Trade a refresh token (single use) for a new access token and a new refresh token.

    The token comes in the JSON body, or, without a body, from the dashboard's session cookie:
    then the request must carry ``X-Requested-With`` and come from this site (``Origin``,
    ``Sec-Fetch-Site``), else 403, and the new refresh token replaces the cookie.

    Presenting a refresh token that was already used ends its login session (not the user's
    others) and is recorded as a security event naming the user."""
    if body is not None:
        done = grants.refresh(body.refresh_token)
        return _token_response(done.access_token, done.refresh_token, done.expires_in)
    check_same_site(request)
    if not cookie:
        raise unauthorized("No refresh token: send one in the body, or sign in to the dashboard again.")
    done = grants.refresh(cookie)
    ttl = grants.tokens.settings.refresh_token_ttl_s
    return _token_response(done.access_token, done.refresh_token, done.expires_in, cookie_ttl=ttl)


@router.get("/v1/tokens/current", response_model=WhoAmI)
def whoami(sessions: SessionReader) -> WhoAmI:
    """Who the token belongs to, with its role, tenant and permissions."""
    return WhoAmI.of(sessions.whoami())


@router.delete("/v1/tokens/current", status_code=204)
def logout(sessions: SessionWriter) -> Response:
    """Sign out: the access token is refused from now on and its session's refresh token is deleted.

    A node's credential is not a session: it stays valid until an administrator revokes it
    (``POST /v1/hosts/{id}/revoke``), so it is refused here instead of answering 204 and working on."""
    sessions.logout()
    response = Response(status_code=204)
    clear_refresh_cookie(response)  # the dashboard's copy of the refresh token, now deleted anyway
    return response


@router.get("/.well-known/jwks.json")
def jwks_well_known(ctx: CtxDep) -> JSONResponse:
    """The public keys that verify NovaCron access tokens (RFC 7517)."""
    return JSONResponse(ctx.tokens.keys.jwks(), headers={"Cache-Control": "public, max-age=300"})


@router.get("/v1/jwks")
def jwks(ctx: CtxDep) -> JSONResponse:
    """Same as ``/.well-known/jwks.json``."""
    return jwks_well_known(ctx)


class RotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alg: Literal["ES256", "RS256"] = "ES256"


class SigningKeyOut(BaseModel):
    kid: str
    alg: str
    created_at: datetime


@router.post("/v1/signing-keys/rotate", status_code=201, response_model=SigningKeyOut)
def rotate_keys(keys: KeyRotator, body: RotateRequest | None = None) -> SigningKeyOut:
    """New tokens are signed with a new key; the old key keeps verifying until its tokens expire."""
    key = keys.rotate(body.alg if body else "ES256")
    return SigningKeyOut(kid=key.kid, alg=key.alg, created_at=key.created_at)

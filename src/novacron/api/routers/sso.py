"""/v1/sso: single sign-on at a tenant's identity provider (``identity/sso.py``).

The dashboard's button sends the browser to ``GET /v1/sso/authorize``, which redirects it to the
provider; the provider sends it back to ``GET /v1/sso/callback``, which sets the dashboard's
session cookie (``api/session_cookie.py``) and redirects to the dashboard. The CLI uses the device
authorization grant: ``POST /v1/sso/device``, then ``POST /v1/sso/device/token`` every
``interval`` seconds until the user approved. ``POST /v1/sso/logout`` ends the session and names
the provider's end-session URL (RP-initiated logout) when it has one.

A browser sign-in is bound to the browser that began it: ``authorize`` sets a cookie holding its
``state`` (HttpOnly, Secure, SameSite=Lax, for the callback's path only) and the callback refuses a
``state`` that is not the cookie's, so a callback URL begun by someone else (login CSRF: signing
the victim into the attacker's account) goes nowhere.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Cookie, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.audit import OriginDep
from novacron.api.deps import CtxDep, service
from novacron.api.openapi import raises
from novacron.api.routers.tokens import NO_STORE, TokenOut, _token_response
from novacron.api.session_cookie import clear_refresh_cookie, set_refresh_cookie
from novacron.errors import Unauthenticated, Unavailable
from novacron.identity.grants import Origin
from novacron.identity.sessions import SessionService
from novacron.identity.sso import LOGIN_TTL_S, SignedOn, SsoLogins

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/sso", tags=["sso"])
NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
#: the state of the sign-in this browser began (checked against the callback's)
STATE_COOKIE = "novacron_sso_state"
SessionWriter = Annotated[SessionService, Depends(service(SessionService, None))]


async def sso_logins(ctx: CtxDep) -> SsoLogins:
    return SsoLogins(ctx.tokens)


LoginsDep = Annotated[SsoLogins, Depends(sso_logins)]


def _note(origin: Origin, done: SignedOn) -> None:
    owner = done.owner
    origin.note.hint(
        actor_id=owner.user_id,
        actor_name=owner.username,
        tenant_id=owner.tenant_id,
        resource_id=owner.user_id,
    )


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host') or request.url.netloc}"


class SignInProvider(BaseModel):
    name: str
    display_name: str
    preset: str


@router.get("/providers", response_model=list[SignInProvider])
async def sign_in_providers(
    logins: LoginsDep, tenant: Annotated[str, Query(min_length=1, max_length=64)] = "default"
) -> list[SignInProvider]:
    """The identity providers a tenant's users may sign in with (for the sign-in page; no token)."""
    return [
        SignInProvider(name=name, display_name=display, preset=preset)
        for name, display, preset in await logins.providers(tenant)
    ]


@router.get("/authorize", status_code=302, response_class=RedirectResponse)
@raises(404, 503)
async def authorize(
    logins: LoginsDep,
    request: Request,
    provider: Annotated[str, Query(pattern=NAME)],
    tenant: Annotated[str, Query(min_length=1, max_length=64)] = "default",
) -> RedirectResponse:
    """Begin signing in at ``provider`` (authorization code with PKCE): redirects to the provider."""
    url = await logins.begin_browser(tenant, provider, _base(request) + "/v1/sso/callback")
    response = RedirectResponse(url, status_code=302, headers=NO_STORE)
    # binds the sign-in to this browser: a callback URL someone else began (login CSRF: their code,
    # their account) is refused. Lax, not Strict: the provider's redirect back is a cross-site GET.
    state = parse_qs(urlsplit(url).query).get("state", [""])[0]
    response.set_cookie(
        STATE_COOKIE,
        state,
        max_age=LOGIN_TTL_S,
        path="/v1/sso/callback",
        secure=True,
        httponly=True,
        samesite="lax",
    )
    return response


@router.get("/callback", status_code=303, response_class=RedirectResponse)
async def callback(
    logins: LoginsDep,
    origin: OriginDep,
    state: Annotated[str, Query(min_length=1, max_length=256)],
    code: Annotated[str | None, Query(max_length=2048)] = None,
    error: Annotated[str | None, Query(pattern=r"^[\x20-\x7e]{1,256}$")] = None,
    bound: Annotated[str | None, Cookie(alias=STATE_COOKIE, max_length=256)] = None,
) -> RedirectResponse:
    """Where the provider sends the browser back: the dashboard's session starts (its cookie is
    set) and the browser goes on to the dashboard; a refused sign-in goes back to the sign-in page
    with ``sso_error`` naming why (``provider``, ``browser``, ``refused``, ``unavailable``)."""
    if error or not code:
        return _back_to_sign_in("provider", f"the provider answered error={error!r}")
    if not secrets.compare_digest((bound or "").encode(), state.encode()):
        return _back_to_sign_in("browser", "no state cookie, or another one")
    try:
        done = await logins.finish_browser(state, code)
    except Unauthenticated as exc:
        origin.note.hint(actor_name="(single sign-on)")
        return _back_to_sign_in("refused", str(exc))
    except Unavailable as exc:
        return _back_to_sign_in("unavailable", str(exc))
    _note(origin, done)
    response = RedirectResponse("/", status_code=303, headers=NO_STORE)
    response.delete_cookie(STATE_COOKIE, path="/v1/sso/callback", secure=True, httponly=True, samesite="lax")
    set_refresh_cookie(response, done.refresh_token, logins.tokens.settings.refresh_token_ttl_s)
    return response


def _back_to_sign_in(code: str, detail: str) -> RedirectResponse:
    """To the sign-in page, which says what ``code`` means in its own words: the URL carries no
    text of ours (anyone can make such a URL, and the page must not repeat what it says)."""
    log.info("single sign-on refused (%s): %s", code, detail)
    return RedirectResponse(f"/?sso_error={code}", status_code=303, headers=NO_STORE)


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: str = Field(pattern=NAME)
    tenant: str = Field("default", min_length=1, max_length=64)


class DeviceOut(BaseModel):
    #: send it to POST /v1/sso/device/token; whoever holds it gets the session: keep it secret
    handle: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    interval: int
    expires_in: int


class DeviceTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    handle: str = Field(min_length=1, max_length=128)


class DevicePending(BaseModel):
    #: always true: the user has not approved yet; ask again after ``interval`` seconds
    pending: bool = True


@router.post("/device", response_model=DeviceOut)
@raises(404, 503)
async def device(body: DeviceIn, logins: LoginsDep) -> DeviceOut:
    """Begin a device sign-in (RFC 8628, for the CLI): the user enters ``user_code`` at
    ``verification_uri`` while the CLI polls ``POST /v1/sso/device/token`` with ``handle``."""
    start = await logins.begin_device(body.tenant, body.provider)
    return DeviceOut(**start.__dict__)


@router.post("/device/token", response_model=TokenOut, responses={202: {"model": DevicePending}})
@raises(401, 503)
async def device_token(body: DeviceTokenIn, logins: LoginsDep, origin: OriginDep) -> JSONResponse:
    """The session's tokens once the user approved at the provider (202 while not yet)."""
    done = await logins.poll_device(body.handle)
    if done is None:
        return JSONResponse(DevicePending().model_dump(), status_code=202, headers=NO_STORE)
    _note(origin, done)
    return _token_response(done.access_token, done.refresh_token, done.expires_in)


class LogoutOut(BaseModel):
    #: the provider's end-session URL to send the browser to (RP-initiated logout), or null
    end_session_url: str | None


@router.post("/logout", response_model=LogoutOut)
async def logout(sessions: SessionWriter, logins: LoginsDep, request: Request) -> Response:
    """Sign out like ``DELETE /v1/tokens/current``; for a user signed on with a provider that
    advertises an ``end_session_endpoint``, also where to sign out there."""
    user_id = sessions.principal.user_id
    sessions.logout()
    url = (
        await logins.end_session_url(user_id, _base(request) + "/")
        if sessions.principal.kind == "user"
        else None
    )
    response = JSONResponse(LogoutOut(end_session_url=url).model_dump(), headers=NO_STORE)
    clear_refresh_cookie(response)
    return response

"""The relying party's side of OpenID Connect and OAuth 2.0 (Authlib), every request through the
egress guard.

Authlib builds the protocol messages (the authorization URL, PKCE's S256 challenge, the token
requests) and checks the ID token's claims (``CodeIDToken``: issuer, audience, expiry, nonce,
``at_hash``); joserfc (Authlib's JOSE library) verifies its signature with the provider's JWKS.
The HTTP requests themselves go through ``novacron.netguard`` like every outbound request made on a
tenant's behalf: the provider's address is checked and pinned, an internal one is refused.

A provider is described by its endpoints (``Endpoints``): read from the OpenID discovery document
(``ISSUER/.well-known/openid-configuration``), or fixed for GitHub, which speaks OAuth 2.0 only (no
ID token; the identity comes from ``api.github.com/user``).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from novacron import netguard

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
TIMEOUT_S = 15.0
MAX_BODY = 1 << 20
#: discovery documents and key sets, by URL: (fetched at, document)
_cache: dict[str, tuple[float, dict[str, Any]]] = {}
CACHE_S = 300.0


class ProviderError(Exception):
    """The provider refused or could not be reached; ``error`` is its OAuth error code if it said one."""

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error


@dataclass(frozen=True)
class Endpoints:
    issuer: str
    authorization: str
    token: str
    userinfo: str | None
    jwks: str | None
    device: str | None
    end_session: str | None
    #: False for GitHub: OAuth 2.0 without ID tokens
    oidc: bool = True


GITHUB = Endpoints(
    issuer="https://github.com",
    authorization="https://github.com/login/oauth/authorize",
    token="https://github.com/login/oauth/access_token",
    userinfo="https://api.github.com/user",
    jwks=None,
    device="https://github.com/login/device/code",
    end_session=None,
    oidc=False,
)


@dataclass(frozen=True)
class Client:
    """One tenant's registration at one provider."""

    endpoints: Endpoints
    client_id: str
    client_secret: str
    policy: netguard.EgressPolicy

    # -- transport ---------------------------------------------------------------------------

    async def _call(
        self, method: str, url: str, *, form: dict[str, str] | None = None, bearer: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Accept": "application/json"}
        content = None
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            basic = f"{self.client_id}:{self.client_secret}".encode()  # RFC 6749 2.3.1
            headers["Authorization"] = "Basic " + base64.b64encode(basic).decode()
            content = urlencode(form).encode()
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        return await fetch_json(method, url, self.policy, content=content, headers=headers)

    # -- browser: authorization code with PKCE -----------------------------------------------

    def authorization_url(
        self, redirect_uri: str, scopes: list[str], params: dict[str, str] | None = None
    ) -> tuple[str, dict[str, str]]:
        """The URL to send the browser to, and what the callback must match (state, nonce,
        the PKCE verifier). ``params``: a provider's own extra parameters."""
        pending = {"state": generate_token(43), "nonce": generate_token(32), "verifier": generate_token(64)}
        extra: dict[str, str] = dict(params or {})
        if self.endpoints.oidc:
            extra |= {
                "nonce": pending["nonce"],
                "code_challenge": create_s256_code_challenge(pending["verifier"]),
                "code_challenge_method": "S256",
            }
        url = prepare_grant_uri(
            self.endpoints.authorization,
            self.client_id,
            "code",
            redirect_uri,
            " ".join(scopes),
            pending["state"],
            **extra,
        )
        return url, pending

    async def exchange_code(self, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if self.endpoints.oidc:
            form["code_verifier"] = verifier
        return await self._tokens(form)

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        return await self._tokens({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def _tokens(self, form: dict[str, str]) -> dict[str, Any]:
        status, body = await self._call("POST", self.endpoints.token, form=form)
        if status >= 500:  # the provider failing is not the provider refusing
            raise ProviderError(f"the provider's token endpoint failed (HTTP {status})")
        if status != 200 or "error" in body or "access_token" not in body:
            error = str(body.get("error") or f"HTTP {status}")
            raise ProviderError(f"the provider's token endpoint refused: {error}", error)
        return body

    # -- the CLI: device authorization grant (RFC 8628) --------------------------------------

    async def device_authorization(self, scopes: list[str]) -> dict[str, Any]:
        if not self.endpoints.device:
            raise ProviderError("the provider offers no device authorization endpoint")
        form = {"client_id": self.client_id, "scope": " ".join(scopes)}
        status, body = await self._call("POST", self.endpoints.device, form=form)
        if status != 200 or "device_code" not in body:
            raise ProviderError(f"the provider refused the device authorization: {body.get('error', status)}")
        return body

    async def poll_device(self, device_code: str) -> dict[str, Any] | None:
        """The tokens once the user approved, None while it has not (``authorization_pending``,
        ``slow_down``); ProviderError when it was denied or expired."""
        form = {"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": self.client_id}
        try:
            return await self._tokens(form)
        except ProviderError as exc:
            if exc.error in ("authorization_pending", "slow_down"):
                return None
            raise

    # -- identity ----------------------------------------------------------------------------

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        if not self.endpoints.userinfo:
            raise ProviderError("the provider offers no userinfo endpoint")
        status, body = await self._call("GET", self.endpoints.userinfo, bearer=access_token)
        if status in (401, 403):
            raise ProviderError(
                f"the provider's userinfo endpoint refused the token (HTTP {status})", "userinfo"
            )
        if status != 200:
            raise ProviderError(f"the provider's userinfo endpoint failed (HTTP {status})")
        return body

    async def id_token_claims(self, tokens: dict[str, Any], nonce: str | None) -> dict[str, Any]:
        """The ID token's verified claims: signature (the provider's JWKS), issuer, audience,
        expiry, ``nonce`` (when one was sent) and ``at_hash``."""
        raw = tokens.get("id_token")
        if not isinstance(raw, str) or not self.endpoints.jwks:
            raise ProviderError("the provider returned no ID token")
        keys = KeySet.import_key_set(await cached_json(self.endpoints.jwks, self.policy))  # type: ignore[arg-type]
        try:
            token = jwt.decode(raw, keys, algorithms=["RS256", "PS256", "ES256", "EdDSA"])
            params: dict[str, Any] = {"client_id": self.client_id, "access_token": tokens.get("access_token")}
            if nonce is not None:
                params["nonce"] = nonce
            options = {"iss": {"essential": True, "value": self.endpoints.issuer}, "aud": {"essential": True}}
            claims = CodeIDToken(token.claims, token.header, options, params)
            claims.validate(now=int(time.time()), leeway=60)
        except (JoseError, ValueError) as exc:  # authlib's claim errors are JoseError too
            raise ProviderError(f"the provider's ID token was refused: {exc}") from exc
        if self.client_id not in _audiences(token.claims.get("aud")):
            raise ProviderError("the provider's ID token is for another client")
        return dict(token.claims)


def _audiences(aud: Any) -> list[str]:
    return [aud] if isinstance(aud, str) else [str(a) for a in aud or []]


async def fetch_json(
    method: str,
    url: str,
    policy: netguard.EgressPolicy,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """(status, JSON object) of one request through the egress guard; ProviderError when the
    target is refused, unreachable or answers something else than a JSON object."""
    try:
        async with netguard.request(
            method, url, policy, content=content, headers=headers, timeout=TIMEOUT_S
        ) as response:
            body = await response.aread()
            status = response.status_code
    except netguard.EgressDenied as exc:
        raise ProviderError(f"the provider's address is refused: {exc}") from exc
    except (netguard.FetchFailed, OSError) as exc:
        raise ProviderError(f"the provider could not be reached at {netguard.safe_url(url)}") from exc
    try:
        data = json.loads(body[:MAX_BODY]) if body else {}
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ProviderError(
            f"the provider answered {netguard.safe_url(url)} with HTTP {status} and no JSON object"
        )
    return status, data


async def cached_json(url: str, policy: netguard.EgressPolicy) -> dict[str, Any]:
    """A discovery document or key set, fetched at most every ``CACHE_S``."""
    hit = _cache.get(url)
    if hit is not None and time.monotonic() - hit[0] < CACHE_S:
        return hit[1]
    status, data = await fetch_json("GET", url, policy)
    if status != 200:
        raise ProviderError(f"{netguard.safe_url(url)} answered HTTP {status}")
    _cache[url] = (time.monotonic(), data)
    return data


async def discover(issuer: str, policy: netguard.EgressPolicy) -> Endpoints:
    """The provider's endpoints from its discovery document, which must name the same issuer."""
    doc = await cached_json(issuer.rstrip("/") + "/.well-known/openid-configuration", policy)
    if doc.get("issuer") != issuer:
        raise ProviderError(f"the discovery document names issuer {doc.get('issuer')!r}, not {issuer!r}")
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(doc.get(key), str):
            raise ProviderError(f"the discovery document has no {key}")
    return Endpoints(
        issuer=issuer,
        authorization=doc["authorization_endpoint"],
        token=doc["token_endpoint"],
        userinfo=doc.get("userinfo_endpoint"),
        jwks=doc["jwks_uri"],
        device=doc.get("device_authorization_endpoint"),
        end_session=doc.get("end_session_endpoint"),
    )

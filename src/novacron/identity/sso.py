"""Single sign-on: signing in at a tenant's identity provider, for the dashboard and the CLI.

**Dashboard** (authorization code with PKCE): ``begin_browser`` stores the sign-in under way
(keyed by the SHA-256 of its ``state``; the PKCE verifier and the nonce sealed), valid ten
minutes, and answers the provider's authorization URL. The provider sends the browser back to
``/v1/sso/callback`` with ``code`` and ``state``: ``finish_browser`` takes the sign-in (single use,
so a replayed callback finds nothing), trades the code with the verifier, verifies the ID token
(signature, issuer, audience, expiry, nonce) and issues the platform's normal login session.

**CLI** (device authorization grant, RFC 8628): ``begin_device`` asks the provider for a device
code and answers the user code and where to enter it, with a random handle the CLI polls
``poll_device`` with; the device code never leaves the server.

**Users** are created just in time on their first sign-on, in the provider's tenant, named by
the provider's username claim, with the role of their groups (``sso_providers.role_of``) set
again at every sign-on. A local user of the same name is never taken over. Their password is
unusable: they sign on with the provider only.

**Refresh re-checks at the provider.** The provider's tokens are kept sealed with the user's link
(``SsoLink``). Each refresh of a signed-on user's platform session first asks the provider again
(its refresh token grant, then its userinfo endpoint with the new access token): a user the
provider disabled or deleted (or a provider the tenant deleted or disabled) ends that session
there and then; the role follows the user's groups. A provider that cannot be reached answers 503
and ends nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import delete, select

from novacron import events, netguard
from novacron.db.base import new_id, utcnow
from novacron.db.models import IdentityProvider, RefreshToken, SsoLink, SsoLogin, Tenant, User
from novacron.errors import InvalidInput, NotFound, Unavailable
from novacron.identity import sso_client
from novacron.identity.encryption import encryption_for
from novacron.identity.sso_providers import AUTH_PARAMS, client_of, endpoints_of, public_providers, role_of
from novacron.identity.tokens import Owner, TokenService, hash_refresh_token, unauthorized

LOGIN_TTL_S = 600
#: the password hash of a user who signs on with a provider only: no password ever matches it
NO_PASSWORD = "!sso"
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")


def _key(handle: str) -> str:
    return hashlib.sha256(handle.encode()).hexdigest()


def login_aad(login_id: str) -> str:
    return f"sso_logins.secret:{login_id}"


def link_aad(user_id: str) -> str:
    """What a user's sealed provider tokens are bound to."""
    return f"sso_links.tokens:{user_id}"


@dataclass(frozen=True)
class SignedOn:
    access_token: str
    refresh_token: str
    expires_in: int
    owner: Owner


@dataclass(frozen=True)
class DeviceStart:
    handle: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    interval: int
    expires_in: int


class SsoLogins:
    """Sign-ons for callers without a token yet (like ``grants.Grants``)."""

    def __init__(self, tokens: TokenService) -> None:
        self.tokens = tokens
        self.db = tokens.db
        self.enc = encryption_for(tokens.settings)

    # -- the provider ------------------------------------------------------------------------

    def _provider(self, tenant: str, name: str) -> IdentityProvider:
        with self.db.read_session() as s:
            tenant_id = s.scalar(select(Tenant.id).where((Tenant.name == tenant) | (Tenant.id == tenant)))
            provider = s.scalar(
                select(IdentityProvider).where(
                    IdentityProvider.tenant_id == tenant_id,
                    IdentityProvider.name == name,
                    IdentityProvider.enabled,
                )
            )
            if provider is None:
                raise NotFound(
                    "identity provider", name, detail=f"Tenant '{tenant}' has no provider '{name}'."
                )
            s.expunge(provider)
            return provider

    async def _client(self, provider: IdentityProvider) -> sso_client.Client:
        settings = self.tokens.settings
        policy = netguard.EgressPolicy.from_settings(settings)
        try:
            endpoints = await endpoints_of(provider.preset, provider.issuer, policy)
        except sso_client.ProviderError as exc:
            raise Unavailable(f"The identity provider '{provider.name}' is unavailable: {exc}") from exc
        return client_of(provider, settings, endpoints)

    async def providers(self, tenant: str) -> list[tuple[str, str, str]]:
        """(name, display name, preset) of the tenant's enabled providers, for its sign-in page."""

        def read() -> list[tuple[str, str, str]]:
            with self.db.read_session() as s:
                return [(p.name, p.display_name, p.preset) for p in public_providers(s, tenant)]

        return await asyncio.to_thread(read)

    # -- dashboard ---------------------------------------------------------------------------

    async def begin_browser(self, tenant: str, name: str, redirect_uri: str) -> str:
        """The provider's authorization URL for a new sign-in (stored for the callback)."""
        provider = self._provider(tenant, name)
        client = await self._client(provider)
        url, pending = client.authorization_url(
            redirect_uri, provider.scopes, AUTH_PARAMS.get(provider.preset)
        )
        login_id = _key(pending["state"])
        secret = json.dumps({"nonce": pending["nonce"], "verifier": pending["verifier"]})
        with self.db.session() as s:
            s.execute(delete(SsoLogin).where(SsoLogin.expires_at < utcnow()))
            s.add(
                SsoLogin(
                    id=login_id,
                    provider_id=provider.id,
                    kind="browser",
                    secret=self.enc.seal_text(secret, login_aad(login_id)),
                    redirect_uri=redirect_uri,
                    expires_at=utcnow() + timedelta(seconds=LOGIN_TTL_S),
                )
            )
        return url

    def _take(self, handle: str, kind: str) -> tuple[SsoLogin, IdentityProvider, dict[str, Any]]:
        """The sign-in under way named by ``handle`` (deleted: single use), its provider, its secret."""
        with self.db.session() as s:
            login = s.get(SsoLogin, _key(handle))
            if login is None or login.kind != kind or login.expires_at <= utcnow():
                raise unauthorized("This sign-in is unknown, was used already or expired; sign in again.")
            provider = s.get(IdentityProvider, login.provider_id)
            if provider is None or not provider.enabled:
                raise unauthorized("The identity provider of this sign-in was removed or disabled.")
            secret = json.loads(self.enc.open_text(login.secret, login_aad(login.id)))
            s.delete(login)
            s.flush()
            s.expunge(login)
            s.expunge(provider)
            return login, provider, secret

    async def finish_browser(self, state: str, code: str) -> SignedOn:
        """The platform session for the provider's answer to a sign-in begun here."""
        login, provider, secret = await asyncio.to_thread(self._take, state, "browser")
        client = await self._client(provider)
        try:
            tokens = await client.exchange_code(code, login.redirect_uri or "", secret["verifier"])
            claims = await self._identity(client, tokens, secret["nonce"])
        except sso_client.ProviderError as exc:
            raise unauthorized(f"Sign-in at '{provider.name}' failed: {exc}") from exc
        return await asyncio.to_thread(self._sign_on, provider, claims, tokens)

    async def _identity(
        self, client: sso_client.Client, tokens: dict[str, Any], nonce: str | None
    ) -> dict[str, Any]:
        """The user's claims: the verified ID token's, completed by userinfo (groups often are
        there only); GitHub: its user API alone."""
        if not client.endpoints.oidc:
            info = await client.userinfo(tokens["access_token"])
            return {**info, "sub": str(info.get("id", ""))}
        claims = await client.id_token_claims(tokens, nonce)
        if client.endpoints.userinfo:
            info = await client.userinfo(tokens["access_token"])
            if info.get("sub") != claims["sub"]:
                raise sso_client.ProviderError("userinfo is about another subject than the ID token")
            claims = {**info, **claims}
        return claims

    # -- the CLI: device authorization -------------------------------------------------------

    async def begin_device(self, tenant: str, name: str) -> DeviceStart:
        provider = self._provider(tenant, name)
        client = await self._client(provider)
        try:
            answer = await client.device_authorization(provider.scopes)
        except sso_client.ProviderError as exc:
            raise InvalidInput("provider", str(exc)) from exc
        handle = "ncd_" + secrets.token_urlsafe(32)
        login_id = _key(handle)
        expires_in = min(int(answer.get("expires_in") or LOGIN_TTL_S), LOGIN_TTL_S)
        with self.db.session() as s:
            s.execute(delete(SsoLogin).where(SsoLogin.expires_at < utcnow()))
            s.add(
                SsoLogin(
                    id=login_id,
                    provider_id=provider.id,
                    kind="device",
                    secret=self.enc.seal_text(
                        json.dumps({"device_code": answer["device_code"]}), login_aad(login_id)
                    ),
                    expires_at=utcnow() + timedelta(seconds=expires_in),
                )
            )
        return DeviceStart(
            handle=handle,
            user_code=str(answer.get("user_code", "")),
            verification_uri=str(answer.get("verification_uri") or answer.get("verification_url") or ""),
            verification_uri_complete=answer.get("verification_uri_complete"),
            interval=int(answer.get("interval") or 5),
            expires_in=expires_in,
        )

    async def poll_device(self, handle: str) -> SignedOn | None:
        """The platform session once the user approved at the provider; None while pending."""
        login, provider, secret = await asyncio.to_thread(self._peek, handle)
        client = await self._client(provider)
        try:
            tokens = await client.poll_device(secret["device_code"])
            if tokens is None:
                return None
            claims = await self._identity(client, tokens, None)
        except sso_client.ProviderError as exc:
            await asyncio.to_thread(self._drop, login.id)
            raise unauthorized(f"Sign-in at '{provider.name}' failed: {exc}") from exc
        await asyncio.to_thread(self._drop, login.id)
        return await asyncio.to_thread(self._sign_on, provider, claims, tokens)

    def _peek(self, handle: str) -> tuple[SsoLogin, IdentityProvider, dict[str, Any]]:
        with self.db.read_session() as s:
            login = s.get(SsoLogin, _key(handle))
            if login is None or login.kind != "device" or login.expires_at <= utcnow():
                raise unauthorized(
                    "This device sign-in is unknown, was used already or expired; start again."
                )
            provider = s.get(IdentityProvider, login.provider_id)
            if provider is None or not provider.enabled:
                raise unauthorized("The identity provider of this sign-in was removed or disabled.")
            secret = json.loads(self.enc.open_text(login.secret, login_aad(login.id)))
            s.expunge_all()
            return login, provider, secret

    def _drop(self, login_id: str) -> None:
        with self.db.session() as s:
            s.execute(delete(SsoLogin).where(SsoLogin.id == login_id))

    # -- users -------------------------------------------------------------------------------

    def _sign_on(
        self, provider: IdentityProvider, claims: dict[str, Any], tokens: dict[str, Any]
    ) -> SignedOn:
        """The user of these claims (created just in time, its role from its groups), linked to
        the provider account, and a new platform session for it."""
        subject = str(claims.get("sub") or "")
        raw = claims.get(provider.username_claim)
        username = str(raw).lower() if raw else ""
        if not subject or not _USERNAME.match(username):
            raise unauthorized(
                f"The provider's '{provider.username_claim}' claim ({raw!r}) is not a usable username "
                "(lowercase letters, digits, . _ @ -); fix the provider's username claim."
            )
        groups = _groups(claims.get(provider.groups_claim)) if provider.groups_claim else []
        role = role_of(provider, groups)
        if role is None:
            raise unauthorized(f"None of your groups at '{provider.name}' gives access to this tenant.")
        with self.db.session() as s:
            link = s.scalar(
                select(SsoLink).where(SsoLink.provider_id == provider.id, SsoLink.subject == subject)
            )
            user = s.get(User, link.user_id) if link is not None else None
            if user is None:
                if s.scalar(
                    select(User.id).where(User.tenant_id == provider.tenant_id, User.username == username)
                ):
                    raise unauthorized(
                        f"A user named '{username}' already exists in this tenant and is not linked to "
                        f"'{provider.name}'; an administrator must rename or delete it first."
                    )
                user = User(
                    id=new_id("user"), username=username, password_hash=NO_PASSWORD, role=role,
                    tenant_id=provider.tenant_id,
                )  # fmt: skip
                s.add(user)
                s.flush()
                link = SsoLink(user_id=user.id, provider_id=provider.id, subject=subject, tokens="")
                s.add(link)
                events.publish(
                    s, "user.created", "user", user.id, tenant_id=user.tenant_id, username=username,
                    role=role, identity_provider=provider.name,
                )  # fmt: skip
            if user.disabled:
                raise unauthorized(f"The account '{user.username}' is disabled; ask an administrator.")
            assert link is not None
            user.role = role
            link.tokens = self._seal_tokens(user.id, tokens, None)
            link.checked_at = utcnow()
            access, refresh, ttl = self.tokens.issue(s, user)
            # the browser's callback is a GET, which the audit log does not record: the event does
            events.publish(
                s, "user.signed_on", "user", user.id, tenant_id=user.tenant_id, username=user.username,
                role=role, identity_provider=provider.name,
            )  # fmt: skip
            return SignedOn(access, refresh, ttl, Owner.of(user))

    def _seal_tokens(self, user_id: str, tokens: dict[str, Any], old: dict[str, Any] | None) -> str:
        kept = {k: tokens.get(k) or (old or {}).get(k) for k in ("access_token", "refresh_token", "id_token")}
        return self.enc.seal_text(json.dumps(kept), link_aad(user_id))

    # -- refresh: re-checked at the provider -------------------------------------------------

    def recheck(self, refresh_token: str) -> None:
        """Before a refresh token is traded: when its user signed on with a provider, ask the
        provider again; a refusal ends this login session (401). Called from a worker thread."""
        with self.db.read_session() as s:
            row = s.execute(
                select(RefreshToken.user_id, RefreshToken.family_id, SsoLink.provider_id)
                .join(SsoLink, SsoLink.user_id == RefreshToken.user_id)
                .where(RefreshToken.token_hash == hash_refresh_token(refresh_token))
            ).first()
        if row is None:
            return  # not a signed-on user (or an unknown token: tokens.refresh says so)
        user_id, family, provider_id = row
        with _user_lock(user_id):  # the provider's refresh token is single use: one re-check at a time
            refused = asyncio.run(self._ask_provider(user_id, provider_id))
        if refused is None:
            return
        with self.db.session() as s:
            if family:
                self.tokens.revoke_session(family, session=s)
            user = s.get(User, user_id)
            events.publish(
                s, "user.sso_refused", "user", user_id, tenant_id=user.tenant_id if user else None,
                username=user.username if user else None, reason=refused,
            )  # fmt: skip
        raise unauthorized(f"Your identity provider no longer vouches for you ({refused}); sign in again.")

    async def _ask_provider(self, user_id: str, provider_id: str) -> str | None:
        """Why the provider refuses the user now (None: it still vouches for it)."""
        with self.db.read_session() as s:
            provider = s.get(IdentityProvider, provider_id)
            link = s.get(SsoLink, user_id)
            if provider is None or not provider.enabled or link is None:
                return "the identity provider was removed or disabled"
            s.expunge_all()
        old = json.loads(self.enc.open_text(link.tokens, link_aad(user_id))) if link.tokens else {}
        client = await self._client(provider)
        try:
            tokens = await client.refresh(old["refresh_token"]) if old.get("refresh_token") else old
            claims = await client.userinfo(str(tokens.get("access_token") or ""))
        except sso_client.ProviderError as exc:
            if exc.error is None:  # unreachable, or it answered nonsense: not a refusal
                raise Unavailable(f"The identity provider '{provider.name}' is unavailable: {exc}") from exc
            return str(exc)
        groups = _groups(claims.get(provider.groups_claim)) if provider.groups_claim else []
        role = role_of(provider, groups)
        if role is None:
            return "none of the user's groups gives access any more"
        with self.db.session() as s:
            if (row := s.get(SsoLink, user_id)) is not None:
                row.tokens = self._seal_tokens(user_id, tokens, old)
                row.checked_at = utcnow()
            if (user := s.get(User, user_id)) is not None:
                user.role = role
        return None

    # -- logout ------------------------------------------------------------------------------

    async def end_session_url(self, user_id: str, post_logout_redirect_uri: str) -> str | None:
        """Where to send the browser to sign out at the provider too (RP-initiated logout), when
        the user signed on with one that advertises an ``end_session_endpoint``."""
        with self.db.read_session() as s:
            link = s.get(SsoLink, user_id)
            provider = s.get(IdentityProvider, link.provider_id) if link is not None else None
            if link is None or provider is None:
                return None
            s.expunge_all()
        client = await self._client(provider)
        if not client.endpoints.end_session:
            return None
        tokens = json.loads(self.enc.open_text(link.tokens, link_aad(user_id))) if link.tokens else {}
        query = {"client_id": provider.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        if tokens.get("id_token"):
            query["id_token_hint"] = tokens["id_token"]
        return f"{client.endpoints.end_session}?{urlencode(query)}"


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def _user_lock(user_id: str) -> Iterator[None]:
    """One re-check of a user at a time in this process: two sessions of the user refreshing at
    once would otherwise both spend the same (rotating) provider refresh token, and the provider
    would refuse the second as a replay."""
    with _locks_guard:
        lock = _locks.setdefault(user_id, threading.Lock())
    with lock:
        yield
    with _locks_guard:
        if not lock.locked():
            _locks.pop(user_id, None)


def _groups(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(g) for g in value] if isinstance(value, list) else []

"""A tenant's identity providers for single sign-on: what ``/v1/identity-providers`` manages.

A provider is an OpenID Connect issuer (any, or the presets ``google`` and ``entra`` for Microsoft
Entra ID) or GitHub (``github``: OAuth 2.0, its endpoints fixed, the identity from its user API).
Creating or changing one checks it for real before anything is stored: the issuer must pass the
egress guard and serve a discovery document naming that same issuer, with the endpoints a sign-in
needs. The client secret is sealed at rest (``identity/encryption``, bound to the provider's id)
and never answered. Group mappings give a user signing on the most powerful role among its groups'
(``default_role`` for a user in none of them; none: such a user may not sign on); only roles the
caller could grant itself, and no platform role (a provider's users belong to its tenant).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select

from novacron import netguard
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import IdentityProvider, Tenant
from novacron.errors import Forbidden, InvalidInput, NotFound
from novacron.identity import sso_client
from novacron.identity.encryption import encryption_for
from novacron.identity.permissions import SEPARATED, permissions_of
from novacron.identity.scoping import duplicate, flush_unique, target_tenant
from novacron.service import Service

PRESETS = ("oidc", "google", "entra", "github")
#: what each preset fills in when the request leaves it out
DEFAULTS: dict[str, dict[str, Any]] = {
    "oidc": {"scopes": ["openid", "profile", "email"], "username_claim": "preferred_username"},
    "google": {
        "issuer": "https://accounts.google.com",
        "scopes": ["openid", "profile", "email"],
        "username_claim": "email",
    },
    "entra": {
        "scopes": ["openid", "profile", "email", "offline_access"],
        "username_claim": "preferred_username",
    },
    "github": {
        "issuer": "https://github.com",
        "scopes": ["read:user", "user:email"],
        "username_claim": "login",
    },
}
#: extra authorization parameters: Google issues a refresh token (which the platform re-checks each
#: user with at every refresh of its session) only for access_type=offline with prompt=consent
AUTH_PARAMS: dict[str, dict[str, str]] = {"google": {"access_type": "offline", "prompt": "consent"}}
_ENTRA = re.compile(r"^https://login\.microsoftonline\.com/[A-Za-z0-9.-]+/v2\.0$")
#: the roles a provider's users may get, most powerful first
SSO_ROLES = ("tenant-admin", "member", "compliance", "viewer")


def secret_aad(provider_id: str) -> str:
    """What a provider's sealed client secret is bound to."""
    return f"identity_providers.client_secret:{provider_id}"


@dataclass(frozen=True)
class ProviderSpec:
    """A create (every field) or a change (None: unchanged)."""

    name: str | None = None
    display_name: str | None = None
    preset: str | None = None
    issuer: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scopes: list[str] | None = None
    username_claim: str | None = None
    email_claim: str | None = None
    groups_claim: str | None = None
    group_roles: list[dict[str, str]] | None = None
    default_role: str | None = None
    #: default_role given (None in it means "nobody outside the mapped groups")
    default_role_set: bool = False
    enabled: bool | None = None
    tenant_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def role_of(provider: IdentityProvider, groups: list[str]) -> str | None:
    """The role a user in ``groups`` gets: the most powerful mapped one, else the default."""
    mapped = {m["role"] for m in provider.group_roles if m["group"] in groups}
    for role in SSO_ROLES:
        if role in mapped:
            return role
    return provider.default_role


def client_of(
    provider: IdentityProvider, settings: Any, endpoints: sso_client.Endpoints
) -> sso_client.Client:
    """The relying party for ``provider`` (its secret opened) at these endpoints."""
    secret = encryption_for(settings).open_text(provider.client_secret, secret_aad(provider.id))
    policy = netguard.EgressPolicy.from_settings(settings)
    return sso_client.Client(endpoints, provider.client_id, secret, policy)


async def endpoints_of(preset: str, issuer: str, policy: netguard.EgressPolicy) -> sso_client.Endpoints:
    """The provider's endpoints: GitHub's fixed ones, or its discovery document's."""
    if preset == "github":
        return sso_client.GITHUB
    return await sso_client.discover(issuer, policy)


class ProviderService(Service):
    """Create, read, change and delete a tenant's identity providers."""

    def list(self, params: ListParams) -> tuple[list[IdentityProvider], str | None]:
        stmt = select(IdentityProvider)
        if not self.principal.is_global:
            stmt = stmt.where(IdentityProvider.tenant_id == self.principal.tenant_id)
        return paginate(self.session, stmt, IdentityProvider, params)

    def get(self, ref: str) -> IdentityProvider:
        stmt = select(IdentityProvider).where((IdentityProvider.id == ref) | (IdentityProvider.name == ref))
        if not self.principal.is_global:
            stmt = stmt.where(IdentityProvider.tenant_id == self.principal.tenant_id)
        found = list(self.session.scalars(stmt.limit(2)))
        if len(found) != 1:
            raise NotFound("identity provider", ref)
        return found[0]

    def create(self, spec: ProviderSpec) -> IdentityProvider:
        """A new provider, checked at its issuer first (no transaction is open meanwhile)."""
        preset = spec.preset or "oidc"
        spec = _with_defaults(replace(spec, preset=preset))
        if not spec.client_secret:
            raise InvalidInput("client_secret", "required")
        self._check(spec)
        tenant_id = target_tenant(self.session, self.principal, spec.tenant_id)
        assert spec.name is not None and spec.issuer is not None and spec.client_id is not None
        if self.session.scalar(
            select(IdentityProvider.id).where(
                IdentityProvider.tenant_id == tenant_id, IdentityProvider.name == spec.name
            )
        ):
            raise duplicate("name", spec.name, "identity provider")
        provider = IdentityProvider(
            id=new_id("idp"),
            tenant_id=tenant_id,
            name=spec.name,
            display_name=spec.display_name or spec.name,
            preset=preset,
            issuer=spec.issuer,
            client_id=spec.client_id,
            client_secret="",
            scopes=spec.scopes,
            username_claim=spec.username_claim,
            email_claim=spec.email_claim or "email",
            groups_claim=spec.groups_claim if spec.groups_claim is not None else "groups",
            group_roles=spec.group_roles or [],
            default_role=spec.default_role,
            enabled=spec.enabled if spec.enabled is not None else True,
        )
        provider.client_secret = self._seal(provider.id, spec.client_secret)
        self.session.add(provider)
        flush_unique(self.session, "name", spec.name, "identity provider")
        return provider

    def update(self, ref: str, spec: ProviderSpec) -> IdentityProvider:
        """Change a provider; a new issuer or client is checked at the issuer again."""
        provider = self.get(ref)
        merged = ProviderSpec(
            name=provider.name,
            preset=provider.preset,
            issuer=spec.issuer or provider.issuer,
            client_id=spec.client_id or provider.client_id,
            scopes=spec.scopes or provider.scopes,
            username_claim=spec.username_claim or provider.username_claim,
            group_roles=spec.group_roles if spec.group_roles is not None else provider.group_roles,
            default_role=spec.default_role if spec.default_role_set else provider.default_role,
        )
        self._check(merged, discover=spec.issuer is not None and spec.issuer != provider.issuer)
        provider.issuer, provider.client_id = merged.issuer or "", merged.client_id or ""
        provider.scopes, provider.username_claim = merged.scopes or [], merged.username_claim or ""
        provider.group_roles, provider.default_role = merged.group_roles or [], merged.default_role
        if spec.display_name is not None:
            provider.display_name = spec.display_name
        if spec.email_claim is not None:
            provider.email_claim = spec.email_claim
        if spec.groups_claim is not None:
            provider.groups_claim = spec.groups_claim
        if spec.enabled is not None:
            provider.enabled = spec.enabled
        if spec.client_secret:
            provider.client_secret = self._seal(provider.id, spec.client_secret)
        self.session.flush()
        return provider

    def delete(self, ref: str) -> None:
        """Delete a provider; its users stay, but can no longer sign on with it (nor refresh)."""
        self.session.delete(self.get(ref))

    # -- checks ------------------------------------------------------------------------------

    def _seal(self, provider_id: str, secret: str) -> str:
        return encryption_for(self.ctx.settings).seal_text(secret, secret_aad(provider_id))

    def _check(self, spec: ProviderSpec, *, discover: bool = True) -> None:
        """Every field by itself, then (``discover``) the issuer at its address."""
        preset = spec.preset or "oidc"
        issuer = spec.issuer or ""
        if not issuer:
            raise InvalidInput("issuer", f"required for preset '{preset}'")
        if preset == "entra" and not _ENTRA.match(issuer):
            raise InvalidInput("issuer", "Entra ID: https://login.microsoftonline.com/<directory id>/v2.0")
        if preset in ("google", "github") and issuer != DEFAULTS[preset]["issuer"]:
            raise InvalidInput(
                "issuer", f"preset '{preset}' is {DEFAULTS[preset]['issuer']}; omit the issuer"
            )
        if preset != "github" and "openid" not in (spec.scopes or []):
            raise InvalidInput("scopes", "an OpenID Connect provider needs the scope 'openid'")
        for n, mapping in enumerate(spec.group_roles or []):
            self._check_role(mapping.get("role", ""), f"group_roles[{n}].role")
        if spec.default_role is not None:
            self._check_role(spec.default_role, "default_role")
        if discover:
            policy = netguard.EgressPolicy.from_settings(self.ctx.settings)
            try:
                asyncio.run(endpoints_of(preset, issuer, policy))
            except sso_client.ProviderError as exc:
                raise InvalidInput("issuer", str(exc)) from exc

    def _check_role(self, role: str, where: str) -> None:
        if role not in SSO_ROLES:
            raise InvalidInput(
                where, f"one of {', '.join(SSO_ROLES)} (a provider's users belong to its tenant)"
            )
        held = self.principal.permissions | (SEPARATED if self.principal.can("tenant:write") else frozenset())
        if not permissions_of(role) <= held:
            raise Forbidden(f"Your role '{self.principal.role}' cannot grant the role '{role}'.")


def _with_defaults(spec: ProviderSpec) -> ProviderSpec:
    preset = spec.preset or "oidc"
    if preset not in PRESETS:
        raise InvalidInput("preset", f"one of {', '.join(PRESETS)}")
    defaults = DEFAULTS[preset]
    return replace(
        spec,
        issuer=spec.issuer or defaults.get("issuer"),
        scopes=spec.scopes or list(defaults["scopes"]),
        username_claim=spec.username_claim or defaults["username_claim"],
    )


def public_providers(session: Any, tenant: str) -> list[IdentityProvider]:
    """The enabled providers of a tenant (name or id), for its sign-in page; none for an unknown one."""
    tenant_id = session.scalar(select(Tenant.id).where((Tenant.name == tenant) | (Tenant.id == tenant)))
    if tenant_id is None:
        return []
    stmt = select(IdentityProvider).where(IdentityProvider.tenant_id == tenant_id, IdentityProvider.enabled)
    return list(session.scalars(stmt.order_by(IdentityProvider.name)))

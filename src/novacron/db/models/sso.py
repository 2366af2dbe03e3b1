"""Single sign-on (``identity/sso*.py``): a tenant's identity providers, the sign-ins under way at
one (a browser's authorization request, a CLI's device authorization) and which provider account
each user signed on with."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, UTCDateTime


class IdentityProvider(Timestamped, Base):
    """An OpenID Connect (or GitHub's OAuth 2.0) provider a tenant's users sign on with."""

    __tablename__ = "identity_providers"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(64))
    #: oidc, google, entra or github (OAuth 2.0: no ID token, identity from its user API)
    preset: Mapped[str] = mapped_column(String(16))
    #: the OpenID issuer (its discovery document is ISSUER/.well-known/openid-configuration)
    issuer: Mapped[str] = mapped_column(String(512))
    client_id: Mapped[str] = mapped_column(String(255))
    #: sealed (``identity/encryption``), never answered
    client_secret: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    username_claim: Mapped[str] = mapped_column(String(64))
    email_claim: Mapped[str] = mapped_column(String(64))
    groups_claim: Mapped[str] = mapped_column(String(64))
    #: [{"group": ..., "role": ...}]: a user gets the most powerful role of its groups
    group_roles: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    #: the role of a user in none of the mapped groups; None: such a user may not sign on
    default_role: Mapped[str | None] = mapped_column(String(32), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class SsoLogin(Base):
    """A sign-in under way: single use, short-lived. ``id`` is the SHA-256 of the browser's
    ``state`` or of the CLI's device login handle (never stored in clear)."""

    __tablename__ = "sso_logins"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider_id: Mapped[str] = mapped_column(
        ForeignKey("identity_providers.id", ondelete="CASCADE"), index=True
    )
    #: browser or device
    kind: Mapped[str] = mapped_column(String(8))
    #: sealed: the PKCE verifier and nonce (browser), or the provider's device code (device)
    secret: Mapped[str] = mapped_column(Text)
    redirect_uri: Mapped[str | None] = mapped_column(String(512), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SsoLink(Timestamped, Base):
    """The provider account a user signed on with, and the provider's tokens (sealed) the platform
    re-checks it with at each refresh of the user's session."""

    __tablename__ = "sso_links"
    __table_args__ = (UniqueConstraint("provider_id", "subject"),)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    provider_id: Mapped[str] = mapped_column(
        ForeignKey("identity_providers.id", ondelete="CASCADE"), index=True
    )
    subject: Mapped[str] = mapped_column(String(255))
    #: sealed JSON: access_token, refresh_token, id_token (as the provider last gave them)
    tokens: Mapped[str] = mapped_column(Text)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

"""Tenants, projects, users and the token machinery."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, UTCDateTime, Versioned


class Tenant(Timestamped, Versioned, Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(255), default="")


class Project(Timestamped, Versioned, Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(255), default="")
    #: a sub-project's parent (same tenant); quotas nest along it. No FK: SQLite cannot add one in place
    parent_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)


class User(Timestamped, Versioned, Base):
    __tablename__ = "users"
    #: unique per tenant, so one tenant cannot learn the names another uses; platform users (no
    #: tenant: NULLs never collide) are kept unique among themselves by the service
    __table_args__ = (UniqueConstraint("tenant_id", "username"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: ``None`` only for platform administrators, who belong to no tenant.
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    #: one of admin, tenant-admin, member, viewer
    role: Mapped[str] = mapped_column(String(32))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: access tokens issued before this instant are refused (password change, "log out everywhere")
    tokens_valid_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: when tokens were last issued to it (a login, an MFA login or a refresh): dormant accounts
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SigningKey(Timestamped, Base):
    """A JWT signing key pair. Retired keys stay published in the JWKS until their tokens expire."""

    __tablename__ = "signing_keys"
    kid: Mapped[str] = mapped_column(String(40), primary_key=True)
    alg: Mapped[str] = mapped_column(String(8))
    private_pem: Mapped[str] = mapped_column(Text)
    public_pem: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RefreshToken(Timestamped, Base):
    __tablename__ = "refresh_tokens"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: one login session: every rotated successor keeps the id of the first token
    family_id: Mapped[str | None] = mapped_column(String(40), index=True, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RevokedToken(Base):
    """Access tokens revoked before expiry, by ``jti``; pruned once past ``expires_at``."""

    __tablename__ = "revoked_tokens"
    jti: Mapped[str] = mapped_column(String(40), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AccessTicket(Base):
    """A short-lived, single-use ticket that opens one WebSocket/SSE path for a user (browsers cannot
    send an Authorization header on those handshakes). Stored as a SHA-256 hash so any replica can
    redeem it; redeeming deletes the row."""

    __tablename__ = "access_tickets"
    ticket_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: the access token that asked for it: a revoked or expired token's tickets die with it
    token_id: Mapped[str] = mapped_column(String(40))
    token_exp: Mapped[float]
    #: epoch seconds: "every session ended at T" (password change, reuse) also ends older tickets
    issued_at: Mapped[float]
    session_id: Mapped[str] = mapped_column(String(40), default="")
    path: Mapped[str] = mapped_column(String(512))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SecurityBlock(Base):
    """A client address blocked by threat detection (``identity/threats.py``) until ``expires_at``,
    unless an administrator lifted it first; every replica reads it before serving that address."""

    __tablename__ = "security_blocks"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: the address (or IPv6 /64) as ``throttle.source_key`` spells it, without its prefix
    source: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lifted_by: Mapped[str | None] = mapped_column(String(255), nullable=True)


class LoginFailure(Base):
    """Recent failed logins of one account or one client address: the brute-force throttle's
    state, in the database so every API replica sees the same counts. Pruned once forgotten."""

    __tablename__ = "login_failures"
    #: ``account:<sha256 of the lowercased username>`` or ``source:<address or IPv6 /64>``
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    #: no login for this key is even checked before this instant
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ApiKey(Timestamped, Base):
    """A machine identity (``identity/apikeys.py``): acts as its owner with at most the permissions it
    was given, until it expires or is revoked. Only the SHA-256 of its secret is kept."""

    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("user_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: the owner's tenant (None: a platform administrator's key)
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    secret_hash: Mapped[str] = mapped_column(String(64))
    #: the permissions it was given (each held by its owner when it was made); sorted
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: the client address of that last use
    last_used_from: Mapped[str | None] = mapped_column(String(64), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: None: the owner's whole tenant; else only VMs of this project (``identity/authz.py``)
    project_id: Mapped[str | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=True, index=True
    )


class CustomRole(Timestamped, Versioned, Base):
    """A tenant's own role: a named set of permissions of the catalogue (``identity/roles.py``),
    optionally acting only on resources whose labels match ``labels``."""

    __tablename__ = "custom_roles"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(255), default="")
    #: sorted permission names, each of the catalogue
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: ``{"team": "blue"}``: the role acts only on resources labelled so ({}: any)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)


class RoleAssignment(Timestamped, Versioned, Base):
    """A role (built-in or the tenant's own, by name) held by a user or an API key, on the whole
    tenant or one project, optionally only on resources whose labels match ``labels``."""

    __tablename__ = "role_assignments"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    api_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=True, index=True
    )
    role: Mapped[str] = mapped_column(String(64))
    #: None: the whole tenant
    project_id: Mapped[str | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=True, index=True
    )
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)

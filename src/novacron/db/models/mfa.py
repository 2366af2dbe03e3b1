"""Second factors (``identity/mfa.py``): TOTP authenticators, recovery codes, login challenges and
the tenants' policies requiring them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, UTCDateTime


class MfaTotp(Timestamped, Base):
    """A user's TOTP authenticator (RFC 6238, 30 s, 6 digits, SHA-1: what every app reads)."""

    __tablename__ = "mfa_totp"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    #: the base32 secret, sealed (``identity/sealing.py``); never shown again after enrolment
    secret: Mapped[str] = mapped_column(Text)
    #: None while enrolling: the factor counts only once a first code confirmed it
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: the time step of the last code accepted: a code of that step or an earlier one is a replay
    last_step: Mapped[int] = mapped_column(Integer, default=0)
    #: step-up: the login session (access tokens' ``sid``) that last proved a code, and when
    stepup_sid: Mapped[str | None] = mapped_column(String(40), nullable=True)
    stepup_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class MfaRecoveryCode(Timestamped, Base):
    """A single-use recovery code; only its SHA-256 (with the user id) is kept."""

    __tablename__ = "mfa_recovery_codes"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class MfaChallenge(Timestamped, Base):
    """The first step of a login with a second factor: the password was right, a code is owed."""

    __tablename__ = "mfa_challenges"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: the login throttle's identity of the account (``identity/lookup.py``): wrong codes count there
    throttle_key: Mapped[str] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TenantMfaPolicy(Timestamped, Base):
    """Who in a tenant must have a second factor: ``admins`` (admin, tenant-admin) or ``everyone``."""

    __tablename__ = "tenant_mfa_policies"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    require: Mapped[str] = mapped_column(String(16))

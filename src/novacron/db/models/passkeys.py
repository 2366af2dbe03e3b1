"""WebAuthn passkeys (``identity/passkeys.py``): a user's registered credentials and the
single-use ceremony challenges the server hands out for them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, UTCDateTime


class MfaPasskey(Timestamped, Base):
    """A WebAuthn credential registered by a user: a second factor like a TOTP authenticator."""

    __tablename__ = "mfa_passkeys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: the authenticator's credential id (base64url), unique across users
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    #: the COSE public key: public, so not sealed
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    #: the authenticator's signature counter: a later assertion must carry a larger one (a clone
    #: replaying an older state is refused), unless the authenticator keeps none (always 0)
    sign_count: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(64))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: step-up: the login session (access tokens' ``sid``) that last signed with it, and when
    stepup_sid: Mapped[str | None] = mapped_column(String(40), nullable=True)
    stepup_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class MfaPasskeyChallenge(Timestamped, Base):
    """A registration or sign-in ceremony's challenge: bound to its user, short-lived, single use."""

    __tablename__ = "mfa_passkey_challenges"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: ``register`` or ``login``
    purpose: Mapped[str] = mapped_column(String(16))
    #: the random challenge (base64url) the authenticator signs
    challenge: Mapped[str] = mapped_column(String(128), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

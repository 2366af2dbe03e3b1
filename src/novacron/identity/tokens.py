"""Access tokens (signed JWTs) and refresh tokens (opaque, single use, rotated).

Access token claims: ``iss``, ``sub`` (user id), ``tid`` (tenant id or null), ``role``,
``jti``, ``iat`` (millisecond precision), ``exp``, ``sid`` (login session), and ``mfa: enrol``
when the user's tenant requires a second factor it has not enrolled (``mfa_policy.py``: such a
token may only enrol one); header ``kid``.

``authenticate`` verifies the signature with the key named by ``kid`` (never trusting the
header's ``alg``), the expiry and the issuer, then does ONE primary-key lookup that reads
the user and the revocation list together, so revoking a token, disabling a user, changing
a role or ending all sessions takes effect on the very next request. Role and tenant come
from the database row, not from the token.

Refresh tokens are random strings stored only as SHA-256 hashes. Each login starts a
family (``family_id``, also the access tokens' ``sid``); each use consumes the token
(atomically) and returns a new one of the same family. Presenting an already-consumed token
means it was copied: that family ends (its refresh tokens, and its access tokens through a
revocation-list entry for the ``sid``), the user's other sessions go on, and the reuse is a
security event naming the user. Ending every session of a user (password change, disabling)
deletes its refresh tokens, so replaying one afterwards is merely "unknown" and cannot end a
session begun after the change.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import bindparam, delete, exists, or_, select, update
from sqlalchemy.orm import Session

from novacron import events
from novacron.config import Settings
from novacron.db.base import Database, new_id, utcnow
from novacron.db.models import RefreshToken, RevokedToken, User
from novacron.errors import Unauthenticated
from novacron.identity import authz
from novacron.identity.keys import KeyRing
from novacron.identity.login import PasswordLogin
from novacron.identity.mfa_policy import ENROL, enrol_only
from novacron.identity.permissions import permissions_of
from novacron.identity.principal import Principal

log = logging.getLogger(__name__)

ISSUER = "novacron"
REFRESH_PREFIX = "ncr_"
#: tolerated clock difference between API replicas, seconds
LEEWAY_S = 10
_CACHE_MAX = 4096


def unauthorized(detail: str) -> Unauthenticated:
    """A presented credential refused (RFC 6750 ``invalid_token``), saying why."""
    return Unauthenticated(detail, bearer_error="invalid_token")


def hash_refresh_token(token: str) -> str:
    """How a refresh token is stored: its SHA-256, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _as_datetime(value: datetime | float) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True)
class Owner:
    """Whose refresh token it was: named in the audit record and the reuse event."""

    user_id: str
    username: str
    tenant_id: str | None

    @classmethod
    def of(cls, user: User) -> Owner:
        """The owner a user row names."""
        return cls(user.id, user.username, user.tenant_id)


class RefreshRefused(Unauthenticated):
    """A refused refresh token; ``owner`` when the token was real (expired, reused, disabled)."""

    def __init__(self, detail: str, owner: Owner | None = None) -> None:
        super().__init__(detail, bearer_error="invalid_token")
        self.owner = owner


@dataclass(frozen=True)
class Refreshed:
    """New tokens for a refresh token, and whose they are."""

    access_token: str
    refresh_token: str
    expires_in: int
    owner: Owner


class TokenService:
    """Issues and verifies tokens. One per process; thread-safe."""

    def __init__(self, db: Database, settings: Settings, *, issuer: str = ISSUER) -> None:
        self.db = db
        self.settings = settings
        self.issuer = issuer
        self.keys = KeyRing(db, settings)
        #: password logins and changes (throttled, hashed on a bounded pool)
        self.logins = PasswordLogin(self)
        #: token -> verified claims. Signatures of a given token never change, so this only
        #: skips the ECDSA check; expiry and the database lookup still run on every call.
        self._verified: dict[str, dict[str, Any]] = {}
        # one round trip on a primary key: the user row and whether the jti is on the revocation list
        self._lookup = select(
            User.username,
            User.role,
            User.tenant_id,
            User.disabled,
            User.tokens_valid_after,
            # the token itself, or its whole login session (a family ended by refresh-token reuse)
            exists()
            .where(or_(RevokedToken.jti == bindparam("jti"), RevokedToken.jti == bindparam("sid")))
            .label("revoked"),
        ).where(User.id == bindparam("uid"))

    # -- issuing -----------------------------------------------------------------------------

    def issue(self, session: Session, user: User, *, family_id: str | None = None) -> tuple[str, str, int]:
        """A new (access_token, refresh_token, expires_in) for ``user``; rows go into ``session``."""
        key = self.keys.ensure_active(session)
        now = time.time()
        # the compliance check of dormant accounts reads it; a plain UPDATE, so a login changes
        # neither the user's version (its ETag) nor its updated_at, and two at once never conflict
        session.execute(
            update(User).where(User.id == user.id).values(last_login_at=utcnow(), updated_at=User.updated_at)
        )
        ttl = self.settings.access_token_ttl_s
        refresh_id = new_id("rt")
        family = family_id or refresh_id
        claims = {
            "iss": self.issuer,
            "sub": user.id,
            "tid": user.tenant_id,
            "role": user.role,
            "name": user.username,
            "jti": new_id("at"),
            "sid": family,
            # millisecond precision (RFC 7519 allows fractions) so "sessions ended at T" is exact
            "iat": math.floor(now * 1000) / 1000,
            "exp": int(now) + ttl,
        }
        if enrol_only(session, user):  # its tenant requires a second factor it has not enrolled yet
            claims["mfa"] = ENROL
        access = jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": key.kid})
        refresh = REFRESH_PREFIX + secrets.token_urlsafe(32)
        session.execute(
            delete(RefreshToken).where(RefreshToken.user_id == user.id, RefreshToken.expires_at < utcnow())
        )
        session.add(
            RefreshToken(
                id=refresh_id,
                user_id=user.id,
                token_hash=hash_refresh_token(refresh),
                family_id=family,
                expires_at=utcnow() + timedelta(seconds=self.settings.refresh_token_ttl_s),
            )
        )
        return access, refresh, ttl

    def refresh(self, refresh_token: str) -> Refreshed:
        """Consume ``refresh_token`` and return a fresh (access, refresh, expires_in) with its owner.

        Runs in its own transactions (the theft response must commit although the call fails).
        """
        token_hash = hash_refresh_token(refresh_token)
        with self.db.session() as session:
            row = session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
            if row is None:
                raise RefreshRefused("Unknown refresh token (it may have been signed out); log in again.")
            owner = session.get(User, row.user_id)
            who = Owner.of(owner) if owner is not None else None
            if row.expires_at <= utcnow():
                raise RefreshRefused("The refresh token expired; log in again.", who)
            consumed = session.execute(
                update(RefreshToken)
                .where(RefreshToken.id == row.id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            family = row.family_id or row.id
            if consumed.rowcount == 1:  # type: ignore[attr-defined]
                if owner is None or owner.disabled:
                    raise RefreshRefused("The refresh token's user no longer exists or is disabled.", who)
                return Refreshed(*self.issue(session, owner, family_id=family), owner=Owner.of(owner))
        log.warning("refresh token reuse for user %s: ending its login session %s", row.user_id, family)
        with self.db.session() as session:
            self.revoke_family(family, session=session)
            events.publish(
                session,
                "token.reused",
                "user",
                row.user_id,
                tenant_id=who.tenant_id if who else None,
                username=who.username if who else None,
                login_session=family,
            )
        raise RefreshRefused(
            "This refresh token was already used. As a precaution against token theft the login "
            "session it belongs to has been ended (your other sessions go on); log in again.",
            who,
        )

    # -- revoking ----------------------------------------------------------------------------

    def revoke_access(self, jti: str, exp: datetime | float, *, session: Session | None = None) -> None:
        """Refuse the access token ``jti`` from now on (kept on the list until it would expire)."""
        if session is None:
            with self.db.session() as own:
                self._revoke_access(own, jti, _as_datetime(exp))
        else:
            self._revoke_access(session, jti, _as_datetime(exp))

    def _revoke_access(self, session: Session, jti: str, exp: datetime) -> None:
        session.execute(delete(RevokedToken).where(RevokedToken.expires_at < utcnow()))
        if session.get(RevokedToken, jti) is None:
            session.add(RevokedToken(jti=jti, expires_at=exp))
        session.flush()

    def revoke_session(self, family_id: str, *, session: Session) -> None:
        """Delete the refresh tokens of one login session (sign-out; a later use is 'unknown')."""
        session.execute(delete(RefreshToken).where(RefreshToken.family_id == family_id))

    def revoke_family(self, family_id: str, *, session: Session) -> None:
        """End one login session whose refresh token was replayed: its refresh tokens stay (marked
        used, so further replays are recognised) and its access tokens are refused by ``sid``."""
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        ttl = self.settings.access_token_ttl_s + LEEWAY_S
        self._revoke_access(session, family_id, utcnow() + timedelta(seconds=max(ttl, 0)))

    def revoke_user_sessions(self, user_id: str, *, session: Session | None = None) -> None:
        """End every session of a user: refresh tokens and all access tokens issued until now."""
        if session is None:
            with self.db.session() as own:
                self._revoke_user(own, user_id)
        else:
            self._revoke_user(session, user_id)

    def _revoke_user(self, session: Session, user_id: str) -> None:
        now = utcnow()
        # deleted, not marked used: a replay of one of them is "unknown", not a reuse that would
        # end the sessions begun after this cut
        session.execute(delete(RefreshToken).where(RefreshToken.user_id == user_id))
        user = session.get(User, user_id)
        if user is not None:
            user.tokens_valid_after = now
        session.flush()

    # -- verifying ---------------------------------------------------------------------------

    def _verify(self, token: str) -> dict[str, Any]:
        claims = self._verified.get(token)
        if claims is not None:
            if claims["exp"] + LEEWAY_S <= time.time():
                raise unauthorized(
                    "The access token expired; refresh it with POST /v1/tokens/refresh or log in again."
                )
            return claims
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise unauthorized("The bearer token is not a well-formed JWT; log in again.") from exc
        kid = header.get("kid")
        key = self.keys.verification_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise unauthorized("The token was signed by an unknown or retired key; log in again.")
        try:
            claims = jwt.decode(
                token,
                key.public,
                algorithms=[key.alg],
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "sub", "jti", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise unauthorized(
                "The access token expired; refresh it with POST /v1/tokens/refresh or log in again."
            ) from exc
        except jwt.InvalidIssuerError as exc:
            raise unauthorized(f"The token was not issued by this platform ('{self.issuer}').") from exc
        except jwt.InvalidSignatureError as exc:
            raise unauthorized("The token's signature does not verify; log in again.") from exc
        except jwt.InvalidTokenError as exc:
            raise unauthorized(f"Invalid access token: {exc}.") from exc
        if len(self._verified) >= _CACHE_MAX:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    def authenticate(self, token: str) -> Principal:
        """The caller behind ``token``, or ``Unauthenticated`` saying why not."""
        return self.principal_of(self._verify(token))

    def principal_of(self, claims: dict[str, Any]) -> Principal:
        """The caller behind verified ``claims`` (``sub``, ``jti``, ``iat``, ``exp``, ``sid``), checked
        against the database now: an access ticket made from a token is worth no more than it."""
        with self.db.engine.connect() as conn:
            params = {"uid": claims["sub"], "jti": claims["jti"], "sid": str(claims.get("sid") or "")}
            row = conn.execute(self._lookup, params).first()
            # the roles assigned beyond the user's own (per project, label-conditioned, custom)
            loaded = authz.load(conn, user_id=claims["sub"])
        if row is None:
            raise unauthorized("The token's user no longer exists.")
        username, role, tenant_id, disabled, valid_after, revoked = row
        if revoked:
            raise unauthorized("The access token was revoked; log in again.")
        if disabled:
            raise unauthorized(f"The account '{username}' is disabled.")
        if valid_after is not None and float(claims["iat"]) < valid_after.timestamp():
            raise unauthorized("All sessions of this account were ended (password change?); log in again.")
        return authz.with_assignments(self._principal(claims, username, role, tenant_id), loaded)

    @staticmethod
    def _principal(claims: dict[str, Any], username: str, role: str, tenant_id: str | None) -> Principal:
        return Principal(
            user_id=claims["sub"],
            username=username,
            role=role,
            tenant_id=tenant_id,
            permissions=permissions_of(role),
            token_id=claims["jti"],
            extra={
                "exp": str(claims["exp"]),
                "sid": str(claims.get("sid") or ""),
                "mfa": str(claims.get("mfa") or ""),
            },
        )

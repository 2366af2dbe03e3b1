"""What a second factor gates: the tenant policy that requires one, and step-up for sensitive actions.

Kept apart from ``mfa.py`` (enrolment) so that ``tokens.py`` and the services of sensitive actions
(tenants, API keys, signing keys, KEKs) can ask without importing the enrolment machinery.

- **Policy.** A tenant may require a second factor of its admins (roles ``admin`` and
  ``tenant-admin``) or of everyone (``tenant_mfa_policies``). A covered user without a confirmed
  factor still logs in with the password, but the access tokens it gets carry ``mfa: enrol``: the
  API answers such a token only on the enrolment endpoints (``api/deps.py``), until a factor is
  confirmed; the next refresh then issues a full token.
- **Step-up.** A user with a factor proves a code within ``STEP_UP_S`` (login with a code, or
  ``POST /v1/mfa/verify``) before a sensitive action in the same login session (the tokens'
  ``sid``); without it the action is a 403 problem naming the endpoint to call.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from novacron.db.base import Database, new_id, utcnow
from novacron.db.models import MfaChallenge, MfaPasskey, MfaTotp, TenantMfaPolicy, User
from novacron.errors import Forbidden
from novacron.identity.principal import Principal

STEP_UP_S = 300
ENROL = "enrol"
POLICIES = ("none", "admins", "everyone")
ADMIN_ROLES = frozenset({"admin", "tenant-admin"})
CHALLENGE_TTL_S = 300
CHALLENGE_PREFIX = "ncm_"


def challenge_hash(token: str) -> str:
    """How a login challenge is stored: its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_challenge(session: Session, user_id: str, key: str) -> str:
    """The token of a login's second step (``ncm_...``), stored hashed, good for five minutes.
    ``key`` is the account's login-throttle identity: wrong codes are counted there."""
    token = CHALLENGE_PREFIX + secrets.token_urlsafe(32)
    session.execute(delete(MfaChallenge).where(MfaChallenge.expires_at < utcnow()))
    expires = utcnow() + timedelta(seconds=CHALLENGE_TTL_S)
    row = MfaChallenge(
        id=new_id("mfc"),
        token_hash=challenge_hash(token),
        user_id=user_id,
        throttle_key=key,
        attempts=0,
        expires_at=expires,
    )
    session.add(row)
    return token


def enrolled(session: Session, user_id: str) -> bool:
    """Whether the user has a confirmed second factor (a TOTP authenticator or a passkey)."""
    confirmed = session.scalar(select(MfaTotp.confirmed_at).where(MfaTotp.user_id == user_id))
    if confirmed is not None:
        return True
    return session.scalar(select(MfaPasskey.id).where(MfaPasskey.user_id == user_id).limit(1)) is not None


def policy_of(session: Session, tenant_id: str | None) -> str:
    """``none``, ``admins`` or ``everyone`` for the tenant (platform users: none)."""
    if tenant_id is None:
        return "none"
    return (
        session.scalar(select(TenantMfaPolicy.require).where(TenantMfaPolicy.tenant_id == tenant_id))
        or "none"
    )


def required_for(session: Session, user: User) -> bool:
    """Whether the user's tenant requires a second factor of it."""
    policy = policy_of(session, user.tenant_id)
    return policy == "everyone" or (policy == "admins" and user.role in ADMIN_ROLES)


def enrol_only(session: Session, user: User) -> bool:
    """Whether tokens issued to the user now may only enrol a second factor."""
    return required_for(session, user) and not enrolled(session, user.id)


def step_up_required(action: str) -> Forbidden:
    """The 403 of a sensitive action without a recent code."""
    return Forbidden(
        f"{action} needs a second-factor code verified in the last {STEP_UP_S // 60} minutes: "
        "send a current code to POST /v1/mfa/verify (novacron mfa verify), then retry.",
        title="Step-up required",
        extra={"step_up": {"verify": "/v1/mfa/verify", "max_age_s": STEP_UP_S}},
    )


def require_step_up_now(db: Database, principal: Principal, action: str) -> None:
    """``require_step_up`` in a read transaction of its own (a handler without a service session)."""
    with db.read_session() as session:
        require_step_up(session, principal, action)


def require_step_up(session: Session, principal: Principal, action: str) -> None:
    """Refuse ``action`` unless the caller has no second factor or proved a code lately in this
    login session. An API key cannot prove a code: its owner's factor makes the action refused."""
    if principal.kind not in ("user", "api-key"):
        return
    if not enrolled(session, principal.user_id):
        return
    sid = principal.extra.get("sid")
    if principal.kind == "user" and sid and step_up_at(session, principal.user_id, sid) is not None:
        return
    raise step_up_required(action)


def step_up_at(session: Session, user_id: str, sid: str) -> datetime | None:
    """When login session ``sid`` last proved a factor (a TOTP code or a passkey), if within
    ``STEP_UP_S``; None otherwise."""
    totp = session.get(MfaTotp, user_id)
    times = [totp.stepup_at] if totp is not None and totp.confirmed_at and totp.stepup_sid == sid else []
    times += session.scalars(
        select(MfaPasskey.stepup_at).where(MfaPasskey.user_id == user_id, MfaPasskey.stepup_sid == sid)
    )
    latest = max((t for t in times if t is not None), default=None)
    if latest is None or utcnow() - latest > timedelta(seconds=STEP_UP_S):
        return None
    return latest

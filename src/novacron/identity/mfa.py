"""A user's second factor: TOTP enrolment, recovery codes, the tenant policy and an admin's reset.

Enrolment (``POST /v1/mfa/totp``) makes a secret on the server, seals it (``sealing.py``) and
shows it once, as an ``otpauth://`` URI (what a QR code carries) and as base32 text to type in;
the factor counts only after a first code confirms it (``mfa_codes.py``), which also stores ten
single-use recovery codes (hashed) and shows them once. Checking codes is ``mfa_codes.py``'s;
the policy and step-up gates are ``mfa_policy.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from novacron import events
from novacron.db.base import new_id
from novacron.db.models import MfaRecoveryCode, MfaTotp, Tenant, TenantMfaPolicy, User
from novacron.db.resolve import resolve
from novacron.errors import Conflict, Forbidden, InvalidInput
from novacron.identity import totp
from novacron.identity.encryption import encryption_for
from novacron.identity.mfa_codes import secret_aad
from novacron.identity.mfa_policy import (
    POLICIES,
    STEP_UP_S,
    policy_of,
    require_step_up,
    required_for,
    step_up_at,
)
from novacron.service import Service


@dataclass(frozen=True)
class MfaStatus:
    """What the caller's second factor is and what its tenant asks."""

    totp: str
    recovery_codes_left: int
    required: bool
    step_up_until: datetime | None


@dataclass(frozen=True)
class Enrolment:
    """A new, unconfirmed TOTP secret: shown this once."""

    secret: str
    otpauth_uri: str


class MfaService(Service):
    """The caller's own second factor, its tenant's policy, and a platform admin's reset."""

    def _user(self) -> User:
        if self.principal.kind != "user":
            raise Forbidden("Only a signed-in user has a second factor (not an API key or a node).")
        user = self.session.get(User, self.principal.user_id)
        if user is None:
            raise Forbidden("The token's user no longer exists.")
        return user

    def status(self) -> MfaStatus:
        user = self._user()
        factor = self.session.get(MfaTotp, user.id)
        state = "none" if factor is None else "enrolled" if factor.confirmed_at else "pending"
        left = self.session.scalar(
            select(func.count()).where(MfaRecoveryCode.user_id == user.id, MfaRecoveryCode.used_at.is_(None))
        )
        sid = self.principal.extra.get("sid")
        proved = step_up_at(self.session, user.id, sid) if sid else None
        until = proved + timedelta(seconds=STEP_UP_S) if proved else None
        return MfaStatus(state, int(left or 0), required_for(self.session, user), until)

    def enrol(self) -> Enrolment:
        """A new TOTP secret for the caller (replacing an unconfirmed one); 409 once confirmed."""
        user = self._user()
        factor = self.session.get(MfaTotp, user.id)
        if factor is not None and factor.confirmed_at is not None:
            raise Conflict(
                "You have a confirmed authenticator; disable it (POST /v1/mfa/totp/disable) to enrol another."
            )
        secret = totp.new_secret()
        sealed = encryption_for(self.ctx.settings).seal_text(secret, secret_aad(user.id))
        if factor is None:
            self.session.add(MfaTotp(user_id=user.id, secret=sealed, last_step=0))
        else:
            factor.secret, factor.last_step = sealed, 0
        account = f"{user.username}@{self._tenant_name(user)}" if user.tenant_id else user.username
        return Enrolment(secret, totp.provisioning_uri(secret, account))

    def _tenant_name(self, user: User) -> str:
        return self.session.scalar(select(Tenant.name).where(Tenant.id == user.tenant_id)) or ""

    def regenerate_recovery_codes(self) -> list[str]:
        """Ten new recovery codes replacing the old ones; needs a confirmed factor and step-up."""
        user = self._user()
        factor = self.session.get(MfaTotp, user.id)
        if factor is None or factor.confirmed_at is None:
            raise Conflict("You have no confirmed second factor; enrol one first (POST /v1/mfa/totp).")
        require_step_up(self.session, self.principal, "Regenerating recovery codes")
        codes = totp.new_recovery_codes()
        self.session.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user.id))
        for code in codes:
            self.session.add(
                MfaRecoveryCode(
                    id=new_id("mfr"), user_id=user.id, code_hash=totp.recovery_hash(user.id, code)
                )
            )
        return codes

    def reset(self, user_ref: str) -> User:
        """A platform admin removes a user's second factor (a lost device): it logs in with its
        password again and, if its tenant requires one, must enrol anew."""
        if not self.principal.is_global:
            raise Forbidden("Only a platform administrator resets a user's second factor.")
        user = resolve(self.session, self.principal, User, user_ref)
        found = self.session.get(MfaTotp, user.id)
        if found is None:
            raise Conflict(f"User '{user.username}' has no second factor.")
        self.session.delete(found)
        self.session.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user.id))
        events.publish(
            self.session, "mfa.reset", "user", user.id, tenant_id=user.tenant_id, by=self.principal.username
        )
        return user

    # -- the tenant's policy -----------------------------------------------------------------

    def policy(self, tenant_ref: str) -> tuple[Tenant, str]:
        """The tenant's policy: none, admins or everyone."""
        tenant = resolve(self.session, self.principal, Tenant, tenant_ref)
        return tenant, policy_of(self.session, tenant.id)

    def set_policy(self, tenant_ref: str, require: str) -> tuple[Tenant, str]:
        """Require a second factor of the tenant's admins, of everyone, or of nobody (``user:write``)."""
        if require not in POLICIES:
            raise InvalidInput("require", f"must be one of {', '.join(POLICIES)}")
        tenant = resolve(self.session, self.principal, Tenant, tenant_ref)
        if not self.principal.can("user:write"):
            raise Forbidden(f"Your role '{self.principal.role}' lacks the permission 'user:write'.")
        row = self.session.get(TenantMfaPolicy, tenant.id)
        if row is None:
            self.session.add(TenantMfaPolicy(tenant_id=tenant.id, require=require))
        else:
            row.require = require
        events.publish(self.session, "mfa.policy", "tenant", tenant.id, tenant_id=tenant.id, require=require)
        return tenant, require

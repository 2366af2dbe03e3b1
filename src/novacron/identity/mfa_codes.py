"""Checking second-factor codes: at login (the second step), for step-up, to confirm and to disable.

Every check goes through the login throttle (``throttle.py``) under the account's identity and the
client's address, like a password: a wrong code is a failure there, so a stolen password does not
buy unlimited guesses at six digits, and a blocked account is answered 429 before the code is
looked at. A password that was right does not reset the account's failures while a code is owed:
only a right code does. The checks run in transactions of their own (like ``login.py``), so a
refused code's failure is written although the request fails.

A TOTP code is accepted once: the step it belongs to must be later than the last step accepted
(``MfaTotp.last_step``), so a code read over a shoulder or from a log is refused within its
window. A recovery code is single use (``used_at``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from novacron import events
from novacron.db.base import new_id, utcnow
from novacron.db.models import MfaChallenge, MfaRecoveryCode, MfaTotp, User
from novacron.errors import Conflict, InvalidInput, TooManyRequests
from novacron.identity import totp
from novacron.identity.encryption import EncryptionService, encryption_for
from novacron.identity.lookup import account_identity
from novacron.identity.mfa_policy import challenge_hash
from novacron.identity.principal import Principal
from novacron.identity.throttle import Throttled, record_lockouts
from novacron.identity.tokens import TokenService, unauthorized

CHALLENGE_ATTEMPTS = 5
WRONG = "wrong or already used code"


def secret_aad(user_id: str) -> str:
    """What a user's sealed TOTP secret is bound to."""
    return f"mfa_totp.secret:{user_id}"


@dataclass(frozen=True)
class Issued:
    """Tokens for a login whose second step passed."""

    access_token: str
    refresh_token: str
    expires_in: int
    user_id: str
    username: str
    tenant_id: str | None


#: what a right code does, in the transaction that accepted it
Then = Callable[[Session, User, MfaTotp], None]


class MfaCodes:
    """Checks a user's codes in transactions of its own, counted by the login throttle."""

    def __init__(self, tokens: TokenService, source: str | None) -> None:
        self.tokens = tokens
        self.db = tokens.db
        self.throttle = tokens.logins.throttle
        self.source = source
        self._enc: EncryptionService | None = None
        #: (user id, username, tenant id) of the challenge redeemed, for the audit record
        self.owner: tuple[str, str, str | None] | None = None

    @property
    def enc(self) -> EncryptionService:
        if self._enc is None:
            self._enc = encryption_for(self.tokens.settings)
        return self._enc

    # -- the login's second step -----------------------------------------------------------

    def redeem(self, challenge: str, code: str) -> Issued:
        """Tokens for a login challenge and a right code (TOTP or recovery); 401 otherwise."""
        with self.db.read_session() as s:
            row = s.scalar(select(MfaChallenge).where(MfaChallenge.token_hash == challenge_hash(challenge)))
            if row is None or row.expires_at <= utcnow():
                raise unauthorized("The sign-in step expired or is unknown; log in with your password again.")
            user_id, key, challenge_id = row.user_id, row.throttle_key, row.id
            user = s.get(User, user_id)
            if user is not None:
                self.owner = (user.id, user.username, user.tenant_id)
        family = new_id("rt")
        out: list[Issued] = []

        def then(session: Session, user: User, factor: MfaTotp) -> None:
            session.execute(delete(MfaChallenge).where(MfaChallenge.id == challenge_id))
            self.throttle.succeeded(session, key)
            factor.stepup_sid, factor.stepup_at = family, utcnow()
            access, refresh, ttl = self.tokens.issue(session, user, family_id=family)
            out.append(Issued(access, refresh, ttl, user.id, user.username, user.tenant_id))

        try:
            self._check(user_id, key, code, then, recovery=True)
        except (InvalidInput, Conflict):  # a wrong code, or the factor was reset meanwhile
            self._spend_attempt(challenge_id)
            raise unauthorized(f"Second factor: {WRONG}.") from None
        return out[0]

    def _spend_attempt(self, challenge_id: str) -> None:
        with self.db.session() as s:
            row = s.get(MfaChallenge, challenge_id)
            if row is not None:
                row.attempts += 1
                if row.attempts >= CHALLENGE_ATTEMPTS:
                    s.delete(row)

    # -- a signed-in user's codes ------------------------------------------------------------

    def verify(self, principal: Principal, code: str) -> None:
        """Step-up: a right TOTP code marks this login session as having proved one now."""
        sid = principal.extra.get("sid") or None

        def then(session: Session, user: User, factor: MfaTotp) -> None:
            factor.stepup_sid, factor.stepup_at = sid, utcnow()

        self._check_own(principal, code, then)

    def confirm(self, principal: Principal, code: str) -> list[str]:
        """Enrolment's end: the first right code makes the factor count; returns ten recovery
        codes (stored hashed: shown this once)."""
        sid = principal.extra.get("sid") or None
        codes = totp.new_recovery_codes()

        def then(session: Session, user: User, factor: MfaTotp) -> None:
            factor.confirmed_at = utcnow()
            factor.stepup_sid, factor.stepup_at = sid, utcnow()
            session.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user.id))
            for clear in codes:
                digest = totp.recovery_hash(user.id, clear)
                session.add(MfaRecoveryCode(id=new_id("mfr"), user_id=user.id, code_hash=digest))
            events.publish(session, "mfa.enrolled", "user", user.id, tenant_id=user.tenant_id, method="totp")

        self._check_own(principal, code, then, confirmed=False)
        return codes

    def disable(self, principal: Principal, code: str) -> None:
        """Remove the caller's factor and recovery codes, on a current or a recovery code."""

        def then(session: Session, user: User, factor: MfaTotp) -> None:
            session.delete(factor)
            session.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user.id))
            events.publish(session, "mfa.disabled", "user", user.id, tenant_id=user.tenant_id, method="totp")

        self._check_own(principal, code, then, recovery=True)

    def _check_own(
        self, principal: Principal, code: str, then: Then, *, recovery: bool = False, confirmed: bool = True
    ) -> None:
        if principal.kind != "user":
            raise InvalidInput("code", "only a signed-in user proves a code (not an API key or a node)")
        with self.db.read_session() as s:
            key = account_identity(s, principal.username, principal.tenant_id)
        self._check(principal.user_id, key, code, then, recovery=recovery, confirmed=confirmed)

    # -- the check ---------------------------------------------------------------------------

    def _check(
        self, user_id: str, key: str, code: str, then: Then, *, recovery: bool, confirmed: bool = True
    ) -> None:
        """``then`` in the transaction that accepts ``code``; else the failure is counted and
        ``InvalidInput('code')`` raised (``TooManyRequests`` while the account or source is blocked)."""
        try:
            with self.db.read_session() as s:
                admitted = self.throttle.admit(s, key, self.source)
        except Throttled as exc:
            raise TooManyRequests(
                f"Too many failed logins or codes for this account or from this address; try again in "
                f"{exc.retry_after} s.",
                retry_after=exc.retry_after,
            ) from None
        try:
            with self.db.session() as s:
                accepted = self._accept(s, user_id, code, then, recovery=recovery, confirmed=confirmed)
            if not accepted:
                self._failed(user_id, key)
                raise InvalidInput("code", WRONG)
        finally:
            self.throttle.release(admitted)

    def _accept(
        self, s: Session, user_id: str, code: str, then: Then, *, recovery: bool, confirmed: bool
    ) -> bool:
        user = s.get(User, user_id)
        factor = s.get(MfaTotp, user_id)
        if user is None or user.disabled:
            return False
        # the caller's own state, not a guess: answered as a conflict, not counted as a failure
        if factor is None or (confirmed and factor.confirmed_at is None):
            raise Conflict("You have no confirmed second factor; enrol one with POST /v1/mfa/totp.")
        if not confirmed and factor.confirmed_at is not None:
            raise Conflict("A second factor is confirmed already; disable it first to enrol again.")
        if recovery and totp.looks_like_recovery(code):
            digest = totp.recovery_hash(user_id, code)
            row = s.scalar(
                select(MfaRecoveryCode).where(
                    MfaRecoveryCode.user_id == user_id,
                    MfaRecoveryCode.code_hash == digest,
                    MfaRecoveryCode.used_at.is_(None),
                )
            )
            if row is None:
                return False
            row.used_at = utcnow()
            then(s, user, factor)
            return True
        step = totp.match_step(self.enc.open_text(factor.secret, secret_aad(user_id)), code)
        if step is None or step <= factor.last_step:
            return False
        factor.last_step = step
        then(s, user, factor)
        return True

    def _failed(self, user_id: str, key: str) -> None:
        with self.db.session() as s:
            user = s.get(User, user_id)
            lockouts = self.throttle.failed(s, key, self.source)
            record_lockouts(
                s,
                lockouts,
                username=user.username if user else "",
                source=self.source,
                user_id=user_id,
                tenant_id=user.tenant_id if user else None,
            )

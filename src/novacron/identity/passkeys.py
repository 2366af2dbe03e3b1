"""WebAuthn passkeys (py_webauthn) as a second factor next to TOTP.

**Relying party.** The RP id is the host name the caller reached the API at and the expected
origin its scheme and host (``Rp.of``): the browser itself refuses an RP id that is not its page's
host, so a phishing site that proxies the API gets options for its own name, for which no passkey
exists. Chromium wants a secure context and a domain name, not an IP: the dashboard at
``https://localhost:PORT`` works, ``https://127.0.0.1:PORT`` does not.

**Challenges.** Each ceremony's challenge (32 random bytes) is stored bound to its user and
purpose (``register``/``login``) for two minutes, and deleted by the first response that names it,
whether that response verifies or not: a challenge is single use.

**Sign-in.** The login's second step (``POST /v1/tokens/mfa/webauthn``) goes through the login
throttle like a TOTP code (``MfaCodes``): a refused assertion is a failure of the account and
the address, a blocked account is answered 429 first. The assertion must be by one of the user's
own credentials, with a signature counter above the stored one (a cloned authenticator replaying
an older state is refused).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import webauthn
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, parse_client_data_json
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from novacron import events
from novacron.db.base import new_id, utcnow
from novacron.db.models import MfaChallenge, MfaPasskey, MfaPasskeyChallenge, MfaTotp, User
from novacron.errors import Conflict, Forbidden, InvalidInput, NotFound, TooManyRequests
from novacron.identity.lookup import account_identity
from novacron.identity.mfa_codes import Issued, MfaCodes
from novacron.identity.mfa_policy import challenge_hash, required_for
from novacron.identity.principal import Principal
from novacron.identity.throttle import Throttled
from novacron.identity.tokens import unauthorized
from novacron.service import Service

RP_NAME = "NovaCron"
CHALLENGE_TTL_S = 120
T = TypeVar("T")
REFUSED = "the passkey was refused (unknown, not yours, or its challenge was used or expired)"


@dataclass(frozen=True)
class Rp:
    """The relying party a ceremony is for: the host the caller reached, and its origin."""

    rp_id: str
    origin: str

    @classmethod
    def of(cls, scheme: str, host: str) -> Rp:
        """From the request's scheme and ``Host`` header (``name`` or ``name:port``)."""
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return cls(name.strip("[]"), f"{scheme}://{host}")


def _new_challenge(session: Session, user_id: str, purpose: str, challenge: bytes) -> None:
    session.execute(delete(MfaPasskeyChallenge).where(MfaPasskeyChallenge.expires_at < utcnow()))
    session.add(
        MfaPasskeyChallenge(
            id=new_id("mpc"),
            user_id=user_id,
            purpose=purpose,
            challenge=bytes_to_base64url(challenge),
            expires_at=utcnow() + timedelta(seconds=CHALLENGE_TTL_S),
        )
    )


def _take_challenge(session: Session, user_id: str, purpose: str, credential: dict[str, Any]) -> bytes | None:
    """The challenge the response signed, if this server gave it to this user for this purpose
    and it is unexpired; deleted either way (single use). None otherwise."""
    try:
        client_data = credential["response"]["clientDataJSON"]
        challenge = parse_client_data_json(base64url_to_bytes(client_data)).challenge
    except (KeyError, TypeError, ValueError, Exception):
        raise InvalidInput("credential", "not a WebAuthn credential (response.clientDataJSON)") from None
    row = session.scalar(
        select(MfaPasskeyChallenge).where(MfaPasskeyChallenge.challenge == bytes_to_base64url(challenge))
    )
    if row is None:
        return None
    session.delete(row)
    if row.user_id != user_id or row.purpose != purpose or row.expires_at <= utcnow():
        return None
    return challenge


def _descriptors(session: Session, user_id: str) -> list[PublicKeyCredentialDescriptor]:
    ids = session.scalars(select(MfaPasskey.credential_id).where(MfaPasskey.user_id == user_id))
    return [PublicKeyCredentialDescriptor(id=base64url_to_bytes(cid)) for cid in ids]


def has_passkey(session: Session, user_id: str) -> bool:
    """Whether the user registered a passkey (a second factor)."""
    count = session.scalar(select(func.count()).where(MfaPasskey.user_id == user_id))
    return bool(count)


class PasskeyService(Service):
    """The caller's own passkeys: register, list, rename, delete."""

    def _user(self) -> User:
        if self.principal.kind != "user":
            raise Forbidden("Only a signed-in user has passkeys (not an API key or a node).")
        user = self.session.get(User, self.principal.user_id)
        if user is None:
            raise Forbidden("The token's user no longer exists.")
        return user

    def register_options(self, rp: Rp) -> dict[str, Any]:
        """The options for ``navigator.credentials.create`` (its challenge kept for two minutes)."""
        user = self._user()
        options = webauthn.generate_registration_options(
            rp_id=rp.rp_id,
            rp_name=RP_NAME,
            user_id=user.id.encode(),
            user_name=user.username,
            exclude_credentials=_descriptors(self.session, user.id),
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
        )
        _new_challenge(self.session, user.id, "register", options.challenge)
        out: dict[str, Any] = json.loads(webauthn.options_to_json(options))
        return out

    def register(self, rp: Rp, credential: dict[str, Any], name: str) -> MfaPasskey:
        """Store the credential the browser made for the caller's registration challenge."""
        user = self._user()
        challenge = _take_challenge(self.session, user.id, "register", credential)
        if challenge is None:
            raise InvalidInput("credential", REFUSED)
        try:
            done = webauthn.verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=rp.rp_id,
                expected_origin=rp.origin,
            )
        except InvalidRegistrationResponse as exc:
            raise InvalidInput("credential", f"refused: {exc}") from None
        cid = bytes_to_base64url(done.credential_id)
        if self.session.scalar(select(MfaPasskey.id).where(MfaPasskey.credential_id == cid)):
            raise Conflict("This passkey is registered already.")
        row = MfaPasskey(
            id=new_id("pk"),
            user_id=user.id,
            credential_id=cid,
            public_key=done.credential_public_key,
            sign_count=done.sign_count,
            name=name,
        )
        self.session.add(row)
        self.session.flush()
        events.publish(
            self.session, "mfa.enrolled", "user", user.id, tenant_id=user.tenant_id, method="passkey"
        )
        return row

    def list(self) -> list[MfaPasskey]:
        user = self._user()
        rows = self.session.scalars(
            select(MfaPasskey).where(MfaPasskey.user_id == user.id).order_by(MfaPasskey.created_at)
        )
        return list(rows)

    def _own(self, ref: str) -> MfaPasskey:
        user = self._user()
        row = self.session.get(MfaPasskey, ref)
        if row is None or row.user_id != user.id:
            raise NotFound("passkey", ref)
        return row

    def rename(self, ref: str, name: str) -> MfaPasskey:
        row = self._own(ref)
        row.name = name
        return row

    def delete(self, ref: str) -> None:
        """Remove a passkey; refused if it is the last factor of a user its tenant requires one of."""
        row = self._own(ref)
        user = self._user()
        others = self.session.scalar(
            select(func.count()).where(MfaPasskey.user_id == user.id, MfaPasskey.id != row.id)
        )
        totp = self.session.get(MfaTotp, user.id)
        if not others and (totp is None or totp.confirmed_at is None) and required_for(self.session, user):
            raise Conflict(
                "This passkey is your last second factor and your tenant requires one: "
                "add another passkey or an authenticator app first."
            )
        self.session.delete(row)
        events.publish(
            self.session, "mfa.disabled", "user", user.id, tenant_id=user.tenant_id, method="passkey"
        )


#: what a verified assertion does, in the transaction that accepted it
Then = Callable[[Session, User, MfaPasskey], T]


class PasskeyLogin(MfaCodes):
    """Assertions: the login's second step and step-up, counted by the login throttle like codes."""

    def _options(self, s: Session, user_id: str, purpose: str, rp: Rp) -> dict[str, Any]:
        allowed = _descriptors(s, user_id)
        if not allowed:
            # the caller's own state, not a guess: a conflict, as for TOTP without a factor
            raise Conflict(
                "This account has no passkey: use a code, or add one (POST /v1/mfa/webauthn/register)."
            )
        options = webauthn.generate_authentication_options(
            rp_id=rp.rp_id,
            allow_credentials=allowed,
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        _new_challenge(s, user_id, purpose, options.challenge)
        out: dict[str, Any] = json.loads(webauthn.options_to_json(options))
        return out

    def options(self, mfa_token: str, rp: Rp) -> dict[str, Any]:
        """The options for ``navigator.credentials.get``: the user's passkeys, a new challenge."""
        with self.db.session() as s:
            return self._options(s, self._challenge(s, mfa_token).user_id, "login", rp)

    @staticmethod
    def _challenge(s: Session, mfa_token: str) -> MfaChallenge:
        row = s.scalar(select(MfaChallenge).where(MfaChallenge.token_hash == challenge_hash(mfa_token)))
        if row is None or row.expires_at <= utcnow():
            raise unauthorized("The sign-in step expired or is unknown; log in with your password again.")
        return row

    def redeem_passkey(self, mfa_token: str, credential: dict[str, Any], rp: Rp) -> Issued:
        """Tokens for a login challenge and an assertion by one of the user's passkeys; 401 otherwise."""
        with self.db.read_session() as s:
            row = self._challenge(s, mfa_token)
            user_id, key, challenge_id = row.user_id, row.throttle_key, row.id
            user = s.get(User, user_id)
            if user is not None:
                self.owner = (user.id, user.username, user.tenant_id)
        family = new_id("rt")

        def then(s: Session, user: User, passkey: MfaPasskey) -> Issued:
            s.execute(delete(MfaChallenge).where(MfaChallenge.id == challenge_id))
            self.throttle.succeeded(s, key)
            # the login's own factor counts for step-up, as a code's does
            passkey.stepup_sid, passkey.stepup_at = family, utcnow()
            access, refresh, ttl = self.tokens.issue(s, user, family_id=family)
            return Issued(access, refresh, ttl, user.id, user.username, user.tenant_id)

        try:
            return self._throttled(user_id, key, "login", credential, rp, then)
        except InvalidInput:
            self._spend_attempt(challenge_id)
            raise unauthorized(f"Second factor: {REFUSED}.") from None

    # -- step-up -----------------------------------------------------------------------------

    def _own(self, principal: Principal) -> str:
        if principal.kind != "user":
            raise Forbidden("Only a signed-in user signs with a passkey (not an API key or a node).")
        with self.db.read_session() as s:
            return account_identity(s, principal.username, principal.tenant_id)

    def stepup_options(self, principal: Principal, rp: Rp) -> dict[str, Any]:
        """Options for a step-up assertion by one of the caller's passkeys."""
        self._own(principal)
        with self.db.session() as s:
            return self._options(s, principal.user_id, "stepup", rp)

    def stepup(self, principal: Principal, credential: dict[str, Any], rp: Rp) -> None:
        """Step-up: an assertion by one of the caller's passkeys marks this login session as having
        proved a factor now (``InvalidInput('credential')`` if refused, counted by the throttle)."""
        key = self._own(principal)
        sid = principal.extra.get("sid") or None

        def then(s: Session, user: User, passkey: MfaPasskey) -> None:
            passkey.stepup_sid, passkey.stepup_at = sid, utcnow()

        self._throttled(principal.user_id, key, "stepup", credential, rp, then)

    # -- the check ---------------------------------------------------------------------------

    def _throttled(
        self, user_id: str, key: str, purpose: str, credential: dict[str, Any], rp: Rp, then: Then[T]
    ) -> T:
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
            with self.db.session() as s:  # the challenge is spent even if the assertion is refused
                challenge = _take_challenge(s, user_id, purpose, credential)
            try:
                if challenge is None:
                    raise InvalidInput("credential", REFUSED)
                with self.db.session() as s:
                    passkey, user = self._assert(s, user_id, credential, challenge, rp)
                    return then(s, user, passkey)
            except InvalidInput:
                self._failed(user_id, key)
                raise
        finally:
            self.throttle.release(admitted)

    @staticmethod
    def _assert(
        s: Session, user_id: str, credential: dict[str, Any], challenge: bytes, rp: Rp
    ) -> tuple[MfaPasskey, User]:
        """The user's passkey that signed ``challenge`` (its counter and last use updated)."""
        user = s.get(User, user_id)
        cid = str(credential.get("rawId") or credential.get("id") or "")
        passkey = s.scalar(select(MfaPasskey).where(MfaPasskey.credential_id == cid))
        if user is None or user.disabled or passkey is None or passkey.user_id != user_id:
            raise InvalidInput("credential", REFUSED)
        try:
            done = webauthn.verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=rp.rp_id,
                expected_origin=rp.origin,
                credential_public_key=passkey.public_key,
                credential_current_sign_count=passkey.sign_count,
            )
        except InvalidAuthenticationResponse as exc:
            raise InvalidInput("credential", f"refused: {exc}") from None
        passkey.sign_count, passkey.last_used_at = done.new_sign_count, utcnow()
        return passkey, user

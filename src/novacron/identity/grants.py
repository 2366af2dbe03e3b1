"""Token grants for callers without a token yet: a password login, a refresh token traded in.

Refused attempts are answered alike whoever the account is (``login.py``); the audit record of
the request still names the account, when there is one, so its tenant-admin sees its failed
logins. The same mapping answers a user proving its current password (``users.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from novacron.errors import DomainError, InvalidInput, TooManyRequests, Unavailable
from novacron.identity.audit import AuditNote
from novacron.identity.login import LoggedIn, LoginBusy, LoginRefused, MfaChallenged
from novacron.identity.mfa_codes import Issued, MfaCodes
from novacron.identity.sso import SsoLogins
from novacron.identity.tokens import Owner, Refreshed, RefreshRefused, TokenService, unauthorized

BUSY = "Too many logins are being checked right now; retry in a second."


@dataclass(frozen=True)
class Origin:
    """Where an attempt comes from (the client address the throttle counts) and its audit note."""

    source: str | None
    note: AuditNote


def refused(exc: LoginRefused, note: AuditNote) -> DomainError:
    """The answer to a refused login or password check; only the audit note names the account."""
    if exc.account is not None:
        note.hint(actor_id=exc.account.id, tenant_id=exc.account.tenant_id)
    if exc.status == 429:
        return TooManyRequests(exc.detail, retry_after=exc.retry_after or 1)
    if exc.status == 401:
        return unauthorized(exc.detail)
    return InvalidInput("current_password", exc.detail)


def busy() -> Unavailable:
    """503 while too many password hashes wait for a thread."""
    return Unavailable(BUSY, retry_after=LoginBusy.retry_after)


class Grants:
    """Log in with a password, or trade a refresh token, noting who it was for the audit log."""

    def __init__(self, tokens: TokenService, origin: Origin) -> None:
        self.tokens = tokens
        self.origin = origin

    async def password(self, username: str, password: str, tenant: str | None) -> LoggedIn | MfaChallenged:
        """Tokens for these credentials, or a challenge for a second-factor code; throttled per
        account and per client address."""
        note = self.origin.note
        note.hint(actor_name=username[:64])
        try:
            done = await self.tokens.logins.login(username, password, self.origin.source, tenant=tenant)
        except LoginRefused as exc:
            raise refused(exc, note) from None
        except LoginBusy:
            raise busy() from None
        account = done.account
        note.hint(actor_id=account.id, tenant_id=account.tenant_id, resource_id=account.id)
        return done

    def second_factor(self, mfa_token: str, code: str) -> Issued:
        """Tokens for a login's second step: its challenge and a TOTP or recovery code."""
        codes = MfaCodes(self.tokens, self.origin.source)
        try:
            return codes.redeem(mfa_token, code)
        finally:  # a refused code names its account too, so its tenant-admin sees it
            if codes.owner is not None:
                user_id, username, tenant_id = codes.owner
                hints = {"actor_id": user_id, "actor_name": username, "resource_id": user_id}
                self.origin.note.hint(tenant_id=tenant_id, **hints)

    def refresh(self, refresh_token: str) -> Refreshed:
        """New tokens for a refresh token (single use; a reused one ends its login session)."""
        try:
            SsoLogins(self.tokens).recheck(refresh_token)  # a signed-on user: its provider first
            done = self.tokens.refresh(refresh_token)
        except RefreshRefused as exc:
            if exc.owner is not None:
                self._note_owner(exc.owner)
            raise
        self._note_owner(done.owner)
        return done

    def _note_owner(self, owner: Owner) -> None:
        hints = {"actor_id": owner.user_id, "actor_name": owner.username, "resource_id": owner.user_id}
        self.origin.note.hint(tenant_id=owner.tenant_id, **hints)

"""A caller's own login session (who am I, sign out) and the keys that sign access tokens."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from novacron.db.models import SigningKey, Tenant
from novacron.errors import Forbidden
from novacron.identity.mfa_policy import require_step_up
from novacron.identity.principal import Principal
from novacron.service import Service


@dataclass(frozen=True)
class Caller:
    """The principal behind a token, with its tenant's name."""

    principal: Principal
    tenant_name: str | None


class SessionService(Service):
    """What a caller does with its own token."""

    def whoami(self) -> Caller:
        """The caller, with its tenant's name."""
        tenant_name = self.session.scalar(select(Tenant.name).where(Tenant.id == self.principal.tenant_id))
        return Caller(self.principal, tenant_name)

    def logout(self) -> None:
        """Refuse the caller's access token from now on and delete its session's refresh token.

        A node's credential is not a session: it stays valid until an administrator revokes it."""
        principal = self.principal
        if principal.kind == "node":
            raise Forbidden(
                "A node credential is not signed out: it works until an administrator revokes it with "
                f"POST /v1/hosts/{principal.user_id}/revoke (the host goes down; a rejoin token re-keys it)."
            )
        if principal.kind == "api-key":
            key = principal.token_id
            raise Forbidden(f"An API key is not signed out: revoke it with DELETE /v1/api-keys/{key}.")
        tokens = self.ctx.tokens
        tokens.revoke_access(principal.token_id, int(principal.extra.get("exp") or 0), session=self.session)
        if sid := principal.extra.get("sid"):
            tokens.revoke_session(sid, session=self.session)


class SigningKeyService(Service):
    """Rotate the key that signs new access tokens."""

    def rotate(self, alg: str) -> SigningKey:
        """A new signing key; the old one keeps verifying until its tokens expire."""
        require_step_up(self.session, self.principal, "Rotating the signing keys")
        return self.ctx.tokens.keys.rotate(self.session, alg)

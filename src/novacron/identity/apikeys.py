"""API keys: machine identities (CI jobs, scripts, the SDK) that act for a user with a subset of its
permissions, until they expire or are revoked.

A key is ``nck_<key id>_<secret>``: the id finds the row in one primary-key lookup, the secret (256
random bits) is compared by its SHA-256, the only form stored (a fast hash is enough for a secret
that cannot be guessed; passwords need a slow one because people choose them). The secret is
shown once, in the answer to its creation, and never again (an idempotent retry of the creation
gets the key without it).

What a key may do is decided at every request: the permissions it was given that its owner's role
still holds, so demoting or disabling the owner narrows or ends the key at once. A key cannot
mint keys (a leaked key must not be able to outlive its revocation through a child). Each use
records when and from where it was last used, written at most once a minute per address.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from novacron.db.base import Database, new_id, utcnow
from novacron.db.listing import ListParams, paginate
from novacron.db.models import ApiKey, Project, User
from novacron.db.resolve import Named, resolve
from novacron.errors import FieldError, Forbidden, InvalidInput, NotFound
from novacron.identity import authz
from novacron.identity.mfa_policy import ENROL, enrol_only, require_step_up
from novacron.identity.permissions import ROLES, permissions_of
from novacron.identity.principal import Principal
from novacron.identity.scoping import duplicate, flush_unique
from novacron.identity.tokens import unauthorized
from novacron.service import Service

PREFIX = "nck_"
KIND = "api-key"
#: every permission a role grants: what a key may be given
CATALOGUE = frozenset().union(*ROLES.values())
#: how often a key's last use is written for the same address
LAST_USED_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class ApiKeySpec:
    name: str
    #: None: every permission the caller holds now
    permissions: tuple[str, ...] | None
    expires_in_days: int
    #: a project (id or name) the key is limited to; None: the owner's tenant
    project: str | None = None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeyService(Service):
    """Create, list, read and revoke API keys. Your own need no permission; a tenant's (``user:read``
    / ``user:write``) and every tenant's (``global``) are for administrators."""

    def create(self, spec: ApiKeySpec) -> tuple[ApiKey, str]:
        """A new key of the caller's, and the token to use it (shown only now)."""
        principal = self.principal
        if principal.kind != "user":
            raise Forbidden("An API key cannot create API keys; log in as the user to make one.")
        require_step_up(self.session, principal, "Creating an API key")
        wanted = self._granted(spec.permissions)
        if self.session.scalar(
            select(ApiKey.id).where(ApiKey.user_id == principal.user_id, ApiKey.name == spec.name)
        ):
            raise duplicate("name", spec.name, "API key of yours")
        secret = secrets.token_urlsafe(32)
        key = ApiKey(
            id=new_id("key"),
            user_id=principal.user_id,
            tenant_id=principal.tenant_id,
            name=spec.name,
            secret_hash=_digest(secret),
            permissions=sorted(wanted),
            expires_at=utcnow() + timedelta(days=spec.expires_in_days),
            project_id=self._project(spec.project),
        )
        self.session.add(key)
        flush_unique(self.session, "name", spec.name, "API key of yours")
        return key, f"{PREFIX}{key.id}_{secret}"

    def _project(self, ref: str | None) -> str | None:
        if ref is None:
            return None
        return resolve(self.session, self.principal, Project, ref, named=Named("project")).id

    def _granted(self, asked: tuple[str, ...] | None) -> frozenset[str]:
        """The permissions to give: each known and held by the caller (nobody delegates more)."""
        # held anywhere: a key of a user with project- or label-limited roles stays within them
        held = self.principal.permissions.union(*(g.permissions for g in self.principal.grants))
        if asked is None:
            return held
        for i, permission in enumerate(asked):
            if permission not in CATALOGUE:
                raise InvalidInput(
                    f"permissions[{i}]", f"unknown permission '{permission}'; see GET /v1/roles"
                )
            if permission not in held:
                detail = f"You cannot give a key the permission '{permission}': your role does not hold it."
                raise Forbidden(detail, fields=[FieldError(f"permissions[{i}]", "not held by you")])
        return frozenset(asked)

    def list(self, params: ListParams, everyone: bool = False) -> tuple[list[ApiKey], str | None]:
        """The caller's keys; with ``everyone``, those of every user the caller administers."""
        return paginate(self.session, self._visible(everyone), ApiKey, params)

    def _visible(self, everyone: bool) -> Select[ApiKey]:
        principal = self.principal
        stmt = select(ApiKey)
        if not everyone:
            return stmt.where(ApiKey.user_id == principal.user_id)
        if principal.is_global:
            return stmt
        if not principal.can("user:read"):
            raise Forbidden(
                f"Your role '{principal.role}' lacks the permission 'user:read' to see others' keys."
            )
        return stmt.where(ApiKey.tenant_id == principal.tenant_id)

    def get(self, key_id: str) -> ApiKey:
        """One key: your own, or one of a user you administer."""
        key = self.session.get(ApiKey, key_id)
        principal = self.principal
        mine = key is not None and key.user_id == principal.user_id
        administered = key is not None and (
            principal.is_global or (principal.can("user:read") and key.tenant_id == principal.tenant_id)
        )
        if key is None or not (mine or administered):
            raise NotFound("API key", key_id)
        return key

    def revoke(self, key_id: str) -> ApiKey:
        """End a key at once (revoking a revoked key changes nothing)."""
        key = self.get(key_id)
        principal = self.principal
        if key.user_id != principal.user_id and not (principal.is_global or principal.can("user:write")):
            raise Forbidden(
                f"Your role '{principal.role}' lacks the permission 'user:write' to revoke others' keys."
            )
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            self.session.flush()
        return key


def authenticate(db: Database, token: str, source: str | None) -> Principal:
    """The principal behind an API key token, or ``Unauthenticated`` saying why not."""
    key_id, _, secret = token.removeprefix(PREFIX).partition("_")
    if not key_id or not secret:
        raise unauthorized("The API key is malformed: it reads nck_<id>_<secret>.")
    with db.session() as session:
        row = session.execute(
            select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.id == key_id)
        ).first()
        if row is None or not hmac.compare_digest(row[0].secret_hash, _digest(secret)):
            raise unauthorized("The API key is not known; it may have been deleted with its owner.")
        key, user = row
        now = utcnow()
        if key.revoked_at is not None:
            raise unauthorized(f"The API key '{key.name}' was revoked; ask its owner for a new one.")
        if key.expires_at <= now:
            raise unauthorized(
                f"The API key '{key.name}' expired on {key.expires_at:%Y-%m-%d}; make a new one."
            )
        if user.disabled:
            raise unauthorized(f"The account '{user.username}' that owns this API key is disabled.")
        _note_use(session, key, source, now)
        owner = authz.with_assignments(
            Principal(user.id, user.username, user.role, user.tenant_id, permissions_of(user.role)),
            authz.load(session, user_id=user.id),
        )
        own = authz.load(session, key_id=key.id)
        scoped = authz.narrowed_to_key(owner, frozenset(key.permissions), key.id, key.project_id, own)
        return replace(
            scoped,
            token_id=key.id,
            kind=KIND,
            # its owner's tenant requires a second factor the owner has not enrolled: the key is
            # held to the enrolment endpoints like the owner's tokens (which it cannot use either)
            extra={
                "key": key.id,
                "key_name": key.name,
                **({"project": key.project_id} if key.project_id else {}),
                **({"mfa": ENROL} if enrol_only(session, user) else {}),
            },
        )


def _note_use(session: Session, key: ApiKey, source: str | None, now: datetime) -> None:
    """Write the last use when it is a minute old or came from elsewhere (not a write per request)."""
    recent = key.last_used_at is not None and key.last_used_at > now - LAST_USED_EVERY
    if recent and key.last_used_from == source:
        return
    session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now, last_used_from=source))

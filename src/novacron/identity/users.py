"""Users: accounts of a tenant (or, for role ``admin``, of the platform), their roles and passwords.

A caller without ``global`` sees its tenant's users and itself; names are unique per tenant only,
so another tenant's names are neither refused nor revealed. Nobody grants a role with permissions
they do not hold themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import User
from novacron.errors import Conflict, FieldError, Forbidden, InvalidInput, NotFound
from novacron.identity.grants import Origin, busy, refused
from novacron.identity.login import LoginBusy, LoginRefused
from novacron.identity.lookup import name_taken
from novacron.identity.passwords import PasswordPolicyError
from novacron.identity.permissions import SEPARATED, permissions_of
from novacron.identity.scoping import duplicate, flush_unique, target_tenant
from novacron.service import Service


@dataclass(frozen=True)
class UserFilter:
    """Which users to list; None matches any."""

    username: str | None = None
    role: str | None = None
    tenant_id: str | None = None
    disabled: bool | None = None


@dataclass(frozen=True)
class UserSpec:
    """A user to create, with the hash of its (already policy-checked) password."""

    username: str
    password_hash: str
    role: str = "member"
    #: None: the caller's own tenant (platform administrators: required, unless role is admin)
    tenant_id: str | None = None


@dataclass(frozen=True)
class UserChanges:
    """A user's fields to change; None leaves one as it is."""

    role: str | None = None
    disabled: bool | None = None


def _forbidden(detail: str, field: str) -> Forbidden:
    return Forbidden(detail, fields=[FieldError(field, detail)])


class UserService(Service):
    """Create, read, change and delete users, and set passwords."""

    def list(self, params: ListParams, match: UserFilter) -> tuple[list[User], str | None]:
        """One page of the users the caller sees that ``match``."""
        stmt = select(User)
        if not self.principal.is_global:
            stmt = stmt.where(User.tenant_id == self.principal.tenant_id)
        stmt = where_equal(
            stmt,
            (User.username, match.username),
            (User.role, match.role),
            (User.tenant_id, match.tenant_id),
            (User.disabled, match.disabled),
        )
        return paginate(self.session, stmt, User, params)

    def get(self, ref: str) -> User:
        """The user of this id, or of this name among the users the caller sees."""
        principal = self.principal
        user = self.session.get(User, ref) or self._named(ref)
        visible = user is not None and (
            principal.is_global
            or user.id == principal.user_id
            or (user.tenant_id is not None and user.tenant_id == principal.tenant_id)
        )
        if user is None or not visible:
            raise NotFound("user", ref)
        return user

    def new_password_hash(self, password: str, username: str) -> str:
        """The hash of a new password that passes the policy. Call it before the transaction
        writes (or reads: SQLite's write lock is taken then): hashing takes a third of a second."""
        try:
            return self.ctx.tokens.logins.hash_new(password, username=username)
        except PasswordPolicyError as exc:
            raise InvalidInput("password", str(exc)) from exc
        except LoginBusy:
            raise busy() from None

    def create(self, spec: UserSpec) -> User:
        """A new user, in the caller's tenant (admins: the one named; role admin: none)."""
        self._check_role_grant(spec.role)
        if spec.role == "admin":
            if spec.tenant_id is not None:
                raise InvalidInput("tenant_id", "platform administrators belong to no tenant; omit it")
            tenant_id: str | None = None
        else:
            tenant_id = target_tenant(self.session, self.principal, spec.tenant_id)
        if name_taken(self.session, spec.username, tenant_id):
            raise duplicate("username", spec.username, "user")
        user = User(
            id=new_id("user"),
            username=spec.username,
            password_hash=spec.password_hash,
            role=spec.role,
            tenant_id=tenant_id,
        )
        self.session.add(user)
        flush_unique(self.session, "username", spec.username, "user")
        return user

    def update(self, user: User, changes: UserChanges) -> User:
        """Change the role of ``user`` (as read with ``get``) or disable it (its sessions end)."""
        self._check_role_grant(user.role)  # a tenant-admin cannot touch an admin
        if changes.role is not None and changes.role != user.role:
            self._check_role_grant(changes.role)
            if (changes.role == "admin") != (user.tenant_id is None):
                raise InvalidInput("role", "admins belong to no tenant and tenant users cannot become admins")
            if user.id == self.principal.user_id:
                raise _forbidden("You cannot change your own role.", "role")
            user.role = changes.role
        if changes.disabled is not None and changes.disabled != user.disabled:
            if user.id == self.principal.user_id:
                raise _forbidden("You cannot disable yourself.", "disabled")
            user.disabled = changes.disabled
            if changes.disabled:
                self.ctx.tokens.revoke_user_sessions(user.id, session=self.session)
        self.session.flush()
        return user

    def delete(self, ref: str) -> None:
        """Delete a user the caller may grant the role of, other than the caller."""
        user = self.get(ref)
        self._check_role_grant(user.role)
        if user.id == self.principal.user_id:
            raise Conflict("You cannot delete yourself.")
        self.session.delete(user)

    def change_password(self, ref: str, password: str, current: str | None, origin: Origin) -> None:
        """Set a new password; every session of the user ends. Your own needs ``current``, checked
        through the login throttle (a stolen token must not be an unthrottled guessing oracle);
        another's needs ``user:write`` and the right to grant its role."""
        user = self.get(ref)
        principal = self.principal
        logins = self.ctx.tokens.logins
        if user.id != principal.user_id:
            if not principal.can("user:write"):
                raise Forbidden(f"Your role '{principal.role}' lacks the permission 'user:write'.")
            self._check_role_grant(user.role)
        else:
            try:
                logins.check_current(user.id, user.username, current, origin.source)
            except LoginRefused as exc:
                raise refused(exc, origin.note) from None
            except LoginBusy:
                raise busy() from None
        logins.set_password(user.id, self.new_password_hash(password, user.username))

    def _named(self, username: str) -> User | None:
        stmt = select(User).where(User.username == username)
        if not self.principal.is_global:
            stmt = stmt.where(User.tenant_id == self.principal.tenant_id)
        found = list(self.session.scalars(stmt.limit(2)))
        if len(found) > 1:
            raise Conflict(f"Several tenants have a user named '{username}'; name the user by its id.")
        return found[0] if found else None

    def _check_role_grant(self, role: str) -> None:
        """Nobody grants a role with permissions they do not hold themselves (no escalation)."""
        principal = self.principal
        # separated duties (legal holds) are granted by admins who do not hold them themselves
        held = principal.permissions | (SEPARATED if principal.can("tenant:write") else frozenset())
        if not permissions_of(role) <= held:
            raise _forbidden(f"Your role '{principal.role}' cannot grant the role '{role}'.", "role")

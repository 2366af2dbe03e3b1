"""Which user a login names, without telling one tenant which names or tenants another has.

Usernames are unique per tenant (platform users, who have no tenant, among themselves). Like
Keystone's domains and Proxmox's ``user@realm``, a login names its tenant unless it belongs to
the operator:

- ``tenant`` given (its name or id): the user of that name in that tenant; the username is
  taken as typed (it may contain ``@``).
- no ``tenant`` and an ``@`` in the username: ``name@tenant``, split on the LAST ``@`` (so
  ``alice@example.com@acme`` is ``alice@example.com`` of ``acme``). When no tenant has that name
  or id, the whole name is looked up among platform users (only platform admins create those,
  so no tenant can plant a name to test whether a tenant exists); else the user is unknown.
- neither: a platform user of that name, else the user of that name in the operator's own
  tenant ``default`` (identity/bootstrap.py). Users of every other tenant are not looked at,
  so a login never says that a name exists in another tenant.

Tenant names and ids are matched without regard to case or surrounding blanks (both are
lowercase), so no spelling of a tenant behaves differently from another.

``LoginTarget.key`` is the identity the throttle counts failures by. It is the same for every
spelling of one account (tenant by name, by id, or ``@``) and does not depend on whether the
user exists: ``name`` for platform and ``default`` users, ``<tenant id>/name`` for a tenant that
exists, ``<tenant as typed>/name`` for one that does not. An unknown tenant is therefore
answered like an unknown user: same words, same dummy hash, same throttling.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.db.models import Tenant, User
from novacron.identity.bootstrap import DEFAULT_TENANT


@dataclass(frozen=True)
class LoginTarget:
    """The user a login names (None: unknown) and the identity its failures are counted by."""

    user_id: str | None
    key: str


def _tenant_id(session: Session, text: str) -> str | None:
    text = text.strip().lower()
    if not text:
        return None
    return session.scalar(select(Tenant.id).where((Tenant.name == text) | (Tenant.id == text)))


def _default_tenant_id(session: Session) -> str | None:
    return session.scalar(select(Tenant.id).where(Tenant.name == DEFAULT_TENANT))


def _user(session: Session, username: str, tenant_id: str | None) -> str | None:
    scope = User.tenant_id.is_(None) if tenant_id is None else User.tenant_id == tenant_id
    return session.scalar(select(User.id).where(scope, User.username == username))


def _unknown_tenant_key(tenant_text: str, name: str) -> str:
    return f"{tenant_text.strip().lower()}/{name}"


def account_identity(session: Session, username: str, tenant_id: str | None) -> str:
    """The throttle identity of an existing account (what its logins are counted by)."""
    if tenant_id is None and "@" in username:  # a platform user that signs in as "name@what"
        name, _, tenant_text = username.rpartition("@")
        return _unknown_tenant_key(tenant_text, name)
    if tenant_id is None or tenant_id == _default_tenant_id(session):
        return username
    return f"{tenant_id}/{username}"


def resolve_login(session: Session, username: str, tenant: str | None = None) -> LoginTarget:
    """The user a login names and its throttle identity (see the module docstring)."""
    if tenant is None and "@" in username:
        name, _, tenant_text = username.rpartition("@")
        tenant_id = _tenant_id(session, tenant_text)
        if tenant_id is None:
            # only platform admins create platform users: no tenant can use this to probe tenants
            return LoginTarget(_user(session, username, None), _unknown_tenant_key(tenant_text, name))
        return LoginTarget(_user(session, name, tenant_id), account_identity(session, name, tenant_id))
    if tenant is not None:
        tenant_id = _tenant_id(session, tenant)
        if tenant_id is None:
            return LoginTarget(None, _unknown_tenant_key(tenant, username))
        return LoginTarget(
            _user(session, username, tenant_id), account_identity(session, username, tenant_id)
        )
    user_id = _user(session, username, None)
    if user_id is None and (default := _default_tenant_id(session)) is not None:
        user_id = _user(session, username, default)
    return LoginTarget(user_id, username)


def name_taken(session: Session, username: str, tenant_id: str | None) -> bool:
    """Whether ``username`` is used in ``tenant_id`` (None: among platform users); other tenants'
    names are not looked at, so creating a user never reveals them."""
    scope = User.tenant_id.is_(None) if tenant_id is None else User.tenant_id == tenant_id
    return session.scalar(select(User.id).where(scope, User.username == username)) is not None

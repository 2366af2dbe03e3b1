"""Finding users by name without telling one tenant which names another uses.

Usernames are unique per tenant (platform users, who have no tenant, among themselves), so a
name alone may match users of several tenants. A login names the tenant (``tenant``: its name or
id) when its username is not unique; without one, a platform user of that name comes first, then
the only tenant user of that name. An ambiguous name without a tenant is answered exactly as an
unknown user, so the answer never says that a name exists elsewhere.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.db.models import Tenant, User

#: a name shared by more tenants than this is not looked at further without a tenant
_AMBIGUITY_SCAN = 50


def resolve_login(session: Session, username: str, tenant: str | None = None) -> str | None:
    """The id of the user a login names, or None (unknown, or ambiguous without ``tenant``)."""
    if tenant:
        tenant_id = session.scalar(select(Tenant.id).where((Tenant.name == tenant) | (Tenant.id == tenant)))
        if tenant_id is None:
            return None
        return session.scalar(select(User.id).where(User.tenant_id == tenant_id, User.username == username))
    rows = session.execute(
        select(User.id, User.tenant_id).where(User.username == username).limit(_AMBIGUITY_SCAN)
    ).all()
    platform = [r.id for r in rows if r.tenant_id is None]
    if platform:
        return str(platform[0])
    return str(rows[0].id) if len(rows) == 1 else None


def name_taken(session: Session, username: str, tenant_id: str | None) -> bool:
    """Whether ``username`` is used in ``tenant_id`` (None: among platform users); other tenants'
    names are not looked at, so creating a user never reveals them."""
    scope = User.tenant_id.is_(None) if tenant_id is None else User.tenant_id == tenant_id
    return session.scalar(select(User.id).where(scope, User.username == username)) is not None

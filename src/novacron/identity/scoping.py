"""What the tenant, project and user services share: finding a tenant, the tenant a create lands
in, and names that must be unique (a race on a unique constraint is a 409, never a 500)."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from novacron.db.models import Tenant
from novacron.errors import Conflict, FieldError, InvalidInput, NotFound
from novacron.identity.principal import Principal


def duplicate(field: str, value: str, kind: str) -> Conflict:
    """409 for a ``field`` whose ``value`` another ``kind`` already has."""
    return Conflict(
        f"A {kind} with {field} '{value}' already exists.", fields=[FieldError(field, "already used")]
    )


def flush_unique(session: Session, field: str, value: str, kind: str) -> None:
    """Flush; a unique-constraint race becomes ``duplicate`` naming the field."""
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise duplicate(field, value, kind) from exc


def find_tenant(session: Session, ref: str) -> Tenant | None:
    """The tenant of this id or name, if any (visible or not)."""
    return session.scalar(select(Tenant).where(or_(Tenant.id == ref, Tenant.name == ref)))


def target_tenant(session: Session, principal: Principal, tenant_id: str | None) -> str:
    """The tenant a create lands in: the caller's own, or (admins) the one named."""
    if tenant_id is None:
        if principal.tenant_id is None:
            raise InvalidInput("tenant_id", "required for platform administrators, who belong to no tenant")
        return principal.tenant_id
    tenant = find_tenant(session, tenant_id)
    if tenant is None or not principal.sees_tenant(tenant.id):
        missing = NotFound("tenant", tenant_id)
        missing.fields.append(FieldError("tenant_id", "no such tenant"))
        raise missing
    return tenant.id

"""What the tenant, project and user services share: the tenant a create lands in, and names
that must be unique (a race on a unique constraint is a 409, never a 500)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from novacron.db.models import Tenant
from novacron.db.resolve import Named, resolve
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


def target_tenant(session: Session, principal: Principal, tenant_id: str | None) -> str:
    """The tenant a create lands in: the caller's own, or (admins) the one named."""
    if tenant_id is None:
        if principal.tenant_id is None:
            raise InvalidInput("tenant_id", "required for platform administrators, who belong to no tenant")
        return principal.tenant_id
    return resolve(session, principal, Tenant, tenant_id, named=Named("tenant_id", missing=NotFound)).id

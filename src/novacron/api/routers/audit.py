"""/v1/audit: the audit log, newest first (what is recorded: ``identity/audit.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from novacron.api.deps import service
from novacron.api.listing import Page
from novacron.db.listing import MAX_LIMIT
from novacron.identity.audit import AuditLog, AuditQuery

router = APIRouter(prefix="/v1/audit", tags=["audit"])

AuditReader = Annotated[AuditLog, Depends(service(AuditLog, "audit:read", write=False))]


class AuditOut(BaseModel):
    id: int
    time: datetime
    actor_id: str | None
    actor_name: str | None
    tenant_id: str | None
    action: str
    method: str
    path: str
    resource_id: str | None
    source_ip: str | None
    status_code: int
    outcome: str
    #: JSON of what the handler decided (the policy engine's decisions on a create), if anything
    detail: str | None = None


def audit_query(
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
    sort: Literal["time", "-time"] = "-time",
    actor: str | None = Query(None, description="actor id or username"),
    action: str | None = None,
    outcome: Literal["success", "denied", "failed"] | None = None,
    tenant_id: str | None = None,
    resource_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditQuery:
    """The audit list's query parameters (its cursor is a record id: ids grow with time)."""
    return AuditQuery(limit, cursor, sort, actor, action, outcome, tenant_id, resource_id, since, until)


@router.get("", response_model=Page[AuditOut])
def list_audit(log: AuditReader, query: Annotated[AuditQuery, Depends(audit_query)]) -> Page[AuditOut]:
    """The audit log, newest first: a tenant-admin sees its tenant's records, an admin all."""
    rows, nxt = log.list(query)
    return Page[AuditOut](
        items=[AuditOut.model_validate(r, from_attributes=True) for r in rows], next_cursor=nxt
    )

"""The audit log: one record for every mutating HTTP request (POST, PUT, PATCH, DELETE), and
for every request refused for a bad credential (401 on a request that presented a token).

``api/audit.py`` watches each request go by and writes its record (``write_record``) once the
request is over; this module names what the record says and reads the log back. Every record is
a link of a hash chain with signed checkpoints (``db/models/audit_chain.py``,
``audit_chain.py``); ``audit_export.py`` exports it for a SIEM.

Who: the authenticated principal; a request without one (e.g. the password login) is named by
what its handler or service notes down (``AuditNote``), which can also carry a ``detail``.
Action: ``<resource>.<verb>`` from the route template, e.g. ``POST /v1/projects`` ->
``project.create``, ``POST /v1/users/{user_id}/password`` -> ``user.password``,
``DELETE /v1/tokens/current`` -> ``token.delete``; unmatched paths keep ``METHOD path``.
Tenant: the caller's; a platform administrator's record names the tenant that owns the resource
it acted on (by the response, a handler's note, or the row the path names), so that tenant sees it.
Outcome: ``success`` (< 400), ``denied`` (401, 403, 404), ``failed`` (anything else).
The source IP is the client address (``clientaddr.py``: the peer, or what a trusted proxy
reports). Refusals (401, 429) are bounded (``audit_limit.py``) so an anonymous flood cannot fill
the log; their ``detail`` says why (the problem's ``detail``) and how many were not written.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from novacron.db.base import Base, Database
from novacron.db.listing import where_equal
from novacron.db.models import AuditRecord
from novacron.errors import MalformedInput
from novacron.identity.audit_chain import maybe_checkpoint
from novacron.identity.audit_export import export_lines
from novacron.identity.keys import KeyRing
from novacron.service import Service

_VERB = {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}


@dataclass
class AuditNote:
    """What a request's audit record cannot see for itself, noted down while the request runs."""

    #: ``actor_id``, ``actor_name``, ``tenant_id``, ``resource_id``: for a request without an
    #: authenticated principal, or whose response does not show them
    hints: dict[str, str | None] = field(default_factory=dict)
    #: JSON-able; may still be filled in after it is set (a list the handler appends decisions to)
    detail: Any = None

    def hint(self, **fields: str | None) -> None:
        """Name the actor, tenant or resource of the request."""
        self.hints.update(fields)


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def action_name(method: str, template: str | None, path: str) -> str:
    """``project.create`` from ``POST /v1/projects`` and friends; see the module docstring."""
    if not template:
        return f"{method} {path}"[:64]
    parts = [p for p in template.strip("/").split("/") if p]
    if parts and parts[0] in {"v1", "v2"}:
        parts = parts[1:]
    if parts and parts[0].startswith("."):  # /.well-known/...
        parts = parts[1:]
    if not parts:
        return f"{method} {path}"[:64]
    resource: str | None = None
    verb = _VERB.get(method, method.lower())
    prev_literal = False
    for i, part in enumerate(parts):
        is_param = part.startswith("{")
        last = i == len(parts) - 1
        if is_param:
            prev_literal = False
            if last and method == "POST":
                verb = "update"
            continue
        if last and resource is not None and (method == "POST" or prev_literal):
            # a sub-action: /vms/{id}/start, /tokens/refresh, /users/{id}/password
            if method == "POST":
                verb = part
            break
        resource = _singular(part)
        prev_literal = True
    return f"{resource or parts[0]}.{verb}"[:64]


def outcome_of(status: int) -> str:
    """``success``, ``denied`` or ``failed`` for a response status."""
    if status < 400:
        return "success"
    if status in (401, 403, 404):
        return "denied"
    return "failed"


def _owner_tenant(session: Session, path: str) -> str | None:
    """The tenant owning the resource a platform administrator (an actor of no tenant) acted on,
    so that tenant sees the action: the table the path names (``/v1/vms/{id}/...`` -> ``vms``),
    if it has a tenant and the row still exists (a deleted one is gone: not attributed)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 3 or parts[0] != "v1":
        return None
    table = Base.metadata.tables.get(parts[1].replace("-", "_"))
    if table is None or "tenant_id" not in table.c or "id" not in table.c:
        return None
    owner = session.execute(select(table.c.tenant_id).where(table.c.id == parts[2])).scalar()
    return str(owner) if owner else None


def write_record(db: Database, record: AuditRecord, keys: KeyRing | None = None) -> None:
    """Store one audit record in a transaction of its own (the request's own one is over),
    chained (``db/models/audit_chain.py``), and a signed checkpoint when one is due (``keys``)."""
    with db.session() as session:
        if record.tenant_id is None and record.actor_id is not None:
            record.tenant_id = _owner_tenant(session, record.path)
        session.add(record)
        session.flush()
        if keys is not None:
            maybe_checkpoint(session, keys)


@dataclass(frozen=True)
class AuditQuery:
    """Which audit records to list, and one page of them (``-time``: newest first)."""

    limit: int = 50
    cursor: str | None = None
    sort: str = "-time"
    actor: str | None = None
    action: str | None = None
    outcome: str | None = None
    tenant_id: str | None = None
    resource_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _audit_cursor(record_id: int) -> str:
    return base64.urlsafe_b64encode(str(record_id).encode()).decode().rstrip("=")


def _audit_after(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except ValueError as exc:
        raise MalformedInput("cursor", "not a cursor this API returned", part="query") from exc


class AuditLog(Service):
    """Read the audit log: a tenant-admin its tenant's records, an admin all."""

    def list(self, query: AuditQuery) -> tuple[list[AuditRecord], str | None]:
        """One page of records matching ``query``, and the cursor of the next page."""
        stmt = select(AuditRecord)
        if not self.principal.is_global:
            stmt = stmt.where(AuditRecord.tenant_id == self.principal.tenant_id)
        if query.actor is not None:
            stmt = stmt.where(or_(AuditRecord.actor_id == query.actor, AuditRecord.actor_name == query.actor))
        stmt = where_equal(
            stmt,
            (AuditRecord.action, query.action),
            (AuditRecord.outcome, query.outcome),
            (AuditRecord.tenant_id, query.tenant_id),
            (AuditRecord.resource_id, query.resource_id),
        )
        if query.since is not None:
            stmt = stmt.where(AuditRecord.time >= query.since)
        if query.until is not None:
            stmt = stmt.where(AuditRecord.time < query.until)
        desc = query.sort == "-time"
        if query.cursor:
            after = _audit_after(query.cursor)
            stmt = stmt.where(AuditRecord.id < after if desc else AuditRecord.id > after)
        # ids grow with time, so ordering by id is ordering by time (and uses the primary key)
        order = AuditRecord.id.desc() if desc else AuditRecord.id.asc()
        rows = list(self.session.scalars(stmt.order_by(order).limit(query.limit + 1)))
        if len(rows) <= query.limit:
            return rows, None
        rows = rows[: query.limit]
        return rows, _audit_cursor(rows[-1].id)

    def export(self, fmt: str) -> Iterator[str]:
        """Every record this caller may read, oldest first, as lines of ``fmt`` (``audit_export.py``)."""
        return export_lines(self.ctx.db, self.principal, fmt)

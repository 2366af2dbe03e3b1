"""The event log: every state change is a row, followed by clients over SSE or WebSocket.

Events are written in the same transaction as the change they describe, so a
follower never sees an event for a change that rolled back. Followers read by
sequence number, which works the same with several API processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from novacron.db.models import Event
from novacron.identity.principal import Principal


def publish(
    session: Session,
    type_: str,
    resource_type: str,
    resource_id: str,
    *,
    tenant_id: str | None,
    project_id: str | None = None,
    **data: Any,
) -> Event:
    event = Event(
        type=type_,
        resource_type=resource_type,
        resource_id=resource_id,
        tenant_id=tenant_id,
        project_id=project_id,
        data=data,
    )
    session.add(event)
    return event


def _visible(principal: Principal, types: Sequence[str]) -> Select[Event]:
    stmt = select(Event)
    if not principal.is_global:
        # tenant-less events (hosts, platform) are shown to admins only
        stmt = stmt.where(Event.tenant_id == principal.tenant_id)
    if types:
        stmt = stmt.where(or_(*(Event.type.like(t.replace("*", "%")) for t in types)))
    return stmt


def visible_since(
    session: Session, principal: Principal, after_seq: int, limit: int = 200, types: Sequence[str] = ()
) -> list[Event]:
    stmt = _visible(principal, types).where(Event.seq > after_seq)
    return list(session.scalars(stmt.order_by(Event.seq).limit(limit)))


def visible_tail(
    session: Session, principal: Principal, limit: int, types: Sequence[str] = ()
) -> list[Event]:
    """The newest ``limit`` events the principal may see, oldest first (a dashboard's "recent")."""
    stmt = _visible(principal, types).order_by(Event.seq.desc()).limit(limit)
    return list(reversed(list(session.scalars(stmt))))


def latest_seq(session: Session) -> int:
    last = session.scalar(select(Event.seq).order_by(Event.seq.desc()).limit(1))
    return last or 0


def as_dict(event: Event) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "time": event.time.isoformat(),
        "type": event.type,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "tenant_id": event.tenant_id,
        "project_id": event.project_id,
        "data": event.data,
    }

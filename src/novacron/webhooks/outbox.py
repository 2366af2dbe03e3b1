"""The durable outbox: events become delivery rows, in the same order and transaction as the
subscription's cursor moves, so a restart (or a new leader) neither loses nor re-queues one.

Each round reads, per subscription, the events after its ``cursor_seq`` that its tenant owns (all
events for a platform administrator's subscription), queues those it matches, and moves the cursor
past every event read. A paused subscription keeps queueing (bounded by ``MAX_PENDING``): resuming
it delivers what happened meanwhile.
"""

from __future__ import annotations

import fnmatch
import secrets

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from novacron import events
from novacron.db.base import utcnow
from novacron.db.models import Event, WebhookDelivery, WebhookSubscription

#: events read per subscription per round
BATCH = 500
#: pending deliveries a subscription may hold; beyond, new events are dropped and counted
MAX_PENDING = 10_000


def message_id() -> str:
    """A ``webhook-id``: unique per message, the same for every attempt of it."""
    return f"msg_{secrets.token_hex(12)}"


def matches(sub: WebhookSubscription, event: Event) -> bool:
    """Whether ``event`` goes to ``sub`` (its types are shell-style patterns: ``vm.*``)."""
    if not any(fnmatch.fnmatchcase(event.type, p) for p in sub.event_types):
        return False
    if sub.resource_types and event.resource_type not in sub.resource_types:
        return False
    return sub.project_id is None or event.project_id == sub.project_id


def payload_of(event: Event) -> dict[str, object]:
    """The message body, in Standard Webhooks' shape: type, timestamp, data (the event)."""
    return {"type": event.type, "timestamp": event.time.isoformat(), "data": events.as_dict(event)}


def subscriptions(session: Session) -> list[WebhookSubscription]:
    """Every subscription, paused ones too (they keep queueing)."""
    return list(session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.id)))


def fill(session: Session, subs: list[WebhookSubscription] | None = None) -> int:
    """Queue every subscription's (or ``subs``') new matching events; the number queued."""
    queued = 0
    for sub in subscriptions(session) if subs is None else subs:
        stmt = select(Event).where(Event.seq > sub.cursor_seq).order_by(Event.seq).limit(BATCH)
        if sub.tenant_id is not None:
            stmt = stmt.where(Event.tenant_id == sub.tenant_id)
        batch = list(session.scalars(stmt))
        if not batch:
            continue
        room = MAX_PENDING - _pending(session, sub.id)
        for event in batch:
            if not matches(sub, event) or room <= 0:
                continue
            session.add(
                WebhookDelivery(
                    id=message_id(),
                    subscription_id=sub.id,
                    tenant_id=sub.tenant_id,
                    event_seq=event.seq,
                    event_type=event.type,
                    payload=payload_of(event),
                    state="pending",
                    attempts=0,
                    next_attempt_at=utcnow(),
                )
            )
            room, queued = room - 1, queued + 1
        set_fields(session, sub.id, cursor_seq=batch[-1].seq)
    return queued


def _pending(session: Session, subscription_id: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.subscription_id == subscription_id, WebhookDelivery.state == "pending")
        )
        or 0
    )


def set_fields(session: Session, sub_id: str, *, bump: bool = False, **values: object) -> None:
    """Change a subscription without the ORM's version check: the dispatcher's bookkeeping (the
    cursor, the failure count) must not fail a tenant's concurrent PATCH nor be failed by it, nor
    move the ETag; ``bump``: a change the tenant sees (a pause)."""
    if bump:
        values["version"] = WebhookSubscription.version + 1
    session.execute(
        update(WebhookSubscription)
        .where(WebhookSubscription.id == sub_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )

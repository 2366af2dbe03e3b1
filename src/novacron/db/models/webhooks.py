"""Webhook subscriptions (a tenant's URL for chosen event types) and their durable delivery outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, UTCDateTime, Versioned, utcnow


class WebhookSubscription(Timestamped, Versioned, Base):
    """A URL that receives the events of its tenant matching ``event_types`` (and, when set,
    ``resource_types`` and ``project_id``), signed as Standard Webhooks specifies.

    ``state``: active, paused (after ``pause_after`` failed attempts in a row, or by its owner),
    ``cursor_seq``: the last event considered for it (the outbox is filled from there on).
    """

    __tablename__ = "webhook_subscriptions"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: None: a platform administrator's subscription, which sees every event
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    name: Mapped[str] = mapped_column(String(64))
    #: sealed (it may carry credentials or a token in its query)
    url: Mapped[str] = mapped_column(Text)
    url_shown: Mapped[str] = mapped_column(String(512))
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    resource_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: signing secrets, newest first: ``{"secret": sealed, "expires_at": ISO time or None}``
    secrets: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), default="active")
    paused_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    cursor_seq: Mapped[int] = mapped_column(BigInteger, default=0)


class WebhookDelivery(Base):
    """One event to send to one subscription (the outbox row), with its attempts' outcome.

    ``state``: pending (to send at ``next_attempt_at``), succeeded, failed (attempts exhausted).
    """

    __tablename__ = "webhook_deliveries"
    #: the ``webhook-id`` header: the same for every attempt, so a receiver can drop duplicates
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[str | None] = mapped_column(String(40), index=True)
    event_seq: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: the start of the receiver's last answer (at most 512 characters)
    last_response: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

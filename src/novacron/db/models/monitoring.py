"""Alerting: rules the engines evaluate, receivers notifications go to, and the alerts they raised."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, UTCDateTime, Versioned, utcnow


class AlertRule(Timestamped, Versioned, Base):
    """A condition on metric series; a tenant's reads only its own series, an admin's (no tenant)
    reads every series."""

    __tablename__ = "alert_rules"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: None: a platform rule, written by an administrator over every series
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    #: threshold, rate_of_change, absence, anomaly, burn_rate
    kind: Mapped[str] = mapped_column(String(16))
    #: the kind's parameters (metric, matchers, window, op, value, expr)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: the PromQL the engine evaluates, derived from ``spec``
    expr: Mapped[str] = mapped_column(Text)
    for_s: Mapped[int] = mapped_column(Integer, default=0)
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    annotations: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    #: ids of the receivers its alerts are sent to
    receiver_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class AlertReceiver(Timestamped, Versioned, Base):
    """Where notifications go (a signed webhook, an email address, the event stream) and the
    notification policy of that route (grouping, waits, repeats, matchers)."""

    __tablename__ = "alert_receivers"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    #: webhook, email, event
    kind: Mapped[str] = mapped_column(String(16))
    #: the webhook's URL, sealed (it may carry credentials or a token); never shown by the API ...
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: ... which shows this instead: no user:password, no query (``netguard.safe_url``)
    url_shown: Mapped[str | None] = mapped_column(Text, nullable=True)
    email_to: Mapped[str | None] = mapped_column(String(254), nullable=True)
    #: the webhook's HMAC key, sealed (``identity/encryption.py``); never shown by the API
    signing_secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    group_by: Mapped[list[str]] = mapped_column(JSON, default=list)
    group_wait_s: Mapped[int] = mapped_column(Integer, default=0)
    group_interval_s: Mapped[int] = mapped_column(Integer, default=60)
    repeat_interval_s: Mapped[int] = mapped_column(Integer, default=4 * 3600)
    #: Alertmanager matchers over alert labels (``{"name":..., "op": "=", "value":...}``)
    matchers: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)


class Alert(Base):
    """The last notified state of one alert (firing or resolved), as Alertmanager reported it."""

    __tablename__ = "alerts"
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40), index=True)
    rule_id: Mapped[str | None] = mapped_column(String(40), index=True)
    name: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16), default="")
    #: firing, resolved
    state: Mapped[str] = mapped_column(String(16))
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    annotations: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AlertingPeer(Base):
    """A replica's Alertmanager in the cluster that deduplicates notifications and shares silences:
    its gossip address, refreshed while it runs (``monitoring/alerting/cluster.py``)."""

    __tablename__ = "alerting_peers"
    address: Mapped[str] = mapped_column(String(260), primary_key=True)
    replica: Mapped[str] = mapped_column(String(255))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

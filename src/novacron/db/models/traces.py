"""The local store of recent trace spans (``monitoring/tracestore.py``), bounded by age and count."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, UTCDateTime


class TraceSpan(Base):
    """One finished span, of the server's own code or sent by an agent with its operation's answer."""

    __tablename__ = "trace_spans"
    #: trace id (32 hex) + span id (16 hex): a span sent twice is stored once
    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    trace_id: Mapped[str] = mapped_column(String(32), index=True)
    span_id: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    #: novacron-api or novacron-agent (the OpenTelemetry ``service.name``)
    service: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    #: where a trace enters the platform (an API request, or a span without a parent): what the
    #: list of traces shows
    entry: Mapped[bool] = mapped_column(Boolean, index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    duration_us: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    #: unset, ok, error
    status: Mapped[str] = mapped_column(String(8))
    status_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: the tenant of the API caller whose request this span served (set on API spans only)
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)

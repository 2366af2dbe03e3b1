"""The default local store of recent traces: finished spans as rows of the platform database.

Always on, whether or not spans also go to an OTLP collector, so a trace can be read back through
the API and the dashboard with nothing else installed. The database (not process memory) because
one trace crosses processes: an API request served by one replica, its task run by the leader, its
operations by an agent on another host. Bounded by age (``NOVACRON_TRACE_RETENTION_HOURS``) and
by count (``NOVACRON_TRACE_MAX_SPANS``): pruned at most once a minute, after a write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from sqlalchemy import delete, insert, select

from novacron.config import Settings
from novacron.db.base import Database, utcnow
from novacron.db.models import TraceSpan
from novacron.monitoring.tracing import AGENT, API, TENANT, record_of, setup

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 60.0
#: spans an agent may hand over with one answer, and the longest name or attribute text kept
MAX_AGENT_SPANS = 2000
MAX_TEXT = 500
HEX = set("0123456789abcdef")


class TraceStore(SpanExporter):
    """Writes finished spans to ``trace_spans`` and prunes it; an OpenTelemetry span exporter."""

    def __init__(self, db: Database, retention: timedelta, max_spans: int) -> None:
        self.db = db
        self.retention = retention
        self.max_spans = max_spans
        self._pruned_at = 0.0
        self._prune_lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            self.write(record_of(s) for s in spans)
        except Exception:
            log.exception("could not store %d spans", len(spans))
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def write(self, records: Iterable[dict[str, Any]]) -> int:
        """Store span records (``tracing.record_of``); returns how many were new."""
        rows = {r["id"]: r for r in map(_row, records)}
        if not rows:
            return 0
        with self.db.session() as s:
            known = set(s.scalars(select(TraceSpan.id).where(TraceSpan.id.in_(list(rows)))))
            new = [row for key, row in rows.items() if key not in known]
            if new:
                # one executemany, not the ORM's unit of work: the store's writes are per span
                s.execute(insert(TraceSpan), new)
        self._maybe_prune()
        return len(new)

    def ingest_agent_spans(self, records: list[dict[str, Any]], trace_id: str, host: str) -> int:
        """Spans an agent sent with an operation's answer: only those of the operation's own trace
        (a host cannot write into other traces), named with the host the credential belongs to, and
        never claiming a tenant (only the API says whose a request was); one malformed is skipped."""
        kept = []
        for record in records[:MAX_AGENT_SPANS]:
            if not isinstance(record, dict) or record.get("trace_id") != trace_id:
                continue
            attributes = record.get("attributes")
            attributes = attributes if isinstance(attributes, dict) else {}
            attributes.pop(TENANT, None)
            span = {**record, "service": AGENT, "host": host, "attributes": attributes}
            try:
                _row(span)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("agent of %s sent a span that is not one: %s", host, exc)
                continue
            kept.append(span)
        return self.write(kept)

    def _maybe_prune(self) -> None:
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_S or not self._prune_lock.acquire(blocking=False):
            return
        try:
            self._pruned_at = time.monotonic()
            self.prune()
        finally:
            self._prune_lock.release()

    def prune(self) -> int:
        """Drop spans older than the retention, then the oldest beyond ``max_spans``."""
        with self.db.session() as s:
            gone = s.execute(delete(TraceSpan).where(TraceSpan.started_at < utcnow() - self.retention))
            removed = int(gone.rowcount)  # type: ignore[attr-defined]
            cutoff = s.scalar(
                select(TraceSpan.started_at)
                .order_by(TraceSpan.started_at.desc())
                .offset(self.max_spans)
                .limit(1)
            )
            if cutoff is not None:
                gone = s.execute(delete(TraceSpan).where(TraceSpan.started_at <= cutoff))
                removed += int(gone.rowcount)  # type: ignore[attr-defined]
        return removed


def _row(record: dict[str, Any]) -> dict[str, Any]:
    """The ``trace_spans`` row of a span record (``tracing.record_of``); ValueError if it is none."""
    trace_id, span_id = str(record["trace_id"]), str(record["span_id"])
    if len(trace_id) != 32 or len(span_id) != 16 or not set(trace_id + span_id) <= HEX:
        raise ValueError(f"not a span id: {trace_id}/{span_id}")
    parent = record.get("parent_id")
    attributes = {str(k)[:100]: _bounded(v) for k, v in dict(record.get("attributes") or {}).items()}
    kind = str(record.get("kind", "internal"))[:16]
    tenant = attributes.get(TENANT) if record.get("service") == API else None
    return dict(
        id=trace_id + span_id,
        trace_id=trace_id,
        span_id=span_id,
        parent_id=str(parent)[:16] if parent else None,
        name=str(record["name"])[:200],
        service=str(record.get("service", ""))[:32],
        host=str(record.get("host", ""))[:64],
        kind=kind,
        # a request that came in (whatever trace it continues) or a span with no parent at all
        entry=kind == "server" or not parent,
        started_at=datetime.fromtimestamp(int(record["start_ns"]) / 1e9, UTC),
        duration_us=max(0, int(record["duration_us"])),
        status=str(record.get("status", "unset"))[:8],
        status_message=str(record["status_message"])[:MAX_TEXT] if record.get("status_message") else None,
        attributes=attributes,
        tenant_id=str(tenant) if tenant else None,
    )


def _bounded(value: Any) -> str | int | float | bool:
    if isinstance(value, bool | int | float):
        return value
    return str(value)[:MAX_TEXT]


def start_node_tracing(settings: Settings, db: Database) -> TraceStore:
    """Tracing of a server process: its API spans, and its embedded agent's if it has one, to the
    local store (and the collector when configured). Returns the store (agents' spans go there)."""
    store = TraceStore(db, timedelta(hours=settings.trace_retention_hours), settings.trace_max_spans)
    services = (API, AGENT) if settings.embedded_agent else (API,)
    for service in services:
        setup(
            service,
            settings.host_name,
            local=store,
            otlp_endpoint=settings.otlp_endpoint,
            sample_ratio=settings.trace_sample_ratio,
        )
    return store

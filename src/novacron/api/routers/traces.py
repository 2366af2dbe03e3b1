"""/v1/traces: the recent traces of the local store, and one trace's spans (a waterfall)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from novacron.api.deps import service
from novacron.api.listing import Page, list_query
from novacron.db.listing import ListParams
from novacron.db.models import TraceSpan
from novacron.monitoring.traces import TraceService, summary

router = APIRouter(prefix="/v1/traces", tags=["traces"])

TraceReader = Annotated[TraceService, Depends(service(TraceService, "trace:read", write=False))]
TraceList = Annotated[ListParams, Depends(list_query(("started_at",), "-started_at"))]
TraceId = Annotated[str, Path(pattern="^[0-9a-fA-F]{32}$", description="32 hex digits (W3C trace id)")]


class TraceSummaryOut(BaseModel):
    """A trace, as the span where it entered the platform (an API request, or a task no request began)."""

    trace_id: str
    name: str
    service: str
    started_at: datetime
    duration_ms: float
    status: str

    @classmethod
    def of(cls, span: TraceSpan) -> TraceSummaryOut:
        return cls(
            trace_id=span.trace_id,
            name=span.name,
            service=span.service,
            started_at=span.started_at,
            duration_ms=span.duration_us / 1000,
            status=span.status,
        )


class SpanOut(BaseModel):
    span_id: str
    parent_id: str | None
    name: str
    service: str
    host: str = Field(description="empty for tenants: hosts are the platform's")
    kind: str
    started_at: datetime
    #: from the trace's first span, for a waterfall
    offset_ms: float
    duration_ms: float
    status: str = Field(description="unset, ok or error")
    status_message: str | None
    attributes: dict[str, Any]


class TraceOut(BaseModel):
    trace_id: str
    started_at: datetime
    duration_ms: float
    spans: list[SpanOut]

    @classmethod
    def of(cls, trace_id: str, spans: list[TraceSpan]) -> TraceOut:
        whole = summary(spans)
        start = whole["started_at"].timestamp()
        return cls(
            trace_id=trace_id.lower(),
            started_at=whole["started_at"],
            duration_ms=whole["duration_us"] / 1000,
            spans=[
                SpanOut(
                    span_id=s.span_id,
                    parent_id=s.parent_id,
                    name=s.name,
                    service=s.service,
                    host=s.host,
                    kind=s.kind,
                    started_at=s.started_at,
                    offset_ms=round((s.started_at.timestamp() - start) * 1000, 3),
                    duration_ms=s.duration_us / 1000,
                    status=s.status,
                    status_message=s.status_message,
                    attributes=s.attributes,
                )
                for s in spans
            ],
        )


@router.get("", response_model=Page[TraceSummaryOut])
def list_traces(
    traces: TraceReader,
    page: TraceList,
    status: Literal["unset", "ok", "error"] | None = None,
    name: Annotated[str | None, Query(max_length=200, description="e.g. 'POST /v1/vms'")] = None,
) -> Page[TraceSummaryOut]:
    """Recent traces, newest first (a tenant: those its own requests started)."""
    rows, nxt = traces.list(page, status=status, name=name)
    return Page[TraceSummaryOut](items=[TraceSummaryOut.of(r) for r in rows], next_cursor=nxt)


@router.get("/{trace_id}", response_model=TraceOut)
def get_trace(trace_id: TraceId, traces: TraceReader) -> TraceOut:
    """One trace's spans in start order, with their parent links (a tenant: its request's part)."""
    return TraceOut.of(trace_id, traces.get(trace_id))

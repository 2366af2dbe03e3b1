"""OpenTelemetry tracing of the control plane and the agents, with W3C ``traceparent`` propagation.

One ``TracerProvider`` per role: ``novacron-api`` (the server: API requests, services, task steps)
and ``novacron-agent`` (a host's agent: its operations and their QMP commands). An all-in-one node
has both in one process, so its agent's spans carry their own ``service.name``. Every provider
exports to the local trace store (``tracestore.py``); with ``NOVACRON_OTLP_ENDPOINT`` set, also
over OTLP/HTTP to any collector. A remote agent has no database: it keeps its finished spans in a
small buffer (:class:`SpanBuffer`) and hands those of an operation's trace over with the
operation's answer, where the control plane stores them (``agentcalls.complete``).

The trace context crosses every hop inside the platform as a ``traceparent`` string: the API
request's header, the task row (its steps continue the request's trace), the host operation row
(the agent continues the step's trace).
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context as TraceContext
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from novacron import __version__

API = "novacron-api"
AGENT = "novacron-agent"
#: the attribute naming the tenant of the API caller a span served (read by the trace store)
TENANT = "novacron.tenant_id"

_providers: dict[str, TracerProvider] = {}
_tracers: dict[str, Tracer] = {}
_buffers: dict[str, SpanBuffer] = {}
_propagator = TraceContextTextMapPropagator()
_noop = trace.NoOpTracer()


def otlp_traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector: ``http://c:4318`` means ``http://c:4318/v1/traces``
    (as ``OTEL_EXPORTER_OTLP_ENDPOINT`` does); a URL with a path is used as given."""
    return endpoint if urlsplit(endpoint).path.strip("/") else endpoint.rstrip("/") + "/v1/traces"


def setup(
    service: str,
    host_name: str,
    *,
    local: SpanExporter | None = None,
    otlp_endpoint: str = "",
    sample_ratio: float = 1.0,
) -> TracerProvider:
    """Start tracing for ``service`` on this host: spans go to ``local`` (the trace store or an
    agent's buffer) and, when ``otlp_endpoint`` is set, to that OTLP/HTTP collector.
    ``sample_ratio`` of the traces started here are recorded (by trace id, so every process keeps
    or drops the same traces); a span with a parent follows the parent's decision (``traceparent``)."""
    shutdown(service)
    resource = Resource.create(
        {"service.name": service, "service.version": __version__, "host.name": host_name}
    )
    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(sample_ratio)))
    if isinstance(local, SpanBuffer):
        # at once: the spans must be there when the operation's answer is sent
        provider.add_span_processor(SimpleSpanProcessor(local))
        _buffers[service] = local
    elif local is not None:
        provider.add_span_processor(BatchSpanProcessor(local, schedule_delay_millis=500))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_traces_url(otlp_endpoint)))
        )
    _providers[service] = provider
    _tracers[service] = provider.get_tracer("novacron", __version__)
    return provider


def shutdown(service: str | None = None) -> None:
    """Flush and stop the providers (``service``'s, or all): spans still queued are exported."""
    for name in [service] if service else list(_providers):
        provider = _providers.pop(name, None)
        _tracers.pop(name, None)
        _buffers.pop(name, None)
        if provider is not None:
            provider.shutdown()


def flush(timeout_ms: int = 5000) -> None:
    """Export every finished span now (tests, and before a trace is read back)."""
    for provider in list(_providers.values()):
        provider.force_flush(timeout_ms)


def tracer(service: str) -> Tracer:
    """``service``'s tracer, or a no-op one where tracing was not set up (unit tests, tools)."""
    return _tracers.get(service, _noop)


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, to hand to the next hop (None outside one)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def context_of(traceparent: str | None) -> TraceContext | None:
    """The context to continue a ``traceparent`` in (None when it is absent or malformed)."""
    if not traceparent:
        return None
    ctx = _propagator.extract({"traceparent": traceparent})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id (32 hex digits) a well-formed ``traceparent`` names."""
    ctx = context_of(traceparent)
    return None if ctx is None else format(trace.get_current_span(ctx).get_span_context().trace_id, "032x")


@contextlib.contextmanager
def continued(
    service: str,
    name: str,
    parent: str | None,
    attributes: dict[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[Span]:
    """A span that continues the trace of ``parent`` (a ``traceparent``; None or malformed: under
    the current span, which outside any is a new trace)."""
    with tracer(service).start_as_current_span(
        name, context=context_of(parent), kind=kind, attributes=attributes
    ) as span:
        yield span


@contextlib.contextmanager
def child(service: str, name: str, attributes: dict[str, Any] | None = None) -> Iterator[Span]:
    """A span under the current one, only inside a trace: the agent's periodic QMP polling, which
    no request caused, makes no trace of its own."""
    if not trace.get_current_span().is_recording():
        yield trace.INVALID_SPAN
        return
    with tracer(service).start_as_current_span(name, attributes=attributes) as span:
        yield span


def set_error(span: Span, exc: BaseException) -> None:
    """Mark ``span`` failed with the error's class and message."""
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, as hex, for log lines; None outside a trace."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def record_of(span: ReadableSpan) -> dict[str, Any]:
    """A finished span as plain JSON: what the trace store keeps and what an agent sends."""
    ctx = span.context
    parent = span.parent
    resource = span.resource.attributes if span.resource is not None else {}
    start, end = span.start_time or 0, span.end_time or span.start_time or 0
    return {
        "trace_id": format(ctx.trace_id, "032x") if ctx else "",
        "span_id": format(ctx.span_id, "016x") if ctx else "",
        "parent_id": format(parent.span_id, "016x") if parent is not None else None,
        "name": span.name,
        "kind": span.kind.name.lower(),
        "service": str(resource.get("service.name", "")),
        "host": str(resource.get("host.name", "")),
        "start_ns": start,
        "duration_us": max(0, end - start) // 1000,
        "status": span.status.status_code.name.lower(),
        "status_message": span.status.description,
        "attributes": {k: _plain(v) for k, v in (span.attributes or {}).items()},
    }


def _plain(value: Any) -> str | int | float | bool:
    return value if isinstance(value, str | int | float | bool) else ",".join(map(str, value))


class SpanBuffer(SpanExporter):
    """A remote agent's finished spans, by trace, until its operation's answer carries them away.

    Bounded: the oldest traces are dropped past ``max_traces``, and a trace keeps at most
    ``max_spans`` spans (a runaway operation cannot grow the agent's memory).
    """

    def __init__(self, max_traces: int = 256, max_spans: int = 2000) -> None:
        self.max_traces = max_traces
        self.max_spans = max_spans
        self._traces: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            for span in spans:
                record = record_of(span)
                kept = self._traces.setdefault(record["trace_id"], [])
                self._traces.move_to_end(record["trace_id"])
                if len(kept) < self.max_spans:
                    kept.append(record)
            while len(self._traces) > self.max_traces:
                self._traces.popitem(last=False)
        return SpanExportResult.SUCCESS

    def take(self, trace_id: str) -> list[dict[str, Any]]:
        """The finished spans of ``trace_id``, removed from the buffer."""
        with self._lock:
            return self._traces.pop(trace_id, [])


def take_spans(service: str, traceparent: str | None) -> list[dict[str, Any]]:
    """The buffered finished spans of ``traceparent``'s trace ([] where spans go to a store)."""
    buffer = _buffers.get(service)
    trace_id = trace_id_of(traceparent)
    return buffer.take(trace_id) if buffer is not None and trace_id else []

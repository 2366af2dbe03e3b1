"""Tracing's parts on their own: the local store's bounds, what it takes from an agent, the agent's
span buffer, OTLP/HTTP export to a collector, and JSON log lines carrying the trace id."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import func, select

from novacron.db.base import Database
from novacron.db.models import TraceSpan
from novacron.monitoring import tracing
from novacron.monitoring.logs import JsonFormatter
from novacron.monitoring.tracestore import TraceStore
from tests.conftest import free_port


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/t.db")
    database.create_all()
    yield database
    database.engine.dispose()


@pytest.fixture(autouse=True)
def no_providers_left() -> Iterator[None]:
    yield
    tracing.shutdown()


def _record(trace_id: str, span_id: str, start: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_id": None,
        "name": "x",
        "kind": "internal",
        "service": tracing.API,
        "host": "h",
        "start_ns": int(start.timestamp() * 1e9),
        "duration_us": 10,
        "status": "ok",
        "attributes": {},
        **extra,
    }


def _count(db: Database) -> int:
    with db.read_session() as s:
        return int(s.scalar(select(func.count()).select_from(TraceSpan)) or 0)


def test_the_store_keeps_the_newest_spans_within_its_age_and_count(db: Database) -> None:
    store = TraceStore(db, timedelta(hours=1), max_spans=5)
    now = datetime.now(UTC)
    old = [_record("a" * 32, f"{n:016x}", now - timedelta(hours=2)) for n in range(3)]
    new = [_record("b" * 32, f"{n:016x}", now - timedelta(seconds=10 - n)) for n in range(8)]
    assert store.write(old + new) == 11  # the first write prunes already
    assert store.write(new[-2:]) == 0  # a span sent twice is stored once
    store.prune()
    with db.read_session() as s:
        kept = sorted(s.scalars(select(TraceSpan.span_id)))
    assert kept == [f"{n:016x}" for n in range(3, 8)]  # the five newest; none older than an hour


def test_an_agent_writes_only_into_its_operations_trace_and_claims_no_tenant(db: Database) -> None:
    store = TraceStore(db, timedelta(hours=1), 100)
    now = datetime.now(UTC)
    sent = [
        _record("c" * 32, "1" * 16, now, attributes={tracing.TENANT: "tenant-x", "qmp.command": "cont"}),
        _record("d" * 32, "2" * 16, now),  # another trace: dropped
        {"trace_id": "c" * 32, "span_id": "not-hex"},  # not a span: skipped
    ]
    assert store.ingest_agent_spans(sent, "c" * 32, "node-b") == 1
    with db.read_session() as s:
        (span,) = s.scalars(select(TraceSpan))
        assert (span.trace_id, span.service, span.host) == ("c" * 32, tracing.AGENT, "node-b")
        assert span.tenant_id is None
        assert span.attributes == {"qmp.command": "cont"}


def test_the_agents_buffer_hands_over_a_traces_spans_once_and_stays_bounded() -> None:
    buffer = tracing.SpanBuffer(max_traces=2, max_spans=3)
    tracing.setup(tracing.AGENT, "node-b", local=buffer)
    parents = []
    for _ in range(3):
        with tracing.continued(tracing.AGENT, "agent launch", None):
            parents.append(tracing.traceparent())
            for _ in range(5):
                with tracing.child(tracing.AGENT, "qmp query-status", {"qmp.command": "query-status"}):
                    pass
    assert tracing.take_spans(tracing.AGENT, parents[0]) == []  # the oldest trace was dropped
    spans = tracing.take_spans(tracing.AGENT, parents[2])
    assert len(spans) == 3 and {s["host"] for s in spans} == {"node-b"}
    assert tracing.take_spans(tracing.AGENT, parents[2]) == []


def test_no_span_is_made_outside_a_trace() -> None:
    buffer = tracing.SpanBuffer()
    tracing.setup(tracing.AGENT, "h", local=buffer)
    with tracing.child(tracing.AGENT, "qmp query-status") as span:
        assert not span.is_recording()  # the agent's per-second polling makes no trace


class _Collector(BaseHTTPRequestHandler):
    received: list[ExportTraceServiceRequest] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        _Collector.received.append(message)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_spans_are_exported_over_otlp_http_to_a_collector(db: Database) -> None:
    assert tracing.otlp_traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert tracing.otlp_traces_url("http://c:4318/custom") == "http://c:4318/custom"
    server = HTTPServer(("127.0.0.1", free_port()), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        store = TraceStore(db, timedelta(hours=1), 100)
        tracing.setup(tracing.API, "node-a", local=store, otlp_endpoint=url)
        with tracing.continued(tracing.API, "POST /v1/vms", None):
            pass
        tracing.flush()
    finally:
        server.shutdown()
        server.server_close()
    (resource_spans,) = [rs for m in _Collector.received for rs in m.resource_spans]
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "novacron-api" and resource["host.name"] == "node-a"
    assert [s.name for ss in resource_spans.scope_spans for s in ss.spans] == ["POST /v1/vms"]
    assert _count(db) == 1  # and the local store has it too


def test_a_log_line_carries_the_trace_and_span_it_was_written_in() -> None:
    tracing.setup(tracing.API, "h", local=tracing.SpanBuffer())
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter(tracing.API))
    log = logging.getLogger("novacron.test-tracing")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("outside")
        with tracing.continued(tracing.API, "task vm.create", None) as span:
            log.warning("inside %s", "the task")
    finally:
        log.removeHandler(handler)
    outside, inside = (json.loads(line) for line in out.getvalue().splitlines())
    assert "trace_id" not in outside and outside["message"] == "outside"
    ctx = span.get_span_context()
    assert inside["trace_id"] == format(ctx.trace_id, "032x") and inside["span_id"] == format(
        ctx.span_id, "016x"
    )
    assert inside["message"] == "inside the task" and inside["service"] == "novacron-api"


def test_a_sample_ratio_keeps_a_share_of_new_traces_and_follows_a_callers_decision(db: Database) -> None:
    store = TraceStore(db, timedelta(hours=1), 1000)
    tracing.setup(tracing.API, "node-a", local=store, sample_ratio=0.0)
    with tracing.continued(tracing.API, "GET /v1/vms", None) as dropped, tracing.child(tracing.API, "x"):
        assert not dropped.is_recording()
    sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with tracing.continued(tracing.API, "POST /v1/vms", sampled) as kept, tracing.child(tracing.API, "step"):
        assert kept.is_recording()
    tracing.setup(tracing.API, "node-a", local=store, sample_ratio=0.5)
    for _ in range(200):
        with tracing.continued(tracing.API, "GET /v1/flavors", None):
            pass
    tracing.flush()
    with db.read_session() as s:
        names = list(s.scalars(select(TraceSpan.name)))
    assert "GET /v1/vms" not in names and "x" not in names
    assert names.count("POST /v1/vms") == 1 and names.count("step") == 1
    assert 60 <= names.count("GET /v1/flavors") <= 140  # about half, by trace id

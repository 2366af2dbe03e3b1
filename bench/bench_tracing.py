"""What tracing costs a simple API request: p50/p99 of GET /v1/flavors with and without it.

The app runs in this process (Starlette's test client, no network: what is measured is the
platform's own work). Rounds alternate between tracing off (no provider: the middleware's span is a
no-op) and on (the node's setup: a span per request, batched into the local trace store in
SQLite by a background thread), so the machine's load weighs on both alike.
Run: .venv/bin/python bench/bench_tracing.py [--rounds 10] [--requests 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from common import load, machine, pct
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from sqlalchemy import func, select

from novacron.db.base import Database
from novacron.db.models import TraceSpan
from novacron.monitoring import tracing
from novacron.monitoring.tracestore import TraceStore
from tests.conftest import in_process_app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    print(machine(), load())
    samples: dict[str, list[float]] = {"off": [], "on": []}
    #: this process's CPU time per request (the span exporter's thread included): steadier than
    #: wall time on a loaded machine
    cpu: dict[str, float] = {"off": 0.0, "on": 0.0}
    with in_process_app(Path(tempfile.mkdtemp(prefix="nc-bench-"))) as (client, password, db):
        token = client.post("/v1/tokens", json={"username": "admin", "password": password}).json()
        client.headers["Authorization"] = f"Bearer {token['access_token']}"
        for _ in range(50):  # warm: caches, the token verified once
            client.get("/v1/flavors")
        for n in range(args.rounds):
            for mode in ("off", "on") if n % 2 == 0 else ("on", "off"):
                cpu_started = time.process_time()
                if mode == "on":
                    tracing.setup(tracing.API, "bench", local=TraceStore(db, timedelta(hours=1), 1_000_000))
                for _ in range(args.requests):
                    started = time.perf_counter()
                    r = client.get("/v1/flavors")
                    samples[mode].append(time.perf_counter() - started)
                    assert r.status_code == 200
                tracing.shutdown()  # flushes what the batch still holds
                cpu[mode] += time.process_time() - cpu_started
        with db.read_session() as s:
            stored = s.scalar(select(func.count()).select_from(TraceSpan))
        span_cpu, store_cpu = _span_costs(db)
    for mode, values in samples.items():
        print(
            f"tracing {mode:3}: p50 {pct(values, 0.5) * 1e3:6.3f} ms  p99 {pct(values, 0.99) * 1e3:6.3f} ms"
            f"  CPU {cpu[mode] / len(values) * 1e6:5.0f} us/request  n={len(values)}"
        )
    off, on = pct(samples["off"], 0.5), pct(samples["on"], 0.5)
    print(
        f"overhead at p50: {(on - off) * 1e6:+.0f} us ({(on / off - 1) * 100:+.1f} %); spans stored: {stored}"
    )
    print(f"one span made and ended: {span_cpu:.1f} us CPU; written to the store: {store_cpu:.1f} us CPU")
    print(load())


class _Discard(SpanExporter):
    """Exports nothing: what making a span costs, without the store's writes."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _span_costs(db: Database, spans: int = 2000) -> tuple[float, float]:
    """CPU per span: made and ended under the node's provider (fewer than the batch queue holds,
    2048, so none is dropped); written to the store in batches of 512 (the batch processor's)."""
    buffer = tracing.SpanBuffer(max_traces=1, max_spans=spans)
    tracing.setup(tracing.API, "bench", local=_Discard())
    started = time.process_time()
    with tracing.continued(tracing.API, "bench", None):
        for _ in range(spans):
            with tracing.child(tracing.API, "child", {"novacron.task.step": "x"}):
                pass
    made = time.process_time() - started
    tracing.shutdown()
    tracing.setup(tracing.API, "bench", local=buffer)
    with tracing.continued(tracing.API, "bench", None) as root:
        for _ in range(spans):
            with tracing.child(tracing.API, "child", {"novacron.task.step": "x"}):
                pass
    tracing.shutdown()
    records = buffer.take(format(root.get_span_context().trace_id, "032x"))
    store = TraceStore(db, timedelta(hours=1), 1_000_000)
    started = time.process_time()
    for at in range(0, len(records), 512):
        store.write(records[at : at + 512])
    written = time.process_time() - started
    return made / spans * 1e6, written / len(records) * 1e6


if __name__ == "__main__":
    main()

"""What tracing costs a simple API request: p50/p99 and server CPU of GET /v1/flavors, traced or not.

Two real servers side by side (simulated driver, plain HTTP on loopback), identical but that one
never sets tracing up (``bench/untraced/sitecustomize.py`` on its PYTHONPATH); the traced one makes
a span per request and writes it to its local trace store (SQLite) from the batch thread. Blocks of
requests alternate between the two so the machine's load weighs on both alike; the servers' CPU
time (user+system, all threads) per request is read from /proc. Then the cost of one span alone:
made and ended, and written to the store.
Run: .venv/bin/python bench/bench_tracing.py [--rounds 10] [--requests 200]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from common import ROOT, load, machine, pct, running_server
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from novacron.db.base import Database
from novacron.monitoring import tracing
from novacron.monitoring.tracestore import TraceStore

SERVER_ENV = {"NOVACRON_COMPUTE_DRIVER": "simulated", "NOVACRON_NETWORK_BACKEND": "none"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    print(machine(), load())
    untraced_path = f"{ROOT / 'bench' / 'untraced'}:{ROOT / 'src'}"
    with running_server(**SERVER_ENV) as on, running_server(**SERVER_ENV, PYTHONPATH=untraced_path) as off:
        servers = {"on": on, "off": off}
        clients = {mode: srv.client() for mode, srv in servers.items()}
        pids = {mode: srv.proc.pid for mode, srv in servers.items() if srv.proc}
        samples: dict[str, list[float]] = {"on": [], "off": []}
        cpu = {"on": 0.0, "off": 0.0}
        for client in clients.values():
            for _ in range(50):  # warm: the token verified once, caches
                client.get("/v1/flavors")
        for n in range(args.rounds):
            for mode in ("off", "on") if n % 2 == 0 else ("on", "off"):
                before = _cpu_s(pids[mode])
                for _ in range(args.requests):
                    started = time.perf_counter()
                    assert clients[mode].get("/v1/flavors").status_code == 200
                    samples[mode].append(time.perf_counter() - started)
                time.sleep(0.6)  # the batch thread (500 ms) has written this block's spans
                cpu[mode] += _cpu_s(pids[mode]) - before
        traced = clients["on"].get("/v1/traces", params={"name": "GET /v1/flavors", "limit": 500}).json()
        untraced = clients["off"].get("/v1/traces").json()
        for client in clients.values():
            client.close()
    for mode in ("off", "on"):
        values = samples[mode]
        print(
            f"tracing {mode:3}: p50 {pct(values, 0.5) * 1e3:6.3f} ms  p99 {pct(values, 0.99) * 1e3:6.3f} ms"
            f"  server CPU {cpu[mode] / len(values) * 1e6:5.0f} us/request  n={len(values)}"
        )
    off_p50, on_p50 = pct(samples["off"], 0.5), pct(samples["on"], 0.5)
    cpu_delta = (cpu["on"] - cpu["off"]) / len(samples["on"]) * 1e6
    print(
        f"overhead: p50 {(on_p50 - off_p50) * 1e6:+.0f} us ({(on_p50 / off_p50 - 1) * 100:+.1f} %), "
        f"server CPU {cpu_delta:+.0f} us/request; traces listed: traced {len(traced['items'])}"
        f" (a page of 500), untraced {len(untraced['items'])}"
    )
    span_cpu, store_cpu = _span_costs()
    print(f"one span made and ended: {span_cpu:.1f} us CPU; written to the store: {store_cpu:.1f} us CPU")
    print(load())


def _cpu_s(pid: int) -> float:
    """A process's CPU time so far, user + system, all its threads (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Discard(SpanExporter):
    """Exports nothing: what making a span costs, without the store's writes."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _span_costs(spans: int = 2000) -> tuple[float, float]:
    """CPU per span: made and ended under a batch processor (fewer than its queue holds, 2048, so
    none is dropped); written to a store on SQLite in batches of 512 (the batch processor's)."""
    tracing.setup(tracing.API, "bench", local=_Discard())
    started = time.process_time()
    with tracing.continued(tracing.API, "bench", None):
        for _ in range(spans):
            with tracing.child(tracing.API, "child", {"novacron.task.step": "x"}):
                pass
    made = time.process_time() - started
    buffer = tracing.SpanBuffer(max_traces=1, max_spans=spans)
    tracing.setup(tracing.API, "bench", local=buffer)
    with tracing.continued(tracing.API, "bench", None) as root:
        for _ in range(spans):
            with tracing.child(tracing.API, "child", {"novacron.task.step": "x"}):
                pass
    tracing.shutdown()
    records = buffer.take(format(root.get_span_context().trace_id, "032x"))
    state = Path(tempfile.mkdtemp(prefix="nc-bench-"))
    db = Database(f"sqlite:///{state}/spans.db")
    db.create_all()
    store = TraceStore(db, timedelta(hours=1), 1_000_000)
    started = time.process_time()
    for at in range(0, len(records), 512):
        store.write(records[at : at + 512])
    written = time.process_time() - started
    return made / spans * 1e6, written / len(records) * 1e6


if __name__ == "__main__":
    main()

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
from datetime import timedelta
from pathlib import Path

from common import load, machine, pct
from sqlalchemy import func, select

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
        for _ in range(args.rounds):
            for mode in ("off", "on"):
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
    for mode, values in samples.items():
        print(
            f"tracing {mode:3}: p50 {pct(values, 0.5) * 1e3:6.3f} ms  p99 {pct(values, 0.99) * 1e3:6.3f} ms"
            f"  CPU {cpu[mode] / len(values) * 1e6:5.0f} us/request  n={len(values)}"
        )
    off, on = pct(samples["off"], 0.5), pct(samples["on"], 0.5)
    print(
        f"overhead at p50: {(on - off) * 1e6:+.0f} us ({(on / off - 1) * 100:+.1f} %); spans stored: {stored}"
    )
    print(load())


if __name__ == "__main__":
    main()

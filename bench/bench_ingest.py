"""Metrics ingestion: samples/s through the platform's write path, beside the same samples sent straight.

Engines are real (Debian's VictoriaMetrics and Prometheus 2.42), each case on a fresh one (its own
data directory and port), so every case pays for creating the same new series.

1. ``platform -> victoriametrics`` (the default store): agent reports (``--vms`` VMs x ``--seconds``
   reports of one host, every contract key in each sample) go through what ``record_report`` does
   after the database read: ``SeriesMap.vm_block`` (contract mapping, tenancy labels, one columnar
   block per report), the
   ``SeriesWriter`` (bounded queue, batches of up to 200,000 samples) and remote write (hand-encoded
   protobuf, snappy). Timed from the first report to the writer's queue empty (every request
   acknowledged).
2. ``remote write -> victoriametrics``: the same samples, already series, encoded and POSTed by one
   client (no mapping, no queue) in requests of 1,000 series x 10 timestamps (``--batch`` samples),
   the shape DESIGN.md measured.
3. ``engine ceiling -> victoriametrics``: the same samples in the platform's request shape (all
   series x 16 timestamps a request), encoded and compressed before the timing, only POSTed: what
   the engine takes when the client costs next to nothing.
4. ``import API -> victoriametrics``: the same samples as Prometheus text lines to
   ``/api/v1/import/prometheus`` (text formatted outside the timing).
5. ``remote write -> prometheus``: case 2 against Prometheus's remote-write receiver.
6. ``platform -> prometheus``: case 1 with Prometheus as the store.
7. ``platform + anomaly -> victoriametrics``: case 1 with the anomaly feed on (as a node runs it):
   each report is also queued for ``AnomalyFeed``, whose thread derives each VM's rates (10 s
   steps, the default), scores them and queues ``novacron_anomaly_score`` samples for the same
   writer; timed until the feed and the writer are both drained. The samples/s count the
   contract samples in, as in case 1.

Each store is then asked ``count({__name__=~"novacron_vm_.+"})`` and the samples of one series
name (``count_over_time``) to check that every sample arrived. Last, in process: the anomaly feed's
CPU per VM sample (scoring in its thread; queueing in the report path) at 10 s and 1 s steps, and
the agent's collection cost: the host sampler (psutil, once per host per second).

Run: .venv/bin/python bench/bench_ingest.py [--vms 1000] [--seconds 100] [--batch 10000]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from common import load, machine

from novacron.agent.hoststats import HostSampler
from novacron.monitoring import remote_write
from novacron.monitoring.anomaly_feed import AnomalyFeed
from novacron.monitoring.process import SupervisedProcess, free_loopback_port
from novacron.monitoring.series import VM_SERIES, SeriesMap
from novacron.monitoring.store import EngineConfig, MetricsStore, embedded_engine, embedded_store
from novacron.monitoring.writer import SeriesWriter

#: the resolution the anomaly feed scores at: the node's default (``anomaly_step_s``)
STEP_S = 10.0


def reports(n_vms: int, seconds: int) -> list[tuple[dict[str, dict[str, Any]], dict[str, tuple[str, str]]]]:
    """One host's reports: every VM with every contract key, one report per second ending now."""
    start = time.time() - seconds
    tenancy = {f"vm-{n:05d}": (f"tenant-{n % 50}", f"project-{n % 200}") for n in range(n_vms)}
    out = []
    for t in range(seconds):
        now = start + t
        samples = {
            vm: {"time": now, **{key: float(t * 1000 + i + n) for i, key in enumerate(VM_SERIES)}}
            for n, vm in enumerate(tenancy)
        }
        out.append((samples, tenancy))
    return out


def start_engine(engine: str, root: Path) -> tuple[SupervisedProcess, MetricsStore]:
    port = free_loopback_port()
    process = embedded_engine(EngineConfig(engine, root / engine / str(port), "30d", port))
    process.start()
    return process, embedded_store(engine, port)


def platform_path(store: MetricsStore, data: list[Any], anomaly: bool = False) -> float:
    series = SeriesMap(lambda host_id: "bench-host")
    writer = SeriesWriter(store, max_pending=100_000_000)
    feed = AnomalyFeed(writer.submit, None, 0.5, 0, step_s=STEP_S) if anomaly else None
    writer.start()
    if feed is not None:
        feed.start()
    started = time.perf_counter()
    for samples, tenancy in data:
        writer.submit(series.vm_block("host-1", samples, tenancy))
        if feed is not None:
            feed.submit("host-1", samples, tenancy)
    if feed is not None:
        assert feed.flush(600), "the anomaly feed did not drain"
        feed.stop()
    assert writer.flush(600), "the writer did not drain"
    elapsed = time.perf_counter() - started
    writer.stop()
    assert writer.dropped == 0 and writer.rejected == 0, (writer.dropped, writer.rejected)
    return elapsed


def as_series(data: list[Any]) -> list[remote_write.Sample]:
    """The reports as (series, ms, value), as a client with its own series would hold them."""
    series = SeriesMap(lambda host_id: "bench-host")
    return [s for samples, tenancy in data for s in series.vm_samples("host-1", samples, tenancy)]


def straight_batches(
    samples: list[remote_write.Sample], per_request: int, series_per_request: int = 1000
) -> list[list[remote_write.Sample]]:
    """The samples cut into requests of ``series_per_request`` series x ``per_request /
    series_per_request`` timestamps (oldest first); by default the way DESIGN.md measured the
    engines."""
    by_series: dict[remote_write.Series, list[remote_write.Sample]] = {}
    for sample in samples:
        by_series.setdefault(sample[0], []).append(sample)
    series = list(by_series)
    steps = max(1, per_request // series_per_request)
    n_times = max(len(v) for v in by_series.values())
    return [
        [x for one in series[i : i + series_per_request] for x in by_series[one][t : t + steps]]
        for t in range(0, n_times, steps)
        for i in range(0, len(series), series_per_request)
    ]


def remote_write_path(store: MetricsStore, batches: list[list[remote_write.Sample]]) -> float:
    client = httpx.Client(timeout=60)
    started = time.perf_counter()
    for batch in batches:
        remote_write.post(client, store.write_url, remote_write.compress(remote_write.encode(batch)))
    return time.perf_counter() - started


def ceiling_path(store: MetricsStore, bodies: list[bytes]) -> float:
    """Request bodies encoded and compressed in advance, only POSTed: what the engine can take."""
    client = httpx.Client(timeout=60)
    started = time.perf_counter()
    for body in bodies:
        remote_write.post(client, store.write_url, body)
    return time.perf_counter() - started


def import_path(store: MetricsStore, batches: list[list[remote_write.Sample]]) -> float:
    bodies = ["\n".join(f"{s!r} {value!r} {ms}" for s, ms, value in batch).encode() for batch in batches]
    client = httpx.Client(timeout=60)
    started = time.perf_counter()
    for body in bodies:
        client.post(store.query_url + "/api/v1/import/prometheus", content=body).raise_for_status()
    return time.perf_counter() - started


def arrived(
    store: MetricsStore, expected_series: int, expected_samples: int, timeout_s: float = 120.0
) -> str:
    """How many series and samples the store answers for (polled: new series show after seconds)."""
    deadline = time.monotonic() + timeout_s
    found = (0.0, 0.0)
    while time.monotonic() < deadline:
        n_series = store.query('count({__name__=~"novacron_vm_.+"})', at=time.time())["result"]
        n_samples = store.query(
            "sum(count_over_time(novacron_vm_process_cpu_seconds_total[1h]))", at=time.time()
        )["result"]
        found = (
            float(n_series[0]["value"][1]) if n_series else 0,
            float(n_samples[0]["value"][1]) if n_samples else 0,
        )
        if found[0] >= expected_series and found[1] >= expected_samples:
            break
        time.sleep(1)
    return f"{found[0]:,.0f} series, {found[1]:,.0f} samples of one name"


def anomaly_cost(data: list[Any], step_s: float) -> str:
    """The anomaly feed's CPU per VM sample: scoring (its thread) and queueing (the report path)."""
    feed = AnomalyFeed(lambda samples: None, None, 0.5, 0, step_s=step_s, max_pending=len(data))
    n_vm_samples = sum(len(samples) for samples, _tenancy in data)
    cpu = time.process_time()
    for samples, tenancy in data:
        feed.score("host-1", samples, tenancy)
    score_us = (time.process_time() - cpu) / n_vm_samples * 1e6
    cpu = time.process_time()
    for samples, tenancy in data:
        feed.submit("host-1", samples, tenancy)
    queue_us = (time.process_time() - cpu) / len(data) * 1e6
    per_series = score_us * n_vm_samples / feed.scored
    return (
        f"anomaly feed, step {step_s:g} s: {score_us:.1f} us CPU per VM sample in its thread "
        f"({feed.scored:,} series samples scored, {per_series:.1f} us each); "
        f"{queue_us:.1f} us per report in the report path"
    )


def collection_cost(root: Path) -> str:
    """The host sampler's cost (psutil; once per host per second)."""
    sampler = HostSampler(root, root)
    rounds = 200
    started = time.perf_counter()
    cpu = time.process_time()
    for _ in range(rounds):
        sampler.sample()
    wall_ms = (time.perf_counter() - started) / rounds * 1000
    cpu_ms = (time.process_time() - cpu) / rounds * 1000
    return f"host sampler: {wall_ms:.2f} ms wall, {cpu_ms:.2f} ms CPU per host per second"


def run_case(
    name: str, engine: str, root: Path, go: Callable[[MetricsStore], float], n: int, data: Any
) -> None:
    process, store = start_engine(engine, root)
    try:
        cpu = time.process_time()
        elapsed = go(store)
        cpu_us = (time.process_time() - cpu) / n * 1e6
        check = arrived(store, n // len(data), n // len(VM_SERIES))
        rate = f"{n:>10,} samples in {elapsed:6.2f} s = {n / elapsed:>10,.0f} samples/s"
        print(f"{name:32s} {rate}  client CPU {cpu_us:.2f} us/sample  [{check}]  {load()}", flush=True)
    finally:
        process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    print(machine())
    data = reports(args.vms, args.seconds)
    samples = as_series(data)
    batches = straight_batches(samples, args.batch)
    # the platform's request shape (every series, ~16 timestamps a request), made in advance
    bodies = [
        remote_write.compress(remote_write.encode(batch))
        for batch in straight_batches(samples, 16 * len(VM_SERIES) * args.vms, len(VM_SERIES) * args.vms)
    ]
    # the bench's own inputs (a million samples as dicts and tuples) are left out of the garbage
    # collector's passes, which would otherwise charge their traversal to whichever case runs
    gc.freeze()
    n = len(samples)
    print(f"{args.vms} VMs x {len(VM_SERIES)} series x {args.seconds} s = {n:,} samples")
    with tempfile.TemporaryDirectory(prefix="nc-ingest-") as tmp:
        root = Path(tmp)
        run_case(
            "platform -> victoriametrics", "victoriametrics", root, lambda s: platform_path(s, data), n, data
        )
        run_case(
            "remote write -> victoriametrics",
            "victoriametrics",
            root,
            lambda s: remote_write_path(s, batches),
            n,
            data,
        )
        run_case(
            "engine ceiling -> victoriametrics",
            "victoriametrics",
            root,
            lambda s: ceiling_path(s, bodies),
            n,
            data,
        )
        run_case(
            "import API -> victoriametrics",
            "victoriametrics",
            root,
            lambda s: import_path(s, batches),
            n,
            data,
        )
        run_case(
            "remote write -> prometheus",
            "prometheus",
            root,
            lambda s: remote_write_path(s, batches),
            n,
            data,
        )
        run_case("platform -> prometheus", "prometheus", root, lambda s: platform_path(s, data), n, data)
        run_case(
            "platform + anomaly -> victoriametrics",
            "victoriametrics",
            root,
            lambda s: platform_path(s, data, anomaly=True),
            n,
            data,
        )
        print(anomaly_cost(data, STEP_S))
        print(anomaly_cost(data, 1.0))
        print(collection_cost(root))


if __name__ == "__main__":
    main()

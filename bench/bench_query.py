"""A VM's chart from the metrics store with 1,000 VMs of history in VictoriaMetrics.

1. Starts VictoriaMetrics as the node does (``-search.latencyOffset=0s``; query caches on, as in
   production) and writes 24 h of history for ``--vms`` VMs through its import API
   (``/api/v1/import``, JSON lines): per VM the series a chart reads (vCPU and QEMU CPU counters, guest
   memory total and available, QEMU RSS, disk and network counters), one sample every
   ``--recent-interval`` s over the last hour and every ``--old-interval`` s before.
2. Draws the 1 h and 24 h chart of random VMs as ``GET /v1/vms/{id}/metrics?range=`` does
   (``monitoring/charts.draw``: the 11 lines in one range query, tenant-scoped with ``extra_label``)
   and, for comparison, with one range query per line; reports p50/p99; and one line's range query
   alone (CPU) for scale.

Run: .venv/bin/python bench/bench_query.py [--vms 1000] [--charts 200]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import httpx
from common import load, machine, pct

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from novacron.monitoring.charts import RANGES, VM_PLOTS, chart_step, draw  # noqa: E402
from novacron.monitoring.process import SupervisedProcess, free_loopback_port  # noqa: E402
from novacron.monitoring.query import VICTORIAMETRICS, PromAPI, Scope, StoreEndpoint  # noqa: E402

MIB = 1 << 20
COUNTERS = {
    "novacron_vm_cpu_seconds_total": 0.5,
    "novacron_vm_process_cpu_seconds_total": 0.6,
    "novacron_vm_disk_read_bytes_total": 4096.0,
    "novacron_vm_disk_written_bytes_total": 8192.0,
    "novacron_vm_network_receive_bytes_total": 2000.0,
    "novacron_vm_network_transmit_bytes_total": 1000.0,
}
GAUGES = {
    "novacron_vm_guest_memory_total_bytes": 128.0 * MIB,
    "novacron_vm_guest_memory_available_bytes": 64.0 * MIB,
    "novacron_vm_process_resident_memory_bytes": 270.0 * MIB,
}


def tenant_of(vm: int) -> str:
    return f"tenant-{vm % 50:02d}"


def history(vms: int, stamps: list[float]) -> Iterator[bytes]:
    """JSON lines for /api/v1/import, one VM at a time."""
    millis = [round(t * 1000) for t in stamps]
    t0 = stamps[0]
    for vm in range(vms):
        labels = {"vm_id": f"vm-{vm:04d}", "tenant_id": tenant_of(vm), "project_id": f"p-{vm % 200}"}
        labels["host_id"] = f"h-{vm % 20}"
        lines: list[dict[str, object]] = []
        for name, per_s in COUNTERS.items():
            values = sorted(round(per_s * (t - t0) * random.uniform(0.9, 1.1), 3) for t in stamps)
            lines.append({"metric": {**labels, "__name__": name}, "values": values, "timestamps": millis})
        for name, value in GAUGES.items():
            values = [value * random.uniform(0.95, 1.05) for _ in stamps]
            lines.append({"metric": {**labels, "__name__": name}, "values": values, "timestamps": millis})
        yield "\n".join(json.dumps(line) for line in lines).encode() + b"\n"


def write_history(url: str, vms: int, recent_s: float, old_s: float) -> int:
    now = time.time()
    stamps = [now - 86_400 + old_s * i for i in range(int((86_400 - 3600) / old_s))]
    stamps += [now - 3600 + recent_s * i for i in range(int(3600 / recent_s) + 1)]
    batch: list[bytes] = []
    for i, chunk in enumerate(history(vms, stamps), 1):
        batch.append(chunk)
        if i % 50 == 0 or i == vms:
            httpx.post(f"{url}/api/v1/import", content=b"".join(batch), timeout=300).raise_for_status()
            batch = []
    httpx.get(f"{url}/internal/force_flush", timeout=120).raise_for_status()
    return vms * len(stamps) * (len(COUNTERS) + len(GAUGES))


def timed(call: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def report(label: str, samples: list[float]) -> None:
    ms = [s * 1000 for s in samples]
    figures = f"p50={pct(ms, 0.5):7.1f} ms  p99={pct(ms, 0.99):7.1f} ms  max={max(ms):7.1f} ms"
    print(f"{label:<40} n={len(ms):4d} {figures}")


def bench(url: str, args: argparse.Namespace) -> None:
    endpoint = StoreEndpoint(url, VICTORIAMETRICS)

    def chart(range_name: str, query_per_line: bool = False) -> None:
        vm = random.randrange(args.vms)
        api = PromAPI(endpoint, Scope(tenant_of(vm)))
        selector = f'{{vm_id="vm-{vm:04d}",tenant_id="{tenant_of(vm)}"}}'
        groups = [(plot,) for plot in VM_PLOTS] if query_per_line else [VM_PLOTS]
        lines = [line for plots in groups for line in draw(api, plots, "", selector, range_name, 1.0).series]
        assert len(lines) == len(VM_PLOTS) - 2, "the chart lacks lines"  # no disk ops in this history

    def cpu_line(range_name: str) -> None:
        vm = random.randrange(args.vms)
        api = PromAPI(endpoint, Scope(tenant_of(vm)))
        end = time.time()
        step = chart_step(RANGES[range_name], 1.0)
        promql = f'sum(rate(novacron_vm_cpu_seconds_total{{vm_id="vm-{vm:04d}"}}[{step + 1:.0f}s]))'
        params = [("query", promql), ("start", f"{end - RANGES[range_name]:.3f}"), ("end", f"{end:.3f}")]
        api.get("query_range", [*params, ("step", f"{step:g}")])

    for range_name in ("1h", "24h"):
        timed(partial(chart, range_name), 10)  # warm-up: connections, first index reads
        report(f"chart {range_name} (11 lines, one query)", timed(partial(chart, range_name), args.charts))
        report(f"chart {range_name} (a query per line)", timed(partial(chart, range_name, True), args.charts))
        report(f"one range query {range_name} (CPU line)", timed(partial(cpu_line, range_name), args.charts))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--charts", type=int, default=200, help="charts drawn per range")
    parser.add_argument(
        "--recent-interval", type=float, default=5.0, help="seconds between samples, last hour"
    )
    parser.add_argument("--old-interval", type=float, default=60.0, help="seconds between samples before")
    args = parser.parse_args()
    binary = shutil.which("victoria-metrics")
    if binary is None:
        sys.exit("victoria-metrics is not installed (scripts/setup.sh installs it)")
    print(machine(), load())
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        port = free_loopback_port()
        url = f"http://127.0.0.1:{port}"
        argv = [
            binary,
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-storageDataPath={tmp}/data",
            "-search.latencyOffset=0s",
        ]
        engine = SupervisedProcess("victoria-metrics", argv, f"{url}/health", Path(tmp) / "vm.log")
        engine.start()
        try:
            started = time.monotonic()
            samples = write_history(url, args.vms, args.recent_interval, args.old_interval)
            elapsed = time.monotonic() - started
            rate = samples / elapsed
            print(f"history: {args.vms} VMs, {samples:,} samples written in {elapsed:.1f} s ({rate:,.0f}/s)")
            bench(url, args)
        finally:
            engine.stop()
    print(load())


if __name__ == "__main__":
    main()

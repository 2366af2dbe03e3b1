"""SLO queries over 30 days of a probe's history, and the cost of the checks themselves.

1. Starts VictoriaMetrics as the node does (``-search.latencyOffset=0s``) and imports 30 days of one
   probe run every ``--interval`` s (``novacron_probe_success`` with 0.1 % failures,
   ``novacron_probe_duration_seconds`` with 1 in 13 runs slow), then times what ``GET
   /v1/slos/{id}/status`` and the SLO's alert rules evaluate (``monitoring/slo/promql.py``): the
   30-day SLI of a success and of a latency SLO (sampled: see ``Indicator.step``), the burn rates
   and the three alert expressions, and the monthly report's range query (``report.measure``).
2. Runs ``--checks`` TCP checks at once from one network namespace into another
   (``checks.run_many``, what an agent does for one ``probe_run``), a few rounds: wall time.

Run: .venv/bin/python bench/bench_slo.py [--interval 10] [--repeat 20] [--checks 100]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from common import load, machine, pct

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from novacron.monitoring.process import SupervisedProcess, free_loopback_port  # noqa: E402
from novacron.monitoring.slo.checks import Check, run_many  # noqa: E402
from novacron.monitoring.slo.promql import Indicator, burn_rate, burn_rate_rules  # noqa: E402

#: a listener whose backlog takes every connection (the kernel completes them; it never accepts)
LISTENER = (
    "import socket, time; s = socket.socket(); s.bind(('10.199.0.2', 8080)); s.listen(4096); time.sleep(3600)"
)
LABELS = 'probe_id="prb-bench",tenant_id="tenant-bench",project_id="project-bench"'


def history(url: str, end: int, interval: int) -> int:
    lines = []
    for t in range(end - 30 * 86400, end, interval):
        ms = t * 1000
        lines.append(f"novacron_probe_success{{{LABELS}}} {0 if random.random() < 0.001 else 1} {ms}")
        lines.append(
            f"novacron_probe_duration_seconds{{{LABELS}}} {0.5 if random.random() < 1 / 13 else 0.01} {ms}"
        )
    httpx.post(f"{url}/api/v1/import/prometheus", content="\n".join(lines), timeout=600).raise_for_status()
    httpx.get(f"{url}/internal/force_flush", timeout=60).raise_for_status()
    return len(lines)


def timed(name: str, call: Callable[[], object], repeat: int) -> None:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    print(f"{name:<44} n={repeat:4d} p50={pct(times, 0.5):8.1f} ms  max={max(times):8.1f} ms")


CLIENT = httpx.Client(timeout=120)  # one pooled client, as the node's store keeps


def query(url: str, promql: str, at: int) -> Callable[[], object]:
    def run() -> object:
        answer = CLIENT.get(f"{url}/api/v1/query", params={"query": promql, "time": at}).json()
        assert answer["status"] == "success", answer
        return answer

    return run


def queries(url: str, end: int, interval: int, repeat: int) -> None:
    success = Indicator("tenant-bench", "prb-bench", "success", None, interval)
    latency = Indicator("tenant-bench", "prb-bench", "latency", 0.2, interval)
    for ind in (success, latency):
        kind = ind.kind
        timed(f"{kind}: SLI over 30 d", query(url, ind.ratio("30d"), end), repeat)
        timed(f"{kind}: burn rate 1 h", query(url, burn_rate(ind, 0.999, "1h"), end), repeat)
        for rule in burn_rate_rules("bench", ind, 0.999):
            timed(f"{kind}: {rule.name.removeprefix('slo-bench-')} rule", query(url, rule.expr, end), repeat)
    step = max(interval, -(-30 * 86400 // 10_000))
    params: dict[str, str | int] = {
        "query": success.worst(f"{step}s"),
        "start": end - 30 * 86400 + step,
        "end": end,
        "step": step,
    }

    def report() -> object:
        return CLIENT.get(f"{url}/api/v1/query_range", params=params).json()

    timed("report: failing steps of the month", report, repeat)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def checks(n: int, rounds: int) -> None:
    """``n`` TCP checks from namespace a into a listener in namespace b, ``rounds`` times."""
    a, b = "ncbench-a", "ncbench-b"
    for ns in (a, b):
        sh("ip", "netns", "add", ns)
    try:
        sh(
            "ip",
            "link",
            "add",
            "ncbench0",
            "netns",
            a,
            "type",
            "veth",
            "peer",
            "name",
            "ncbench1",
            "netns",
            b,
        )
        for ns, dev, ip in ((a, "ncbench0", "10.199.0.1/24"), (b, "ncbench1", "10.199.0.2/24")):
            sh("ip", "-n", ns, "addr", "add", ip, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", b, sys.executable, "-c", LISTENER],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            check = Check("tcp", "10.199.0.2", 8080, timeout_s=2.0)
            deadline = time.monotonic() + 10
            while not run_many([(a, check)])[0].success and time.monotonic() < deadline:
                time.sleep(0.1)
            times, failed = [], 0
            for _ in range(rounds):
                started = time.perf_counter()
                outcomes = run_many([(a, check)] * n)
                times.append((time.perf_counter() - started) * 1000)
                failed += sum(not o.success for o in outcomes)
            name = f"{n} TCP checks at once (one probe_run)"
            print(f"{name:<44} p50={pct(times, 0.5):8.1f} ms  max={max(times):8.1f} ms  failed={failed}")
        finally:
            server.terminate()
            server.wait()
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--checks", type=int, default=100)
    args = parser.parse_args()
    print(machine(), "|", load())
    tmp = Path(tempfile.mkdtemp(prefix="ncslo"))
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        str(shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"),
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-storageDataPath={tmp / 'data'}",
        "-retentionPeriod=100y",
        "-search.latencyOffset=0s",
    ]
    engine = SupervisedProcess("victoria-metrics", argv, f"{url}/health", tmp / "vm.log")
    engine.start()
    try:
        end = int(time.time()) // args.interval * args.interval
        started = time.perf_counter()
        n = history(url, end, args.interval)
        took = time.perf_counter() - started
        print(f"history: {n:,} samples (30 d every {args.interval} s) imported in {took:.1f} s")
        queries(url, end, args.interval, args.repeat)
    finally:
        engine.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    checks(args.checks, 5)


if __name__ == "__main__":
    main()

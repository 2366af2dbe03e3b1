"""Webhook latency: from an event's commit to its signed POST at a receiver, one replica (SQLite).

A platform administrator subscribes a receiver (``tests/integration/egresslab.py``: an HTTP server in
a network namespace of its own, opened by ``NOVACRON_EGRESS_ALLOW``, recording each POST's arrival
time) to ``flavor.*``; ``--events`` flavors are created ``--gap`` seconds apart. Latency is the
receipt time minus the event's ``time`` (stamped in the transaction just before its commit; same
clock). The dispatcher's fallback tick is ``--tick`` seconds (``NOVACRON_WEBHOOK_TICK_S``).

Before the event bus woke the dispatcher (its 1 s tick alone), run the same bench against that code:
``PYTHONPATH=<checkout before>/src .venv/bin/python bench/bench_webhooks.py --tick 1``.

Run: ``.venv/bin/python bench/bench_webhooks.py [--events 50] [--gap 0.23] [--tick 30]`` (root)
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from datetime import datetime
from pathlib import Path

from common import load, machine, make_server, pct

from tests.conftest import destroy_server, short_tmpdir
from tests.integration import egresslab


def received(served: Path) -> list[float]:
    """Each recorded POST's latency (seconds): arrival minus the event's commit time."""
    out = []
    for p in sorted((served / "posts").glob("*.json")) if (served / "posts").exists() else []:
        rec = json.loads(p.read_text())
        event = json.loads(rec["body"])["data"]
        if event["type"] == "flavor.created":
            out.append(rec["time"] - datetime.fromisoformat(event["time"]).timestamp())
    return out


def run(events: int, gap: float, tick: float) -> list[float]:
    served = short_tmpdir("nchookb")
    try:
        with egresslab.origin(served) as origin:
            srv = make_server(
                NOVACRON_EGRESS_ALLOW=origin.network,
                NOVACRON_NETWORK_BACKEND="none",
                NOVACRON_WEBHOOK_TICK_S=str(tick),
            )
            srv.start()
            try:
                with srv.client() as admin:
                    r = admin.post(
                        "/v1/webhooks",
                        json={"name": "bench", "url": origin.url("/b"), "event_types": ["flavor.*"]},
                    )
                    r.raise_for_status()
                    time.sleep(max(1.5, tick + 0.5) if tick <= 2 else 1.5)  # its cursor is set
                    for i in range(events):
                        body = {"name": f"wh-{i}-{time.time_ns()}", "vcpus": 1, "ram_mb": 128, "disk_gb": 1}
                        admin.post("/v1/flavors", json=body).raise_for_status()
                        time.sleep(gap)
                deadline = time.monotonic() + max(30.0, 2 * tick)
                while len(got := received(served)) < events and time.monotonic() < deadline:
                    time.sleep(0.1)
                return got
            finally:
                destroy_server(srv)
    finally:
        shutil.rmtree(served, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--gap", type=float, default=0.23, help="seconds between events")
    ap.add_argument("--tick", type=float, default=30.0, help="the dispatcher's fallback tick (s)")
    args = ap.parse_args()
    print(f"# {machine()}; {load()}")
    got = run(args.events, args.gap, args.tick)
    print(f"{args.events} events {args.gap} s apart, fallback tick {args.tick} s:")
    print(f"  delivered {len(got)} of {args.events}")
    if got:
        ms = [g * 1000 for g in got]
        print(
            f"  commit -> webhook POST received: p50 {pct(ms, 0.5):.1f} ms, p99 {pct(ms, 0.99):.1f} ms, "
            f"max {max(ms):.1f} ms"
        )
        print(f"  slowest: {', '.join(f'{m:.0f}' for m in sorted(ms)[-3:])} ms")


if __name__ == "__main__":
    main()

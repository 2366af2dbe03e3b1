"""Live event clients: latency from an event's commit to each of N followers, and server CPU per
follower, on one replica (SQLite) and across two replicas on PostgreSQL (followers split over both,
events made on the first: the second learns of them by LISTEN/NOTIFY, or with ``--bus nats`` from a
NATS JetStream server, Debian's ``nats-server -js`` started here).

Each follower is an SSE stream (``/v1/events/stream?types=flavor.*``) held by this process (one
asyncio loop); the events are flavors created by an administrator, one every ``--gap`` seconds.
Latency is the follower's receipt time minus the event's ``time`` (stamped in the transaction just
before its commit; same clock). No peer runs here: the figure before the bus was a 250 ms poll per
follower (a mean wait of 125 ms by construction, and one query per follower every 250 ms).

Run: ``.venv/bin/python bench/bench_event_bus.py [--clients 1000] [--events 20] [--replicas 1|2]
[--bus postgres|nats]`` (``--bus nats`` implies two replicas)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs among the dev dependencies
from common import Server, load, machine, make_server, pct


def raise_fd_limit(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(want, hard)), hard))


@contextlib.contextmanager
def replicas(count: int, bus: str) -> Iterator[list[Server]]:
    env: dict[str, str] = {"NOVACRON_NETWORK_BACKEND": "none"}
    with contextlib.ExitStack() as stack:
        if bus == "nats":
            from tests.conftest import short_tmpdir
            from tests.services.nats import start_nats

            env["NOVACRON_EVENT_BUS"] = stack.enter_context(start_nats(short_tmpdir("nats"))).url
        yield from _replicas(count, env)


def _replicas(count: int, env: dict[str, str]) -> Iterator[list[Server]]:
    pg: Any = None
    if count > 1:
        from tests.conftest import short_tmpdir
        from tests.services.postgres import start_postgres

        pg = start_postgres()
        env |= {
            "NOVACRON_EMBEDDED_AGENT": "0",
            "NOVACRON_DATABASE_URL": pg.create_database("event_bench"),
            "NOVACRON_KEK_DIR": str(short_tmpdir("nck")),
        }
    servers = [make_server(**env) for _ in range(count)]
    try:
        for s in servers:
            s.start(timeout_s=90)
        yield servers
    finally:
        for s in servers:
            s.stop()
        if pg is not None:
            pg.stop()


async def follow(url: str, token: str, got: list[float], opened: asyncio.Event, ready: list[int]) -> None:
    """One SSE follower on a bare asyncio connection (an HTTP client library would make this process,
    not the server, the bottleneck at 1,000 streams): each message is one chunk, one line of data."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(
        f"GET /v1/events/stream?types=flavor.* HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    try:
        async for raw in reader:
            if raw.startswith(b": following"):
                ready[0] += 1
                if ready[0] == ready[1]:
                    opened.set()
            elif raw.startswith(b"data: "):
                e = json.loads(raw[6:])
                got.append(time.time() - datetime.fromisoformat(e["time"]).timestamp())
    finally:
        writer.close()


def cpu_seconds(servers: list[Server]) -> float:
    total = 0.0
    for s in servers:
        assert s.proc is not None
        proc = psutil.Process(s.proc.pid)
        t = proc.cpu_times()
        total += t.user + t.system
    return total


async def run(
    servers: list[Server], clients: int, events: int, gap: float
) -> tuple[list[list[float]], float, float]:
    """Latencies per replica (the events are made on the first), server CPU, wall time."""
    token = servers[0].token()
    per_replica: list[list[float]] = [[] for _ in servers]
    opened, ready = asyncio.Event(), [0, clients]
    followers = [
        asyncio.create_task(
            follow(servers[i % len(servers)].url, token, per_replica[i % len(servers)], opened, ready)
        )
        for i in range(clients)
    ]
    await asyncio.wait_for(opened.wait(), 120)
    await asyncio.sleep(1)
    cpu0, t0 = cpu_seconds(servers), time.monotonic()
    async with httpx.AsyncClient(
        base_url=servers[0].url, headers={"Authorization": f"Bearer {token}"}
    ) as admin:
        for i in range(events):
            r = await admin.post(
                "/v1/flavors",
                json={"name": f"ev-{i}-{time.time_ns()}", "vcpus": 1, "ram_mb": 128, "disk_gb": 1},
            )
            r.raise_for_status()
            await asyncio.sleep(gap)
    deadline = time.monotonic() + 30
    while sum(map(len, per_replica)) < clients * events and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    cpu = cpu_seconds(servers) - cpu0
    wall = time.monotonic() - t0
    for f in followers:
        f.cancel()
    await asyncio.gather(*followers, return_exceptions=True)
    return per_replica, cpu, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--events", type=int, default=20)
    ap.add_argument("--gap", type=float, default=0.5, help="seconds between events")
    ap.add_argument("--replicas", type=int, default=1, choices=(1, 2))
    ap.add_argument("--bus", default="postgres", choices=("postgres", "nats"), help="between replicas")
    args = ap.parse_args()
    if args.bus == "nats":
        args.replicas = 2
    raise_fd_limit(4 * args.clients + 1024)
    print(f"# {machine()}; {load()}")
    with replicas(args.replicas, args.bus) as servers:
        per_replica, cpu, wall = asyncio.run(run(servers, args.clients, args.events, args.gap))
    got = [g for latencies in per_replica for g in latencies]
    want = args.clients * args.events
    where = "one replica (SQLite)" if args.replicas == 1 else "two replicas (PostgreSQL), followers split"
    where += ", bus NATS JetStream" if args.bus == "nats" else ""
    print(f"{args.clients} SSE followers on {where}, {args.events} events {args.gap} s apart:")
    print(f"  delivered {len(got)} of {want}")
    if got:
        ms = [g * 1000 for g in got]
        print(
            f"  commit -> follower latency: p50 {pct(ms, 0.5):.1f} ms, p99 {pct(ms, 0.99):.1f} ms, "
            f"max {max(ms):.1f} ms"
        )
    if len(per_replica) > 1 and per_replica[1]:
        ms = [g * 1000 for g in per_replica[1]]
        print(
            f"  of them on the second replica (through the bus): p50 {pct(ms, 0.5):.1f} ms, "
            f"p99 {pct(ms, 0.99):.1f} ms"
        )
    print(f"  server CPU {cpu:.2f} s over {wall:.1f} s: {cpu / args.clients * 1000:.2f} ms per follower")
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(f"  this client process (all followers): {own.ru_utime + own.ru_stime:.1f} s CPU in total")
    print(f"# {load()}")


if __name__ == "__main__":
    main()

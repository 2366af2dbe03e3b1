"""1,000 live chart viewers: many dashboards showing one VM's live chart at once.

Starts a real ``novacron-server`` on loopback (its embedded VictoriaMetrics; the simulated compute
driver by default, so no guest's QEMU competes for the CPU; ``--driver qemu`` boots the test guest),
creates one VM and waits until its chart has points. Then ``--viewers`` clients, each with its own
connection, watch the VM's live chart (11 lines, 300 points each) for ``--duration`` seconds:

- ``--mode push`` (the default, the dashboard's live mode): each holds one stream
  ``GET /v1/vms/{id}/metrics/live`` (connections opened over the first ``--ramp`` seconds). Reports
  the frames delivered per second in the steady part against the expected viewers / step, each
  frame's delivery lag (its arrival minus its newest point's time) p50/p99/max, errors, and the CPU
  of the server and its store per viewer per second.
- ``--mode poll`` (the dashboard before): each asks for ``GET /v1/vms/{id}/metrics?range=5m`` again
  ``--interval`` seconds after each answer (first requests spread over one interval). Reports the
  refresh rate achieved against the most the viewers could ask for, latency p50/p99/max, errors,
  and the CPU of the server and its store per second and per chart.

Run: .venv/bin/python bench/bench_chart_viewers.py [--mode push|poll] [--viewers 1000] [--duration 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass, field

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs among the dev dependencies
from common import (
    GUEST_OUT,
    Guest,
    Server,
    default_project,
    import_guest_image,
    load,
    machine,
    make_server,
    pct,
)

from tests.conftest import wait_task

#: a client process above this share of one core measured itself, not the server
CLIENT_SATURATED = 0.9


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def poller(
    client: httpx.AsyncClient, path: str, args: argparse.Namespace, until: float, tally: Tally
) -> None:
    """One dashboard in live mode, as ``metric_chart.js`` does it: read the chart, then read it again
    an interval after the answer came (a slow server slows its viewers down, it is not flooded)."""
    await asyncio.sleep(random.uniform(0, args.interval))
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            r = await client.get(path)
            if r.status_code != 200:
                tally.error(f"HTTP {r.status_code}")
            elif len(r.json()["series"]) < 5:
                tally.error("chart without its lines")
            else:
                tally.latencies.append(time.monotonic() - started)
        except httpx.HTTPError as exc:
            tally.error(type(exc).__name__)
        await asyncio.sleep(args.interval)


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def measured(srv: Server) -> tuple[psutil.Process, list[psutil.Process]]:
    """The server process and its metrics store's."""
    server = psutil.Process(srv.proc.pid if srv.proc else 0)
    return server, [c for c in server.children(recursive=True) if "victoria" in c.name()]


def client_note(client_cores: float) -> str:
    if client_cores < CLIENT_SATURATED:
        return ""
    return " (the client saturated a core: the figures are what it could take in, a floor)"


async def run_pollers(srv: Server, token: str, vm_id: str, args: argparse.Namespace) -> None:
    server, store = measured(srv)
    path = f"/v1/vms/{vm_id}/metrics?range=5m"
    limits = httpx.Limits(max_connections=args.viewers, max_keepalive_connections=args.viewers)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=srv.url, verify=srv.verify, limits=limits, headers=headers, timeout=60
    ) as client:
        tally = Tally()
        own = psutil.Process()
        cpu0 = (cpu_seconds([server]), cpu_seconds(store), cpu_seconds([own]))
        t0 = time.monotonic()
        until = t0 + args.duration
        await asyncio.gather(*(poller(client, path, args, until, tally) for _ in range(args.viewers)))
        wall = time.monotonic() - t0
        cpu1 = (cpu_seconds([server]), cpu_seconds(store), cpu_seconds([own]))
    # the most a viewer can ask for: one chart per interval when answers take no time
    asked = args.viewers / args.interval
    done = len(tally.latencies)
    ms = [s * 1000 for s in tally.latencies]
    print(f"viewers={args.viewers} every {args.interval:g} s for {args.duration:g} s (wall {wall:.1f} s)")
    errors = tally.errors or 0
    print(f"refreshes: at most {asked:.1f}/s asked, answered {done / wall:.1f}/s ({done} charts)")
    print(f"errors: {errors}")
    print(f"each viewer got a new chart every {wall * args.viewers / max(done, 1):.1f} s on average")
    if ms:
        print(f"latency: p50={pct(ms, 0.5):.1f} ms p99={pct(ms, 0.99):.1f} ms max={max(ms):.1f} ms")
    server_cpu, store_cpu, client_cpu = (b - a for a, b in zip(cpu0, cpu1, strict=True))
    per_chart = 1000 * (server_cpu + store_cpu) / max(done, 1)
    print(
        f"CPU: server {server_cpu / wall:.2f} cores, VictoriaMetrics {store_cpu / wall:.2f} cores "
        f"({per_chart:.2f} ms per chart together); this client {client_cpu / wall:.2f} cores"
        + client_note(client_cpu / wall)
    )
    print(f"end: {load()}")


@dataclass
class Pushed:
    """What the streams received: each frame's arrival time and delivery lag, and the errors."""

    frames: list[tuple[float, float]] = field(default_factory=list)
    charts: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def frame(self, raw: bytes) -> None:
        """One server-sent event as it arrived: a chart or a points frame (comments are not counted)."""
        now = time.time()
        head, _, data = raw.partition(b"\ndata: ")
        if not data:
            return
        body = json.loads(data)
        newest = max((p[0] for line in body["series"] for p in line["points"]), default=body["end"])
        if head == b"event: chart":
            self.charts += 1
        self.frames.append((now, now - newest))


async def follower(
    client: httpx.AsyncClient, path: str, args: argparse.Namespace, until: float, got: Pushed
) -> None:
    """One dashboard in live mode, as ``metric_chart.js`` does it: one stream, held."""
    await asyncio.sleep(random.uniform(0, args.ramp))
    try:
        async with client.stream("GET", path) as r:
            if r.status_code != 200:
                got.error(f"HTTP {r.status_code}")
                return
            buffer = b""
            async for chunk in r.aiter_raw():
                buffer += chunk
                *frames, buffer = buffer.split(b"\n\n")
                for frame in frames:
                    got.frame(frame)
                if time.monotonic() >= until:
                    return
            got.error("stream ended early")
    except httpx.HTTPError as exc:
        got.error(type(exc).__name__)


async def run_pushed(srv: Server, token: str, vm_id: str, args: argparse.Namespace) -> None:
    server, store = measured(srv)
    own = psutil.Process()
    path = f"/v1/vms/{vm_id}/metrics/live"
    limits = httpx.Limits(max_connections=args.viewers, max_keepalive_connections=args.viewers)
    timeout = httpx.Timeout(60, read=60)
    headers = {"Authorization": f"Bearer {token}"}
    got = Pushed()
    async with httpx.AsyncClient(
        base_url=srv.url, verify=srv.verify, limits=limits, headers=headers, timeout=timeout
    ) as client:
        t0 = time.monotonic()
        until = t0 + args.duration
        streams = [asyncio.create_task(follower(client, path, args, until, got)) for _ in range(args.viewers)]
        # the steady part: every stream open and past its first chart
        await asyncio.sleep(args.ramp + 2)
        steady = (time.time(), cpu_seconds([server]), cpu_seconds(store), cpu_seconds([own]))
        await asyncio.gather(*streams)
        end = (time.time(), cpu_seconds([server]), cpu_seconds(store), cpu_seconds([own]))
    report_pushed(args, got, steady, end)


def report_pushed(
    args: argparse.Namespace,
    got: Pushed,
    steady: tuple[float, float, float, float],
    end: tuple[float, float, float, float],
) -> None:
    window = end[0] - steady[0]
    server_cpu, store_cpu, client_cpu = (b - a for a, b in zip(steady[1:], end[1:], strict=True))
    step_s = 1.0  # the live chart's step at the default 1 s sampling interval
    expected = args.viewers / step_s
    lags = [lag for t, lag in got.frames if steady[0] <= t <= end[0]]
    delivered = len(lags)
    print(f"viewers={args.viewers}, one stream each, for {args.duration:g} s (opened over {args.ramp:g} s)")
    print(
        f"frames: {delivered / window:.1f}/s delivered in the steady {window:.1f} s, "
        f"expected {expected:.1f}/s (viewers / {step_s:g} s step); {len(got.frames)} frames in all, "
        f"{got.charts} whole charts ({got.charts - args.viewers} beyond each viewer's first)"
    )
    print(f"errors: {got.errors or 0}")
    if lags:
        ms = [s * 1000 for s in lags]
        quantiles = f"p50={pct(ms, 0.5):.0f} ms p99={pct(ms, 0.99):.0f} ms max={max(ms):.0f} ms"
        print(f"delivery lag in the steady part (arrival - newest point): {quantiles}")
    per_viewer = 1e6 * (server_cpu + store_cpu) / window / args.viewers
    print(
        f"CPU in the steady part: server {server_cpu / window:.2f} cores, VictoriaMetrics "
        f"{store_cpu / window:.2f} cores ({per_viewer:.0f} us per viewer per second together); "
        f"this client {client_cpu / window:.2f} cores" + client_note(client_cpu / window)
    )
    print(f"end: {load()}")


def wait_chart(c: httpx.Client, vm_id: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        chart = c.get(f"/v1/vms/{vm_id}/metrics", params={"range": "5m"}).json()
        if sum(len(s["points"]) for s in chart["series"] if s["name"] == "cpu") >= 30:
            return
        time.sleep(1)
    raise RuntimeError("the VM's chart never had 30 points")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("push", "poll"), default="push")
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=5.0, help="poll: seconds between refreshes")
    parser.add_argument("--ramp", type=float, default=5.0, help="push: seconds over which streams open")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--driver", choices=("simulated", "qemu"), default="simulated")
    args = parser.parse_args()
    print(f"bench_chart_viewers --mode {args.mode}: {machine()}")
    print(f"start: {load()}")
    guest = Guest(
        kernel=GUEST_OUT / "vmlinux",
        initrd=GUEST_OUT / "initrd.img",
        disk=GUEST_OUT / "disk.qcow2",
        cmdline=(GUEST_OUT / "cmdline").read_text().strip(),
    )
    srv = make_server(NOVACRON_COMPUTE_DRIVER=args.driver)
    srv.start(timeout_s=120)
    try:
        token = srv.token()
        with srv.client(token) as c:
            c.timeout = httpx.Timeout(60)
            image_id = import_guest_image(c, guest, name="bench-guest")
            r = c.post(
                "/v1/vms",
                json={
                    "name": "watched",
                    "image": image_id,
                    "flavor": "tiny",
                    "project_id": default_project(c),
                },
            )
            r.raise_for_status()
            vm_id = r.json()["vm"]["id"]
            assert wait_task(c, r.json()["task_id"], 300)["state"] == "succeeded"
            wait_chart(c, vm_id)
            print(f"VM {vm_id} ({args.driver} driver): its live chart has points")
        run = run_pushed if args.mode == "push" else run_pollers
        asyncio.run(run(srv, token, vm_id, args))
    finally:
        srv.stop()


if __name__ == "__main__":
    main()

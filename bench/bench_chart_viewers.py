"""1,000 live chart viewers: many dashboards showing one VM's live chart at once.

Starts a real ``novacron-server`` on loopback (its embedded VictoriaMetrics; the simulated compute
driver by default, so no guest's QEMU competes for the CPU; ``--driver qemu`` boots the test guest),
creates one VM and waits until its chart has points. Then ``--viewers`` clients, each with its own
keep-alive connection, ask for the VM's live chart (``GET /v1/vms/{id}/metrics?range=5m``: 11 lines,
300 points each) again ``--interval`` seconds after each answer, as the dashboard's live mode does,
for ``--duration`` seconds (first requests spread over one interval). Reports the refresh rate
achieved against the most the viewers could ask for, latency p50/p99/max, errors, and the CPU the
server process and its metrics store used per second and per chart.

Run: .venv/bin/python bench/bench_chart_viewers.py [--viewers 1000] [--interval 5] [--duration 60]
"""

from __future__ import annotations

import argparse
import asyncio
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


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def viewer(
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


async def run_viewers(srv: Server, token: str, vm_id: str, args: argparse.Namespace) -> None:
    server = psutil.Process(srv.proc.pid if srv.proc else 0)
    store = [c for c in server.children(recursive=True) if "victoria" in c.name()]
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
        await asyncio.gather(*(viewer(client, path, args, until, tally) for _ in range(args.viewers)))
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
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between a viewer's refreshes")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--driver", choices=("simulated", "qemu"), default="simulated")
    args = parser.parse_args()
    print(f"bench_chart_viewers: {machine()}")
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
        asyncio.run(run_viewers(srv, token, vm_id, args))
    finally:
        srv.stop()


if __name__ == "__main__":
    main()

"""GET /v1/vms latency with 1,000 VMs: p50/p99 from a client on loopback.

SCALE SIMULATION: the server runs the *simulated* compute driver (NOVACRON_COMPUTE_DRIVER=simulated,
src/novacron/virt/simulated.py) and the default SQLite store. No QEMU runs; the figures are those of
the API, the store and the control plane. All 1,000 VMs are created through the API
(POST /v1/vms, flavor tiny, a thread pool of clients) and their create tasks awaited; the time that
takes is printed as well. Nothing is inserted behind the API.

The simulated host has 64 CPUs by default, i.e. 256 vCPUs at the scheduler's allocation ratio of 4:
too few for 1,000 one-vCPU VMs, and novacron-server has no setting for the simulated host's size.
``--sim-cpus`` (default 256) therefore starts the server through a launcher that only changes the
SimulatedDriver's ``cpus`` constructor default before ``novacron.server.main()``; ``--sim-cpus 64``
runs the stock server (VMs past the 256th then fail placement, which the output shows).

Then, over one keep-alive client with the admin token, each of:
  GET /v1/vms                     (default page of 50)
  GET /v1/vms?limit=500
  GET /v1/vms?state=running       (filter, default page)
is timed ``--requests`` times (default 500), after 20 warm-up requests.

Run: .venv/bin/python bench/bench_list_vms.py [--vms 1000] [--requests 500] [--sim-cpus 256]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
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

GOAL_P99_MS = 20.0


def serve_simulated(cpus: int) -> None:
    """Server mode (in the child): novacron-server with a simulated host of ``cpus`` CPUs."""
    import novacron.virt.simulated as sim

    original = sim.SimulatedDriver.__init__

    def init(self: sim.SimulatedDriver, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("cpus", cpus)
        original(self, *args, **kwargs)

    sim.SimulatedDriver.__init__ = init  # type: ignore[method-assign]  # the benchmark's simulated host size
    from novacron.server import main as server_main

    sys.argv = [sys.argv[0]]
    server_main()


class SimServer(Server):
    """tests/conftest.py's Server, started through ``serve_simulated`` when the host size changes."""

    sim_cpus: int = 64

    def start(self, timeout_s: float = 60.0) -> None:
        argv = [sys.executable, "-m", "novacron.server"]
        if self.sim_cpus != 64:
            argv = [sys.executable, __file__, "--serve-simulated", str(self.sim_cpus)]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer in {timeout_s}s")


def start_agents(srv: Server, c: httpx.Client, n: int) -> list[subprocess.Popen[bytes]]:
    """``n`` simulated hosts, each its own agent process, joined with a join token like any host."""
    procs = []
    for i in range(n):
        token = c.post("/v1/hosts/join-tokens", json={}).json()
        state = srv.state_dir / f"agent-{i}"
        argv = [
            sys.executable,
            "-m",
            "novacron.cli.main",
            "agent",
            "--driver",
            "simulated",
            "--server",
            f"https://127.0.0.1:{srv.env['NOVACRON_AGENT_PORT']}",
            "--name",
            f"sim-{i:02d}",
            "--state-dir",
            str(state),
            "--join-token",
            token["join_token"],
            "--ca-fingerprint",
            token["ca_fingerprint"],
        ]
        log = (srv.state_dir / f"agent-{i}.log").open("ab")
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 60
    while n and sum(h["state"] == "up" for h in c.get("/v1/hosts").json()["items"]) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("simulated agents did not all come up")
        time.sleep(0.3)
    return procs


def count(c: httpx.Client, path: str, **params: str) -> int:
    """Items of a list, following cursors (500 a page)."""
    n, cursor = 0, None
    while True:
        q: dict[str, str | int] = {**params, "limit": 500}
        if cursor:
            q["cursor"] = cursor
        page = c.get(path, params=q).json()
        n += len(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return n


def create_vms(srv: Server, image_id: str, project_id: str, n: int, threads: int) -> list[float]:
    """POST n VMs from ``threads`` clients; returns each POST's latency in seconds."""
    token = srv.token()

    def worker(k: int) -> list[float]:
        lat: list[float] = []
        with srv.client(token) as c:
            for i in range(k, n, threads):
                t0 = time.perf_counter()
                r = c.post(
                    "/v1/vms",
                    json={
                        "name": f"vm{i:04d}",
                        "image": image_id,
                        "flavor": "tiny",
                        "project_id": project_id,
                    },
                )
                lat.append(time.perf_counter() - t0)
                if r.status_code != 202:
                    raise RuntimeError(f"POST /v1/vms {r.status_code}: {r.text}")
        return lat

    with ThreadPoolExecutor(threads) as pool:
        return [x for part in pool.map(worker, range(threads)) for x in part]


def wait_tasks(srv: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with srv.client() as c:
        while time.monotonic() < deadline:
            busy = sum(
                len(c.get("/v1/tasks", params={"state": s, "limit": 1}).json()["items"])
                for s in ("pending", "running")
            )
            if not busy:
                return
            time.sleep(0.25)
    raise TimeoutError(f"create tasks still running after {timeout_s}s")


def measure(
    c: httpx.Client, label: str, params: dict[str, str | int], requests: int, trace_ms: float = 0.0
) -> float:
    for _ in range(20):
        c.get("/v1/vms", params=params).raise_for_status()
    samples: list[float] = []
    slow: list[tuple[float, float]] = []
    items = 0
    start = time.perf_counter()
    for _ in range(requests):
        t0 = time.perf_counter()
        r = c.get("/v1/vms", params=params)
        samples.append(time.perf_counter() - t0)
        if trace_ms and samples[-1] * 1e3 > trace_ms:
            slow.append((t0 - start, samples[-1]))
        r.raise_for_status()
        items = len(r.json()["items"])
    p99 = pct(samples, 0.99) * 1e3
    print(
        f"{label:<34} items/page={items:<4} n={requests}  p50={pct(samples, 0.50) * 1e3:7.2f} ms  "
        f"p99={p99:7.2f} ms  max={max(samples) * 1e3:7.2f} ms  mean={statistics.fmean(samples) * 1e3:7.2f} ms"
        f"  goal p99<{GOAL_P99_MS:g} ms: {'met' if p99 < GOAL_P99_MS else 'NOT met'}"
    )
    if trace_ms:
        print(
            f"  requests over {trace_ms:g} ms: {len(slow)} of {requests}; when (s from start), latency, gap:"
        )
        prev = None
        for t, lat in slow:
            gap = f"{t - prev:6.3f} s" if prev is not None else "      -"
            print(f"    t={t:7.3f} s  {lat * 1e3:6.1f} ms  gap {gap}")
            prev = t
    return p99


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-simulated":
        serve_simulated(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--threads", type=int, default=8, help="concurrent clients creating VMs")
    parser.add_argument("--sim-cpus", type=int, default=256, help="CPUs of the simulated host (stock: 64)")
    parser.add_argument(
        "--hosts",
        type=int,
        default=0,
        help="simulated hosts, each a separate 'novacron agent --driver simulated' process joined over "
        "HTTPS (the production topology); 0 = one embedded simulated host inside the server process",
    )
    parser.add_argument(
        "--trace-slow-ms", type=float, default=0.0, help="list the default-page requests slower than this"
    )
    args = parser.parse_args()
    guest = Guest(
        kernel=GUEST_OUT / "vmlinux",
        initrd=GUEST_OUT / "initrd.img",
        disk=GUEST_OUT / "disk.qcow2",
        cmdline=(GUEST_OUT / "cmdline").read_text().strip(),
    )
    print(f"bench_list_vms: {machine()}")
    print("SCALE SIMULATION: simulated compute driver (no QEMU), SQLite store, client on loopback")
    print(f"start: {load()}")
    if args.hosts:
        base = make_server(NOVACRON_COMPUTE_DRIVER="simulated", NOVACRON_EMBEDDED_AGENT="0")
    else:
        base = make_server(NOVACRON_COMPUTE_DRIVER="simulated")
    srv = SimServer(state_dir=base.state_dir, port=base.port, env=base.env)
    srv.sim_cpus = args.sim_cpus
    srv.start()
    agents: list[subprocess.Popen[bytes]] = []
    try:
        with srv.client() as c:
            image_id = import_guest_image(c, guest, name="bench-guest")
            project_id = default_project(c)
            agents = start_agents(srv, c, args.hosts)
            hosts = c.get("/v1/hosts").json()["items"]
        for host in hosts[:3]:
            print(
                f"host {host['name']}: driver={host['driver']} "
                f"cpus={host['cpus']} x{host['cpu_allocation_ratio']:g} "
                f"ram={host['ram_mb']} MiB x{host['ram_allocation_ratio']:g}"
            )
        print(
            f"hosts: {len(hosts)} ({'separate agent processes' if args.hosts else 'embedded in the server'})"
        )
        t0 = time.perf_counter()
        post_lat = create_vms(srv, image_id, project_id, args.vms, args.threads)
        t_posted = time.perf_counter() - t0
        wait_tasks(srv, timeout_s=1800)
        t_done = time.perf_counter() - t0
        print(
            f"create {args.vms} VMs ({args.threads} client threads): all POSTs answered in {t_posted:.1f} s "
            f"({args.vms / t_posted:.0f}/s; POST p50={pct(post_lat, 0.5) * 1e3:.1f} ms "
            f"p99={pct(post_lat, 0.99) * 1e3:.1f} ms); all create tasks finished after {t_done:.1f} s "
            f"({args.vms / t_done:.1f} VMs/s)"
        )
        with srv.client() as c:
            ok = count(c, "/v1/tasks", kind="vm.create", state="succeeded")
            failed = count(c, "/v1/tasks", kind="vm.create", state="failed")
            running = count(c, "/v1/vms", state="running")
            total = count(c, "/v1/vms")
            if failed:
                err = c.get("/v1/tasks", params={"kind": "vm.create", "state": "failed", "limit": 1}).json()
                print(f"  first failure: {err['items'][0].get('error')}")
        print(f"create tasks: {ok} succeeded, {failed} failed; VMs listed: {total}, running: {running}")
        print(f"before measuring: {load()}")
        with srv.client() as c:
            measure(c, "GET /v1/vms (default limit 50)", {}, args.requests, args.trace_slow_ms)
            measure(c, "GET /v1/vms?limit=500", {"limit": 500}, args.requests)
            measure(c, "GET /v1/vms?state=running", {"state": "running"}, args.requests)
        print(f"end: {load()}")
    finally:
        for agent in agents:
            agent.kill()
            agent.wait()
        srv.stop()
        import shutil

        shutil.rmtree(srv.state_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

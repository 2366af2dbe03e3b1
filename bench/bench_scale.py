"""The whole control plane at scale on this machine: a SCALE SIMULATION (simulated compute driver).

Two ``novacron-server`` replicas on one PostgreSQL 15 (tests/services/postgres.py), no embedded
agent. N hosts are real agent runtimes (``AgentRuntime`` + ``HttpControlPlane`` over the
``simulated`` compute driver and network backend) multiplexed in one process (bench/simhosts.py):
each joins with its own join token, keeps its own credential and state directory, and speaks the
real agent protocol over HTTPS (register, a report every ``--report-interval`` s, long-polled
claims, completions), half of them to each replica's agent port. Rule 6 holds: every request and
every control-plane step is the production code path; only the hypervisor is simulated (no QEMU:
a VM is an entry in the simulated driver's memory).

T tenants (quota defaults off), one project each; ``--net-tenants`` tenants get ``--networks``
networks (a /24 subnet each) and their VMs a NIC on one of them. Phases:

1. create V VMs (``--ha-fraction`` of them HA) through both replicas, ``--concurrency`` requests
   in flight: creates per second to *running* (first POST to the last VM running, read in the DB);
2. steady state (no API traffic) for ``--db-window`` s: the database load of heartbeats and reports
   (pg_stat_database transactions and rows per second; hosts' requests per second);
3. churn for ``--churn-s`` s: creates, deletes and migrations at ``--churn-rate`` per second, while
   ``--sse`` live SSE clients (split over both replicas) follow ``vm.*`` events and one client
   measures list and show latency per endpoint (p50/p99) alternating replicas; placement decisions
   per second = VMs placed (create tasks that got a host, migrations that got a target) per second;
4. HA: ``--failed-hosts`` hosts holding HA VMs are killed (their agents cancelled at once); the
   reaction time is from the kill to each of their HA VMs running on another host.

Memory: RSS of each replica (psutil, sampled; peak) and of the host multiplexer.

Run: PYTHONPATH=src python bench/bench_scale.py [--hosts 1000 --tenants 100 --vms 20000]
     (scaled down: --hosts 100 --vms 2000)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs among the dev dependencies
import sqlalchemy as sa
from common import ROOT, Server, load, machine, make_server, pct

HERE = Path(__file__).resolve().parent
#: creates stop being waited for when no VM has come up for this long (a task stuck)
STALL_S = 90.0


@dataclass
class Plane:
    """The running control plane: replicas, database, the hosts' process."""

    servers: list[Server]
    db: sa.Engine
    token: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    rss_peak: dict[int, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def api(self, i: int = 0) -> httpx.AsyncClient:
        s = self.servers[i % len(self.servers)]
        return httpx.AsyncClient(
            base_url=s.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=120
        )

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.db.connect() as c:
            return c.execute(sa.text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.db.connect() as c:
            return list(c.execute(sa.text(sql), params))


def out(line: str = "") -> None:
    print(line, flush=True)


@contextmanager
def control_plane(stack: ExitStack, task_concurrency: int) -> Iterator[Plane]:
    from tests.conftest import short_tmpdir
    from tests.services.postgres import start_postgres

    pg = start_postgres(options=("-c shared_preload_libraries=pg_stat_statements",))
    stack.callback(pg.stop)
    url = pg.create_database("scale")
    env = {
        "NOVACRON_EMBEDDED_AGENT": "0",
        "NOVACRON_DATABASE_URL": url,
        "NOVACRON_KEK_DIR": str(short_tmpdir("nck")),
        "NOVACRON_COMPUTE_DRIVER": "simulated",
        "NOVACRON_NETWORK_BACKEND": "simulated",
        "NOVACRON_TENANT_QUOTA_DEFAULTS": "none",
        "NOVACRON_TASK_CONCURRENCY": str(task_concurrency),
        # the replicas' shared image store (a deployment of several replicas shares it)
        "NOVACRON_IMAGES_DIR": str(short_tmpdir("nci")),
    }
    servers = [make_server(**env) for _ in range(2)]
    for s in servers:
        s.start(timeout_s=120)
        stack.callback(s.stop)
    engine = sa.create_engine(url, pool_size=4)
    stack.callback(engine.dispose)
    with engine.begin() as c:  # which statements make the load (the bench connects as superuser)
        c.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
    out("# replicas: " + ", ".join(str(s.state_dir) for s in servers))
    yield Plane(servers, engine, servers[0].token())


def sample_rss(plane: Plane, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        for s in plane.servers:
            assert s.proc is not None
            try:
                rss = int(psutil.Process(s.proc.pid).memory_info().rss)
            except psutil.Error:
                continue
            plane.rss_peak[s.port] = max(plane.rss_peak.get(s.port, 0), rss)


# ---- setup -------------------------------------------------------------------------------------


async def setup(plane: Plane, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """A tiny image, the tenants with a project each, the networks: what creates need."""
    disk = workdir / "tiny.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "1G"], check=True)
    async with plane.api() as c:
        me = (await c.get("/v1/projects")).json()["items"][0]["id"]
        r = await c.post("/v1/images", json={"name": "tiny", "public": True, "project_id": me})
        r.raise_for_status()
        image = r.json()["id"]
        r = await c.put(f"/v1/images/{image}/file", content=disk.read_bytes())
        r.raise_for_status()
        gate = asyncio.Semaphore(8)

        async def tenant(i: int) -> tuple[str, list[str]]:
            async with gate:
                r = await c.post("/v1/tenants", json={"name": f"t{i:04d}"})
                r.raise_for_status()
                r = await c.post("/v1/projects", json={"name": "main", "tenant_id": r.json()["id"]})
                r.raise_for_status()
                project = r.json()["id"]
                nets = []
                for n in range(args.networks if i < args.net_tenants else 0):
                    r = await c.post("/v1/networks", json={"name": f"n{n}", "project_id": project})
                    r.raise_for_status()
                    nets.append(r.json()["id"])
                    body = {"network": nets[-1], "name": f"s{n}", "cidr": f"10.{n % 250}.{i % 250}.0/24"}
                    (await c.post("/v1/subnets", json=body)).raise_for_status()
                return project, nets

        projects = await asyncio.gather(*(tenant(i) for i in range(args.tenants)))
    return {"image": image, "projects": projects}


async def join_tokens(plane: Plane, n: int) -> tuple[dict[str, str], str]:
    """One join token per host (as an operator makes them), eight requests at a time."""
    gate = asyncio.Semaphore(8)
    async with plane.api() as c:

        async def one(i: int) -> tuple[str, dict[str, str]]:
            async with gate:
                r = await c.post("/v1/hosts/join-tokens", json={"ttl_s": 7200})
                r.raise_for_status()
                return f"sim-{i:04d}", dict(r.json())

        made = await asyncio.gather(*(one(i) for i in range(n)))
    return {name: t["join_token"] for name, t in made}, made[0][1]["ca_fingerprint"]


def start_hosts(plane: Plane, args: argparse.Namespace, workdir: Path) -> float:
    """Join tokens for N hosts, then the multiplexer; answers the seconds until all reported."""
    t0 = time.monotonic()
    tokens, fingerprint = asyncio.run(join_tokens(plane, args.hosts))
    out(f"join tokens: {args.hosts} made in {time.monotonic() - t0:.1f} s")
    urls = [f"https://127.0.0.1:{s.env['NOVACRON_AGENT_PORT']}" for s in plane.servers]
    t0 = time.monotonic()
    procs = []
    for k, url in enumerate(urls):  # half the hosts on each replica, as behind a load balancer
        mine = {n: tok for j, (n, tok) in enumerate(sorted(tokens.items())) if j % len(urls) == k}
        spec = workdir / f"tokens-{k}.json"
        spec.write_text(json.dumps({"fingerprint": fingerprint, "tokens": mine}))
        argv = [sys.executable, str(HERE / "simhosts.py"), "--server", url, "--tokens", str(spec)]
        argv += ["--state-dir", str(workdir / "hosts"), "--report-interval", str(args.report_interval)]
        argv += ["--cpus", str(args.host_cpus), "--ram-mb", str(args.host_ram_mb)]
        log = (workdir / f"simhosts-{k}.log").open("a")
        procs.append(
            subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        )
    for p in procs:
        assert p.stdout is not None
        while not (line := p.stdout.readline()).startswith("ready"):
            if not line:
                raise RuntimeError(f"the host multiplexer exited: see {workdir}/simhosts-*.log")
    plane.procs = procs
    return time.monotonic() - t0


def stop_hosts(plane: Plane, names: list[str]) -> dict[str, float]:
    """Kill the agents of ``names`` (in whichever multiplexer runs them): name -> kill time."""
    procs = plane.procs
    killed: dict[str, float] = {}
    for k, p in enumerate(procs):
        mine = [n for n in names if int(n.split("-")[1]) % len(procs) == k]
        if not mine:
            continue
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write("stop " + " ".join(mine) + "\n")
        p.stdin.flush()
        for _ in mine:
            _, name, at = p.stdout.readline().split()
            killed[name] = float(at)
    return killed


def hosts_rss(plane: Plane) -> int:
    procs = plane.procs
    return sum(int(psutil.Process(p.pid).memory_info().rss) for p in procs)


# ---- creates -----------------------------------------------------------------------------------


def vm_body(i: int, world: dict[str, Any], args: argparse.Namespace, tag: str) -> dict[str, Any]:
    project, nets = world["projects"][i % len(world["projects"])]
    body: dict[str, Any] = {
        "name": f"{tag}{i:06d}",
        "image": world["image"],
        "flavor": "tiny",
        "project_id": project,
        "ha": (i % 1000) < args.ha_fraction * 1000,
    }
    if nets:
        body["networks"] = [{"network": nets[i % len(nets)]}]
    return body


async def post_many(plane: Plane, bodies: list[dict[str, Any]], concurrency: int) -> list[str]:
    """POST the VMs through both replicas; answers the create failures (status and text)."""
    clients = [plane.api(i) for i in range(len(plane.servers))]
    queue = list(enumerate(bodies))
    errors: list[str] = []

    async def worker() -> None:
        while queue:
            i, body = queue.pop()
            try:
                r = await clients[i % len(clients)].post("/v1/vms", json=body)
            except httpx.HTTPError as exc:  # a replica that drops the connection counts as a refusal
                errors.append(f"{type(exc).__name__} {exc}")
                continue
            if r.status_code != 202:
                errors.append(f"{r.status_code} {r.text[:200]}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    for c in clients:
        await c.aclose()
    return errors


def wait_running(plane: Plane, want: int, timeout_s: float) -> tuple[float, int]:
    """Seconds until ``want`` VMs run (or the timeout), and how many ran."""
    t0 = time.monotonic()
    running, said, moved, last = 0, t0, t0, -1
    while time.monotonic() - t0 < timeout_s:
        running = int(plane.scalar("SELECT count(*) FROM vms WHERE state = 'running'"))
        if running != last:
            moved, last = time.monotonic(), running
        if want and time.monotonic() - said >= 30:
            said = time.monotonic()
            out(f"  ... {running} running after {said - t0:.0f} s more")
        busy = plane.rows("SELECT id, step_index FROM tasks WHERE state IN ('pending', 'running')")
        if running >= want or not busy:
            break
        if want and time.monotonic() - moved > STALL_S:
            out(f"  STALLED: no VM came up for {STALL_S:g} s; tasks left: {len(busy)}, e.g. {busy[:3]}")
            break
        time.sleep(0.5)
    return time.monotonic() - t0 - (STALL_S if want and running < want and busy else 0), running


def phase_create(plane: Plane, world: dict[str, Any], args: argparse.Namespace) -> None:
    bodies = [vm_body(i, world, args, "vm") for i in range(args.vms)]
    t0 = time.monotonic()
    errors = asyncio.run(post_many(plane, bodies, args.concurrency))
    posted = time.monotonic() - t0
    waited, running = wait_running(plane, args.vms - len(errors), args.create_timeout)
    total = posted + waited
    failed = plane.rows("SELECT error FROM tasks WHERE kind = 'vm.create' AND state = 'failed' LIMIT 3")
    n_failed = plane.scalar("SELECT count(*) FROM tasks WHERE kind = 'vm.create' AND state = 'failed'")
    out(
        f"creates: {args.vms} POSTed in {posted:.1f} s ({args.vms / posted:.1f}/s accepted), "
        f"{len(errors)} refused; {running} running after {total:.1f} s"
    )
    out(f"  creates per second to running: {running / total:.1f}/s; create tasks failed: {n_failed}")
    for e in errors[:3]:
        out(f"  refused: {e}")
    for (e,) in failed:
        out(f"  failed: {str(e)[:300]}")


# ---- steady state: the database load of heartbeats and reports ----------------------------------


def pg_counters(plane: Plane) -> dict[str, int]:
    row = plane.rows(
        "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, tup_updated, "
        "tup_deleted, blks_hit, blks_read FROM pg_stat_database WHERE datname = current_database()"
    )[0]
    return dict(row._mapping)


def top_statements(plane: Plane, dt: float, n: int = 8) -> None:
    """The statements run most often since the reset: calls per second, mean time, their text."""
    rows = plane.rows(
        "SELECT calls, mean_exec_time, rows, query FROM pg_stat_statements WHERE dbid = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY calls DESC LIMIT :n",
        n=n,
    )
    out("  top statements (pg_stat_statements): calls/s, mean ms, rows per call, statement")
    for calls, mean, nrows, query in rows:
        text = " ".join(str(query).split())[:110]
        out(f"    {calls / dt:7.1f}/s {mean:6.2f} ms {nrows / max(1, calls):7.1f}  {text}")


def phase_steady(plane: Plane, args: argparse.Namespace) -> None:
    plane.scalar("SELECT count(*) FROM (SELECT pg_stat_statements_reset()) AS r")
    c0, t0 = pg_counters(plane), time.monotonic()
    cpu0 = [psutil.Process(s.proc.pid).cpu_times() for s in plane.servers if s.proc]
    time.sleep(args.db_window)
    c1, dt = pg_counters(plane), time.monotonic() - t0
    cpu1 = [psutil.Process(s.proc.pid).cpu_times() for s in plane.servers if s.proc]
    rates = {k: (c1[k] - c0[k]) / dt for k in c0}
    out(
        f"steady state ({args.hosts} hosts reporting every {args.report_interval:g} s, no API traffic, "
        f"{dt:.0f} s): database load"
    )
    out(
        f"  transactions {rates['xact_commit']:.0f}/s commits, {rates['xact_rollback']:.0f}/s rollbacks; "
        f"rows fetched {rates['tup_fetched']:.0f}/s, returned {rates['tup_returned']:.0f}/s, "
        f"inserted {rates['tup_inserted']:.0f}/s, updated {rates['tup_updated']:.0f}/s, "
        f"deleted {rates['tup_deleted']:.0f}/s"
    )
    per_host = rates["xact_commit"] / max(1, args.hosts) * args.report_interval
    out(f"  per host: {per_host:.2f} commits per report interval")
    cpu = [(b.user + b.system - a.user - a.system) / dt * 100 for a, b in zip(cpu0, cpu1, strict=True)]
    out("  replica CPU: " + ", ".join(f"{x:.0f} %" for x in cpu) + " (100 % = one core)")
    stale = plane.scalar("SELECT count(*) FROM hosts WHERE state <> 'up'")
    out(f"  hosts not up: {stale}")
    top_statements(plane, dt)


# ---- churn: API latency, placement rate, live events -------------------------------------------


async def follow(url: str, token: str, got: list[float], ready: list[int]) -> None:
    """One SSE client on a bare connection (as bench_event_bus.py): receipt minus event time."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(
        f"GET /v1/events/stream?types=vm.* HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    try:
        async for raw in reader:
            if raw.startswith(b": following"):
                ready[0] += 1
            elif raw.startswith(b"data: "):
                e = json.loads(raw[6:])
                got.append(time.time() - datetime.fromisoformat(e["time"]).timestamp())
    finally:
        writer.close()


ENDPOINTS = (
    "GET /v1/vms",
    "GET /v1/vms/{id}",
    "GET /v1/hosts",
    "GET /v1/hosts/{id}",
    "GET /v1/networks",
    "GET /v1/tasks",
    "GET /v1/tenants",
)


async def measure_reads(plane: Plane, until: float, lat: dict[str, list[float]]) -> None:
    vms = [r[0] for r in plane.rows("SELECT id FROM vms ORDER BY random() LIMIT 500")]
    hosts = [r[0] for r in plane.rows("SELECT id FROM hosts LIMIT 500")]
    clients = [plane.api(i) for i in range(len(plane.servers))]
    n = 0
    while time.monotonic() < until:
        for ep in ENDPOINTS:
            path = ep.split()[1].replace("/vms/{id}", f"/vms/{random.choice(vms)}")
            path = path.replace("/hosts/{id}", f"/hosts/{random.choice(hosts)}")
            t0 = time.perf_counter()
            try:
                r = await clients[n % len(clients)].get(path)
            except httpx.HTTPError:
                lat[f"{ep} failed"].append(0.0)
                continue
            if r.status_code == 200:  # a VM deleted by the churn meanwhile answers 404
                lat[ep].append(time.perf_counter() - t0)
            n += 1
    for c in clients:
        await c.aclose()


async def churn_load(
    plane: Plane, world: dict[str, Any], args: argparse.Namespace, until: float, counts: dict[str, int]
) -> None:
    """Creates, deletes and migrations (in thirds) at ``--churn-rate`` per second over both replicas."""
    victims = [
        r[0]
        for r in plane.rows(
            "SELECT id FROM vms WHERE state = 'running' ORDER BY random() LIMIT :n",
            n=int(args.churn_rate * args.churn_s) + 10,
        )
    ]
    clients = [plane.api(i) for i in range(len(plane.servers))]
    pending: set[asyncio.Task[None]] = set()
    k = 0

    async def one(kind: str, c: httpx.AsyncClient, k: int) -> None:
        try:
            await one_request(kind, c, k)
        except httpx.HTTPError as exc:
            counts[f"{kind} {type(exc).__name__}"] += 1

    async def one_request(kind: str, c: httpx.AsyncClient, k: int) -> None:
        if kind == "create":
            r = await c.post("/v1/vms", json=vm_body(k, world, args, "churn"))
        elif kind == "delete":
            r = await c.delete(f"/v1/vms/{victims.pop()}")
        else:
            r = await c.post(f"/v1/vms/{victims.pop()}/migrate", json={})
        counts[f"{kind} {r.status_code}"] += 1

    while time.monotonic() < until:
        kind = ("create", "delete", "migrate")[k % 3]
        t = asyncio.create_task(one(kind, clients[k % len(clients)], k))
        pending.add(t)
        t.add_done_callback(pending.discard)
        k += 1
        await asyncio.sleep(1 / args.churn_rate)
    await asyncio.gather(*pending, return_exceptions=True)
    for c in clients:
        await c.aclose()


async def churn(plane: Plane, world: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    per_replica: list[list[float]] = [[] for _ in plane.servers]
    ready = [0]
    followers = [
        asyncio.create_task(follow(plane.servers[i % 2].url, plane.token, per_replica[i % 2], ready))
        for i in range(args.sse)
    ]
    deadline = time.monotonic() + 60
    while ready[0] < args.sse and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    lat: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    until = time.monotonic() + args.churn_s
    await asyncio.gather(measure_reads(plane, until, lat), churn_load(plane, world, args, until, counts))
    await asyncio.sleep(2)  # the last events on their way
    for f in followers:
        f.cancel()
    await asyncio.gather(*followers, return_exceptions=True)
    return {"lat": lat, "counts": counts, "events": per_replica, "sse_ready": ready[0]}


def phase_churn(plane: Plane, world: dict[str, Any], args: argparse.Namespace) -> None:
    started = plane.scalar("SELECT now()")
    t0 = time.monotonic()
    res = asyncio.run(churn(plane, world, args))
    wait_running(plane, 0, 60)  # let the churn's tasks finish before counting them
    dt = time.monotonic() - t0
    placed = plane.rows(
        "SELECT kind, state, count(*) FROM tasks WHERE created_at >= :t AND kind IN "
        "('vm.create', 'vm.migrate') GROUP BY kind, state ORDER BY kind, state",
        t=started,
    )
    out(
        f"churn {args.churn_s:g} s at {args.churn_rate:g} requests/s (creates, deletes, migrations), "
        f"requests answered: " + ", ".join(f"{k}: {v}" for k, v in sorted(res["counts"].items()))
    )
    out("  tasks of the churn: " + ", ".join(f"{k} {s}: {n}" for k, s, n in placed))
    n_placed = plane.scalar(
        "SELECT count(*) FROM tasks WHERE created_at >= :t AND ((kind = 'vm.create' AND state = 'succeeded') "
        "OR (kind = 'vm.migrate' AND (state = 'succeeded' OR error NOT ILIKE '%no valid host%')))",
        t=started,
    )
    out(
        f"  placement decisions under churn: {n_placed} in {dt:.0f} s = {n_placed / dt:.1f}/s "
        "(creates placed and running + migrations given a target)"
    )
    errors = plane.rows(
        "SELECT DISTINCT error FROM tasks WHERE created_at >= :t AND kind = 'vm.migrate' "
        "AND state = 'failed' LIMIT 3",
        t=started,
    )
    out(f"  migration errors: {[str(e)[:160] for (e,) in errors]}")
    for ep in ENDPOINTS:
        ms = [x * 1000 for x in res["lat"][ep]]
        if ms:
            out(
                f"  {ep:<20} n={len(ms):5d}  p50 {pct(ms, 0.5):8.1f} ms  p99 {pct(ms, 0.99):8.1f} ms  "
                f"max {max(ms):8.1f} ms  failed {len(res['lat'][ep + ' failed'])}"
            )
    got = [x * 1000 for r in res["events"] for x in r]
    out(
        f"  live events: {res['sse_ready']} of {args.sse} SSE clients following vm.* (split over both "
        f"replicas), {len(got)} deliveries"
    )
    if got:
        out(
            f"  event latency (commit -> client): p50 {pct(got, 0.5):.1f} ms, p99 {pct(got, 0.99):.1f} ms, "
            f"max {max(got):.1f} ms"
        )


# ---- HA ----------------------------------------------------------------------------------------


def phase_ha(plane: Plane, args: argparse.Namespace) -> None:
    rows = plane.rows(
        "SELECT h.name, count(*) FROM vms v JOIN hosts h ON h.id = v.host_id WHERE v.ha AND "
        "v.state = 'running' GROUP BY h.name ORDER BY count(*) DESC LIMIT :n",
        n=args.failed_hosts,
    )
    names = [r[0] for r in rows]
    watched = (
        {
            r[0]: r[1]
            for r in plane.rows(
                "SELECT v.id, h.id FROM vms v JOIN hosts h ON h.id = v.host_id "
                "WHERE v.ha AND v.state = 'running' AND h.name IN :names",
                names=tuple(names),
            )
        }
        if names
        else {}
    )
    if not names:
        out("HA: no host holds a running HA VM; skipped")
        return
    killed = stop_hosts(plane, names)
    t_kill = min(killed.values())
    back: dict[str, float] = {}
    deadline = time.monotonic() + args.ha_timeout
    while len(back) < len(watched) and time.monotonic() < deadline:
        for vm_id, host in plane.rows(
            "SELECT id, host_id FROM vms WHERE id IN :ids AND state = 'running'", ids=tuple(watched)
        ):
            if vm_id not in back and host != watched[vm_id]:
                back[vm_id] = time.time() - t_kill
        time.sleep(0.25)
    out(f"HA: {len(names)} hosts killed (their agents stopped at once), {len(watched)} HA VMs on them")
    if back:
        xs = sorted(back.values())
        out(
            f"  running elsewhere: {len(back)} of {len(watched)}; reaction (kill -> running elsewhere): "
            f"first {xs[0]:.1f} s, p50 {pct(xs, 0.5):.1f} s, last {xs[-1]:.1f} s"
        )
    else:
        out(f"  none ran elsewhere within {args.ha_timeout:g} s")
    states = plane.rows("SELECT state, count(*) FROM vms WHERE id IN :ids GROUP BY state", ids=tuple(watched))
    out("  their states now: " + ", ".join(f"{s}: {n}" for s, n in states))


# ---- main --------------------------------------------------------------------------------------


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--vms", type=int, default=20000)
    ap.add_argument("--networks", type=int, default=50, help="networks in each of --net-tenants tenants")
    ap.add_argument("--net-tenants", type=int, default=2)
    ap.add_argument("--ha-fraction", type=float, default=0.1)
    ap.add_argument("--concurrency", type=int, default=16, help="create requests in flight")
    ap.add_argument(
        "--task-concurrency",
        type=int,
        default=8,
        help="NOVACRON_TASK_CONCURRENCY (the platform's default: 8)",
    )
    ap.add_argument("--report-interval", type=float, default=1.0, help="the agents' (production: 1 s)")
    ap.add_argument("--host-cpus", type=int, default=64)
    ap.add_argument("--host-ram-mb", type=int, default=256 * 1024)
    ap.add_argument("--db-window", type=float, default=30)
    ap.add_argument("--churn-s", type=float, default=60)
    ap.add_argument("--churn-rate", type=float, default=6, help="churn requests per second")
    ap.add_argument("--sse", type=int, default=100)
    ap.add_argument("--failed-hosts", type=int, default=10)
    ap.add_argument("--create-timeout", type=float, default=1800)
    ap.add_argument("--ha-timeout", type=float, default=180)
    return ap.parse_args()


def main() -> None:
    args = parse()
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    from tests.conftest import short_tmpdir

    workdir = short_tmpdir("scale")
    out(f"# bench_scale: {machine()}; {load()}")
    out("# SCALE SIMULATION: simulated compute driver and network backend (no QEMU); the control plane,")
    out("# the agent runtimes and the agent protocol are the production code paths (rule 6)")
    out(f"# task concurrency {args.task_concurrency}, agents report every {args.report_interval:g} s")
    out(
        f"# {args.hosts} hosts, {args.tenants} tenants, {args.vms} VMs, {args.networks} networks in each of "
        f"{args.net_tenants} tenants; 2 replicas on PostgreSQL 15; workdir {workdir}"
    )
    stop = threading.Event()
    with ExitStack() as stack, control_plane(stack, args.task_concurrency) as plane:
        stack.callback(_end_hosts, plane)
        threading.Thread(target=sample_rss, args=(plane, stop), daemon=True).start()
        stack.callback(stop.set)
        t0 = time.monotonic()
        world = asyncio.run(setup(plane, args, workdir))
        out(f"setup (image, tenants, projects, networks): {time.monotonic() - t0:.1f} s")
        joined = start_hosts(plane, args, workdir)
        up = plane.scalar("SELECT count(*) FROM hosts WHERE state = 'up'")
        out(
            f"hosts: {args.hosts} joined and reported in {joined:.1f} s ({up} up); multiplexer RSS "
            f"{hosts_rss(plane) / 2**20:.0f} MiB ({hosts_rss(plane) / 2**10 / args.hosts:.0f} KiB per host)"
        )
        phase_create(plane, world, args)
        phase_steady(plane, args)
        plane.token = plane.servers[0].token()  # a fresh one: a slow run outlives the first
        phase_churn(plane, world, args)
        phase_ha(plane, args)
        for i, s in enumerate(plane.servers):
            assert s.proc is not None
            rss = psutil.Process(s.proc.pid).memory_info().rss
            peak = plane.rss_peak.get(s.port, 0)
            out(f"replica {'AB'[i]}: RSS {rss / 2**20:.0f} MiB now, peak {peak / 2**20:.0f} MiB")
        out(f"host multiplexer: RSS {hosts_rss(plane) / 2**20:.0f} MiB for {args.hosts} hosts")
        out(f"# {load()}")


def _end_hosts(plane: Plane) -> None:
    for p in plane.procs:
        if p.stdin is not None:
            p.stdin.close()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()

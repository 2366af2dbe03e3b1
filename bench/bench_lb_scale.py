"""Programming many load balancers through the API on one real node (issue 14: "time to program
1,000 load balancers"), and what each costs the host.

Everything is real: a ``novacron-server`` with its embedded agent and the Linux network backend, a
tenant network, and ``--count`` load balancers made through ``/v1/loadbalancers``, each with an
HTTP pool, two members (two HAProxy processes in namespaces of this benchmark on the bridge,
shared by every pool) and an HTTP listener, one API call at a time per load balancer, each waiting
for ACTIVE (5 ``loadbalancer.apply`` tasks per load balancer), ``--workers`` load balancers at
once. The tenant's ``load_balancers`` and ``ports`` quotas are raised first, as the admin, through
``PATCH /v1/quota/nodes/tenant:<id>``. Afterwards every VIP is asked once from a client namespace.

Figures: load balancers programmed per second (first POST to the last ACTIVE), the time of one
load balancer early and late in the run (each change re-syncs the host's whole network state,
every leg included), HAProxy's memory per load balancer (RSS and PSS of its master and worker, and
the host's MemAvailable drop), and the per-load-balancer apply cost on the data plane alone
(``HAProxyInstance.apply`` in a scratch namespace: render, ``haproxy -c``, start; then a reload).

Run as root: ``.venv/bin/python bench/bench_lb_scale.py --count 100``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs among the dev dependencies

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_lb_changes import stop_server  # noqa: E402
from common import default_project, load, machine, make_server, pct  # noqa: E402
from lbplatform import Tenant, created, sh, wait_active  # noqa: E402

from novacron.lbaas import haproxy_config  # noqa: E402
from novacron.lbaas.haproxy import HAProxyInstance  # noqa: E402
from novacron.lbaas.model import ListenerSpec, LoadBalancerSpec, MemberSpec, PoolSpec  # noqa: E402
from tests.conftest import Server  # noqa: E402

CIDR = "10.82.0.0/22"
MEMBER_IPS = ("10.82.3.201", "10.82.3.202")
CLIENT_IP = "10.82.3.250"
MEMBER_PORT = 8080
#: the simulation's network: room for 1,000 VIPs (its members need no namespace)
SIM_CIDR = "10.84.0.0/21"
SIM_MEMBER_IPS = ("10.84.7.201", "10.84.7.202")
#: one load balancer's outcome: (id, VIP, seconds from the first POST to the last ACTIVE, "" or why it failed)
Outcome = tuple[str, str, float, str]

#: asks every VIP given on the command line once; prints how many answered 200
ASK_ALL = """
import sys, urllib.request
ok = 0
for vip in sys.argv[1:]:
    try:
        ok += urllib.request.urlopen(f"http://{vip}/", timeout=5).status == 200
    except Exception:
        pass
print(ok)
"""


def program(srv: Server, subnet_id: str, project: str, n: int, members: tuple[str, ...]) -> Outcome:
    """One load balancer with a pool of two members and a listener, each change waited for:
    (id, VIP, seconds from the first POST to the last ACTIVE, "" or why it failed)."""
    with srv.client() as c:
        t0 = time.monotonic()
        body = {"name": f"lb{n}", "vip_subnet_id": subnet_id, "project_id": project}
        lb = created(c.post("/v1/loadbalancers", json=body))
        try:
            complete(c, lb["id"], members)
        except RuntimeError as exc:  # ERROR, or a change rolled back: its reason, and go on
            return lb["id"], lb["vip_address"], time.monotonic() - t0, str(exc)
        return lb["id"], lb["vip_address"], time.monotonic() - t0, ""


def complete(c: Any, lb_id: str, members: tuple[str, ...]) -> None:
    """The created load balancer's pool, two members and listener, each waited to ACTIVE."""
    wait_active(c, lb_id, poll_s=0.1)
    base = f"/v1/loadbalancers/{lb_id}"
    pool = created(c.post(base + "/pools", json={"name": "web", "protocol": "HTTP"}))
    wait_active(c, lb_id, poll_s=0.1)
    for ip in members:
        member = {"address": ip, "protocol_port": MEMBER_PORT}
        created(c.post(f"{base}/pools/{pool['id']}/members", json=member))
        wait_active(c, lb_id, poll_s=0.1)
    listener = {"protocol": "HTTP", "protocol_port": 80, "default_pool_id": pool["id"]}
    created(c.post(base + "/listeners", json=listener))
    wait_active(c, lb_id, poll_s=0.1)


def sync_times(c: Any) -> str:
    """The last 30 network syncs of the host (the agent's spans in the node's trace store)."""
    r = c.get("/v1/traces", params={"limit": 30, "name": "agent network_sync"})
    if r.status_code != 200:
        return f"traces: {r.status_code} {r.text[:120]}"
    items = r.json()["items"]
    took = [t["duration_ms"] / 1000 for t in items]
    return (
        f"network_sync p50 {pct(took, 0.5):.1f} s max {max(took):.1f} s" if took else "no network_sync traced"
    )


def haproxy_memory(state_dir: Path) -> tuple[int, float, float]:
    """(processes, RSS MiB, PSS MiB) of the HAProxy processes of the node's load balancers."""
    procs, rss, pss = 0, 0.0, 0.0
    marker = str(state_dir / "run" / "lb")
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.info["name"] == "haproxy" and marker in " ".join(proc.info["cmdline"] or []):
                info = proc.memory_full_info()
                procs, rss, pss = procs + 1, rss + info.rss / 2**20, pss + info.pss / 2**20
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return procs, rss, pss


def mem_available_mib() -> float:
    return float(psutil.virtual_memory().available) / 2**20


def apply_costs(workdir: Path, runs: int = 10) -> dict[str, list[float]]:
    """The data plane's share of one load balancer: render, ``haproxy -c``, start and reload of
    ``HAProxyInstance`` in a scratch namespace (the same spec shape as the API's)."""
    ns = "nclbs" + str(int(time.time()))[-5:]
    sh("ip", "netns", "add", ns)
    costs: dict[str, list[float]] = {
        "render": [],
        "haproxy -c": [],
        "start (apply)": [],
        "reload (apply)": [],
    }
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "addr", "add", "10.83.0.1/32", "dev", "lo")
        members = tuple(MemberSpec(f"m{i}", ip, MEMBER_PORT) for i, ip in enumerate(MEMBER_IPS))
        for run in range(runs):
            spec = LoadBalancerSpec(
                f"lb{run}",
                "10.83.0.1",
                (ListenerSpec("l1", "HTTP", 80, default_pool_id="p1"),),
                (PoolSpec("p1", members=members),),
            )
            instance = HAProxyInstance(workdir / f"a{run}", netns=ns)
            t0 = time.perf_counter()
            config = haproxy_config.render(spec, instance.paths, instance.user)
            t1 = time.perf_counter()
            instance.paths.state_dir.mkdir(mode=0o700)
            instance.acme_map.write_text("")  # as apply makes it before its check
            instance.check(config)
            t2 = time.perf_counter()
            instance.apply(spec)
            t3 = time.perf_counter()
            heavier = tuple(MemberSpec(m.id, m.address, m.protocol_port, weight=2) for m in members)
            instance.apply(
                LoadBalancerSpec(
                    spec.id, spec.vip_address, spec.listeners, (PoolSpec("p1", members=heavier),)
                )
            )
            t4 = time.perf_counter()
            instance.stop()
            costs["render"].append(t1 - t0)
            costs["haproxy -c"].append(t2 - t1)
            costs["start (apply)"].append(t3 - t2)
            costs["reload (apply)"].append(t4 - t3)
    finally:
        sh("ip", "netns", "del", ns, check=False)
    return costs


def raise_quota(c: Any, count: int) -> None:
    """The admin raises the tenant's load_balancers (and ports: a VIP is a port) quotas."""
    tenant_id = c.get("/v1/projects", params={"name": "default"}).json()["items"][0]["tenant_id"]
    limits = {"load_balancers": count + 10, "ports": 2 * count + 50}
    r = c.patch(f"/v1/quota/nodes/tenant:{tenant_id}", json={"limits": limits})
    if r.status_code != 200:
        raise RuntimeError(f"quota: {r.status_code} {r.text}")
    print(f"# quota of tenant {tenant_id} raised by the admin: {limits}")


def program_many(
    srv: Server, c: Any, subnet_id: str, project: str, args: argparse.Namespace, members: tuple[str, ...]
) -> tuple[list[Outcome], float]:
    """Load balancers 1 .. count-1, ``args.workers`` at once, progress every tenth; (outcomes, seconds)."""
    done: list[Outcome] = []
    lock = threading.Lock()
    t0 = time.monotonic()
    every = max(10, args.count // 10)

    def one(n: int) -> None:
        made = program(srv, subnet_id, project, n, members)
        with lock:
            done.append(made)
            if made[3]:
                print(f"  FAILED lb{n} after {made[2]:.1f} s: {made[3][-300:]}", flush=True)
            if len(done) % every == 0:
                print(
                    f"  {len(done):>4} done after {time.monotonic() - t0:6.1f} s; "
                    f"this one {made[2]:.1f} s; {sync_times(c)}; {load()}",
                    flush=True,
                )

    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(one, range(1, args.count)))
    return done, time.monotonic() - t0


def summary(done: list[Outcome], took: float, args: argparse.Namespace) -> None:
    """Rate, failures and the time of one load balancer, early and late in the run."""
    n_new = len(done) - 1
    print(
        f"{n_new} load balancers (5 changes each) in {took:.1f} s: "
        f"{n_new / took:.2f} load balancers/s ({5 * n_new / took:.2f} changes/s)"
    )
    failed = [d for d in done if d[3]]
    print(f"failed (ERROR or a change rolled back): {len(failed)} of {len(done)}")
    times = [d[2] for d in done[1:] if not d[3]]
    tenth = max(1, len(times) // 10)
    print(
        f"one load balancer (create, pool, 2 members, listener; {args.workers} at once): "
        f"p50 {pct(times, 0.5):.2f} s  p95 {pct(times, 0.95):.2f} s; "
        f"first {tenth}: median {statistics.median(times[:tenth]):.2f} s, "
        f"last {tenth}: median {statistics.median(times[-tenth:]):.2f} s"
    )


def run(srv: Server, args: argparse.Namespace, workdir: Path) -> None:
    tenant: Tenant | None = None
    try:
        with srv.client() as c:
            project = default_project(c)
            raise_quota(c, args.count)
            tenant = Tenant(c, project, CIDR)
            tenant.create()
            first = program(
                srv, tenant.subnet_id, project, 0, MEMBER_IPS
            )  # the bridge exists after the first leg
            for i, ip in enumerate(MEMBER_IPS):
                tenant.member(ip, MEMBER_PORT, f"m{i}", workdir)
            client_ns = tenant.plug(CLIENT_IP)
            avail_before = mem_available_mib()
            print(f"# {machine()}; {load()}; {args.count} load balancers, {args.workers} at once")
            done, took = program_many(srv, c, tenant.subnet_id, project, args, MEMBER_IPS)
            done.insert(0, first)
            time.sleep(2)
            procs, rss, pss = haproxy_memory(srv.state_dir)
            avail_after = mem_available_mib()
            print(f"# {args.count} programmed; after: {load()}")
            summary(done, took, args)
            running = max(1, procs // 2)  # a master and a worker each
            print(
                f"HAProxy processes {procs} ({running} load balancers running): "
                f"RSS {rss / running:.1f} MiB, PSS {pss / running:.1f} MiB per load balancer; "
                f"host MemAvailable {(avail_before - avail_after) / (len(done) - 1):.1f} MiB less per "
                "load balancer (the machine is shared: other processes move it)"
            )
            vips = [d[1] for d in done if not d[3]]
            argv = ["ip", "netns", "exec", client_ns, sys.executable, "-c", ASK_ALL, *vips]
            answered = int(
                subprocess.run(argv, capture_output=True, text=True, timeout=600).stdout.strip() or 0
            )
            print(f"VIPs answering 200 from a client on the network: {answered} of {len(vips)}")
    finally:
        if tenant is not None:
            tenant.cleanup()


def run_simulated(args: argparse.Namespace) -> None:
    """SCALE SIMULATION: the same API calls against a node whose compute driver and network
    backend are ``simulated`` (the agent answers ``lb_apply`` from memory: agent/lbaas_simulated.py):
    what the control plane alone costs per load balancer, up to 1,000 on one host."""
    srv = make_server(NOVACRON_COMPUTE_DRIVER="simulated", NOVACRON_NETWORK_BACKEND="simulated")
    srv.start(timeout_s=90)
    try:
        with srv.client() as c:
            project = default_project(c)
            raise_quota(c, args.count)
            tenant = Tenant(c, project, SIM_CIDR)
            tenant.create("lbsim")
            print(
                f"# {machine()}; {load()}; SIMULATED data plane; "
                f"{args.count} load balancers, {args.workers} at once"
            )
            first = program(srv, tenant.subnet_id, project, 0, SIM_MEMBER_IPS)
            done, took = program_many(srv, c, tenant.subnet_id, project, args, SIM_MEMBER_IPS)
            done.insert(0, first)
            print(f"# {args.count} programmed; after: {load()}")
            summary(done, took, args)
            server_rss = sum(p.memory_info().rss for p in server_processes(srv)) / 2**20
            print(f"server process RSS after: {server_rss:.0f} MiB")
    finally:
        stop_server(srv)


def server_processes(srv: Server) -> list[Any]:
    """The node's server process(es), found by their state directory in the environment."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "novacron" in cmdline and "server" in cmdline:
            try:
                if proc.environ().get("NOVACRON_STATE_DIR") == str(srv.state_dir):
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
    return found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--apply-runs", type=int, default=10)
    ap.add_argument("--simulated", action="store_true", help="simulated data plane: the control plane alone")
    args = ap.parse_args()
    if args.simulated:
        run_simulated(args)
        return
    if not shutil.which("haproxy"):
        raise SystemExit("needs haproxy (scripts/setup.sh installs it)")
    workdir = Path(tempfile.mkdtemp(prefix="nclbs"))
    try:
        costs = apply_costs(workdir, args.apply_runs)
        print(
            "# data plane alone, one load balancer (HAProxyInstance in a namespace, "
            f"{args.apply_runs} runs; {load()}):"
        )
        for what, samples in costs.items():
            print(
                f"  {what:<15} median {statistics.median(samples) * 1000:7.1f} ms  "
                f"max {max(samples) * 1000:7.1f} ms"
            )
        srv = make_server()
        srv.start(timeout_s=90)
        try:
            run(srv, args, workdir)
        finally:
            stop_server(srv)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Load balancer data plane: a client through the HAProxy of ``lbaas/haproxy.py`` against the same
client straight to one member and through a hand-written HAProxy configuration on the same path.

Namespaces from tests/integration/lblab.py (client, load balancer, two members on one bridge). The
members are HAProxy processes answering ``http-request return`` (a member that costs almost
nothing, so what is measured is the path, not a slow origin). ``wrk`` runs in the client namespace:
one connection (added latency p50/p99 per request) and 32 connections (requests/s), the
targets taking turns for three rounds, each round starting with another target (medians), all in
one run. TLS, against the platform's TERMINATED_HTTPS listener and a hand-written HAProxy
``bind ... ssl crt`` with the same EC P-256 certificate: handshakes/s from ``openssl s_time``
(``CLIENTS`` processes at once, each a handshake and a ``GET /`` per connection), full handshakes
(``-new``) and resumed ones (``-reuse``); and wrk with ``Connection: close`` at 32 connections
(a new connection per request; wrk resumes its TLS session on each reconnect).
Run as root: ``.venv/bin/python bench/bench_lb.py``.

``--platform``: the HTTP figures through a load balancer a real node made through its API
(``novacron-server`` with its embedded agent: the load balancer's namespace, its veth into a
tenant network's bridge and the platform's firewall on the way, HTTP pool of the same shape),
against the same client straight to one member and a hand-written HAProxy started in the platform's
namespace on the same VIP (port 8080): what the platform path costs over the data plane alone.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_lb_changes import stop_server  # noqa: E402
from common import default_project, load, machine, make_server  # noqa: E402
from lbplatform import Tenant, created, wait_active  # noqa: E402

from novacron.lbaas.haproxy import HAProxyInstance  # noqa: E402
from novacron.lbaas.model import HealthMonitorSpec, ListenerSpec, LoadBalancerSpec, MemberSpec, PoolSpec  # noqa: E402
from novacron.network.linux import names  # noqa: E402
from tests.integration.lblab import LbLab  # noqa: E402
from tests.tlsca import TestCA  # noqa: E402

SECONDS = 5
#: each target is measured this many times, the targets taking turns (the machine is shared)
ROUNDS = 3
MEMBER_PORT = 8000
HAND_PORT = 8080
HAND_TLS_PORT = 8443
TLS_NAME = "bench.example.test"
#: ``--platform``: the tenant network of the load balancer made through the API
PLATFORM_CIDR = "10.84.0.0/24"
PLATFORM_MEMBERS = {"m1": "10.84.0.201", "m2": "10.84.0.202"}
PLATFORM_CLIENT = "10.84.0.250"

MEMBER_CFG = """global
    maxconn 4096
defaults
    mode http
    timeout client 10s
    timeout server 10s
    timeout connect 5s
frontend member
    bind :{port}
    http-request return status 200 content-type text/plain string "{name}"
"""

#: what an operator would write by hand for the same two members
HAND_CFG = """global
    maxconn 4096
defaults
    mode http
    timeout client 50s
    timeout server 50s
    timeout connect 5s
frontend hand
    bind {vip}:{port}
    default_backend members
frontend hand_tls
    mode http
    bind {vip}:{tls_port} ssl crt {pem}
    default_backend members
backend members
    balance roundrobin
{servers}
"""


def haproxy_in(ns: str, config: Path) -> subprocess.Popen[bytes]:
    argv = ["ip", "netns", "exec", ns, "haproxy", "-f", str(config)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wrk(ns: str, url: str, connections: int, close: bool = False) -> dict[str, float]:
    """Requests/s and latency p50/p99 (ms) of ``wrk`` against ``url`` from namespace ``ns``;
    ``close``: a new connection for every request."""
    threads = min(2, connections)
    argv = [
        "ip",
        "netns",
        "exec",
        ns,
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{SECONDS}s",
        "--latency",
        *(["-H", "Connection: close"] if close else []),
        url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=SECONDS + 60).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        raise SystemExit(f"wrk {url}: {errors.group(0)}\n{out}")

    def latency(q: str) -> float:
        match = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)$", out, re.M)
        assert match, out
        return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps, out
    return {"rps": float(rps.group(1)), "p50": latency("50"), "p99": latency("99")}


#: s_time processes run at once per TLS measurement (one handshake at a time each)
CLIENTS = 4


def handshakes(ns: str, address: str, mode: str) -> float:
    """Handshakes/s of ``CLIENTS`` ``openssl s_time`` at once (mode ``-new``: full handshakes,
    ``-reuse``: resumed) against ``address`` (host:port) from namespace ``ns``."""
    argv = ["ip", "netns", "exec", ns, "openssl", "s_time", "-connect", address, mode]
    argv += ["-time", str(SECONDS), "-www", "/"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(CLIENTS)]
    rate = 0.0
    for proc in procs:
        out, _ = proc.communicate(timeout=SECONDS + 60)
        match = re.search(r"(\d+) connections in (\d+) real seconds", out)
        assert match, out
        rate += int(match.group(1)) / int(match.group(2))
    return rate


def measure_handshakes(client_ns: str, targets: dict[str, str]) -> None:
    """Full and resumed handshakes/s of each target, ROUNDS times taking turns; the medians."""
    order = list(targets)
    for mode, kind in (("-new", "full"), ("-reuse", "resumed")):
        runs: dict[str, list[float]] = {label: [] for label in targets}
        for round_ in range(ROUNDS):
            for label in order[round_ % len(order) :] + order[: round_ % len(order)]:
                runs[label].append(handshakes(client_ns, targets[label], mode))
        for label, rates in runs.items():
            print(f"{CLIENTS:>2} clnt  {label:<24} {statistics.median(rates):>9.0f} {kind} handshakes/s")


def measure(client_ns: str, targets: dict[str, str], connections: int, close: bool = False) -> None:
    """Each target ROUNDS times, taking turns; the medians printed."""
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in targets}
    order = list(targets)
    for round_ in range(ROUNDS):
        # each round starts with another target: the shared machine's load drifts
        for label in order[round_ % len(order) :] + order[: round_ % len(order)]:
            runs[label].append(wrk(client_ns, targets[label], connections, close))
    for label, results in runs.items():
        rps, p50, p99 = (statistics.median(r[key] for r in results) for key in ("rps", "p50", "p99"))
        figures = f"{rps:>9.0f} req/s  p50 {p50:.3f} ms  p99 {p99:.3f} ms"
        print(f"{connections:>2} conn  {label:<24} {figures}")


def lb_spec(lab: LbLab, members: list[str]) -> LoadBalancerSpec:
    return LoadBalancerSpec(
        "bench",
        lab.vip,
        (
            ListenerSpec("http", "HTTP", 80, default_pool_id="members"),
            ListenerSpec(
                "https", "TERMINATED_HTTPS", 443, default_pool_id="members", default_tls_container_ref="cert"
            ),
        ),
        (
            PoolSpec(
                "members",
                members=tuple(MemberSpec(m, lab.addresses[m], MEMBER_PORT) for m in members),
                healthmonitor=HealthMonitorSpec(type="HTTP", delay=5, timeout=2),
            ),
        ),
    )


def namespace_of(lb_id: str) -> str:
    """The namespace the node made for the load balancer's leg (``names.lb_ns``: its scope is
    the node's, so it is found by the leg's suffix)."""
    suffix = "l" + names.h(lb_id)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    found = [
        line.split()[0] for line in listed.splitlines() if line.split() and line.split()[0].endswith(suffix)
    ]
    if len(found) != 1:
        raise SystemExit(f"the namespace of load balancer {lb_id}: {found}")
    return found[0]


def platform_lb(c: Any, tenant: Tenant, project: str, workdir: Path) -> tuple[str, str]:
    """A load balancer made through the API (HTTP listener on 80, the pool of ``lb_spec``'s shape:
    round robin, an HTTP monitor every 5 s, the two members): its VIP and namespace."""
    tenant.create()
    lb = created(
        c.post(
            "/v1/loadbalancers",
            json={"name": "bench", "vip_subnet_id": tenant.subnet_id, "project_id": project},
        )
    )
    wait_active(c, lb["id"])
    for member, ip in PLATFORM_MEMBERS.items():
        tenant.member(ip, MEMBER_PORT, member, workdir)
    base = f"/v1/loadbalancers/{lb['id']}"
    monitor = {"type": "HTTP", "delay": 5, "timeout": 2}
    pool = created(
        c.post(base + "/pools", json={"name": "members", "protocol": "HTTP", "healthmonitor": monitor})
    )
    wait_active(c, lb["id"])
    for ip in PLATFORM_MEMBERS.values():
        created(
            c.post(f"{base}/pools/{pool['id']}/members", json={"address": ip, "protocol_port": MEMBER_PORT})
        )
        wait_active(c, lb["id"])
    listener = {"protocol": "HTTP", "protocol_port": 80, "default_pool_id": pool["id"]}
    created(c.post(base + "/listeners", json=listener))
    wait_active(c, lb["id"])
    return str(lb["vip_address"]), namespace_of(lb["id"])


def main_platform() -> None:
    """The same HTTP figures through a load balancer made by a real node's API on a tenant
    network (its namespace, veth, bridge and firewall), against the same client straight to one
    member and a hand-written HAProxy started in the platform's namespace on the same VIP."""
    workdir = Path(tempfile.mkdtemp(prefix="nclbp"))
    srv = make_server()
    srv.start(timeout_s=90)
    tenant: Tenant | None = None
    hand: subprocess.Popen[bytes] | None = None
    try:
        with srv.client() as c:
            project = default_project(c)
            tenant = Tenant(c, project, PLATFORM_CIDR)
            vip, lb_ns = platform_lb(c, tenant, project, workdir)
            client_ns = tenant.plug(PLATFORM_CLIENT)
            (workdir / "hand.pem").write_text(TestCA.create().bundle([TLS_NAME]))
            servers = "\n".join(f"    server {m} {ip}:{MEMBER_PORT}" for m, ip in PLATFORM_MEMBERS.items())
            cfg = workdir / "hand.cfg"
            cfg.write_text(
                HAND_CFG.format(
                    vip=vip, port=HAND_PORT, tls_port=HAND_TLS_PORT, pem=workdir / "hand.pem", servers=servers
                )
            )
            hand = haproxy_in(lb_ns, cfg)
            time.sleep(1)  # the hand-written HAProxy binds (a foreground process)
            targets = {
                "direct to one member": f"http://{PLATFORM_MEMBERS['m1']}:{MEMBER_PORT}/",
                "hand-written HAProxy": f"http://{vip}:{HAND_PORT}/",
                "platform load balancer": f"http://{vip}/",
            }
            print(f"# {machine()}; {load()}; {SECONDS} s per run, median of {ROUNDS} rounds")
            print("# through a real node: the load balancer made by the API on a tenant network")
            for connections in (1, 32):
                measure(client_ns, targets, connections)
            print(f"# after: {load()}")
    finally:
        if hand is not None:
            hand.terminate()
            hand.wait(timeout=10)
        if tenant is not None:
            tenant.cleanup()
        stop_server(srv)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    if not shutil.which("wrk") or not shutil.which("haproxy"):
        raise SystemExit("needs wrk and haproxy (scripts/setup.sh installs them)")
    if "--platform" in sys.argv[1:]:
        main_platform()
        return
    workdir = Path(
        subprocess.run(["mktemp", "-d", "/tmp/nclbb.XXXX"], capture_output=True, text=True).stdout.strip()
    )
    lab = LbLab(workdir)
    instance = HAProxyInstance(workdir / "lb", netns=lab.lb)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        members = lab.up(members=2)
        for member in members:
            cfg = workdir / f"{member}.cfg"
            cfg.write_text(MEMBER_CFG.format(port=MEMBER_PORT, name=member))
            procs.append(haproxy_in(lab.member_ns(member), cfg))
        servers = "\n".join(f"    server {m} {lab.addresses[m]}:{MEMBER_PORT}" for m in members)
        bundle = TestCA.create().bundle([TLS_NAME])
        (workdir / "hand.pem").write_text(bundle)
        hand = workdir / "hand.cfg"
        hand.write_text(
            HAND_CFG.format(
                vip=lab.vip, port=HAND_PORT, tls_port=HAND_TLS_PORT, pem=workdir / "hand.pem", servers=servers
            )
        )
        instance.put_certificate("cert", bundle)
        instance.apply(lb_spec(lab, members))
        procs.append(haproxy_in(lab.lb, hand))
        time.sleep(1)  # the hand-written HAProxy and the members bind (foreground processes)
        targets = {
            "direct to one member": f"http://{lab.addresses['m1']}:{MEMBER_PORT}/",
            "hand-written HAProxy": f"http://{lab.vip}:{HAND_PORT}/",
            "platform load balancer": f"http://{lab.vip}/",
        }
        print(f"# {machine()}; {load()}; {SECONDS} s per run, median of {ROUNDS} rounds")
        for connections in (1, 32):
            measure(lab.client, targets, connections)
        print("# TLS handshakes (openssl s_time: a handshake and GET / per connection)")
        measure_handshakes(
            lab.client,
            {
                "hand-written HAProxy": f"{lab.vip}:{HAND_TLS_PORT}",
                "platform load balancer": f"{lab.vip}:443",
            },
        )
        print("# HTTPS, a new connection per request (wrk: Connection: close; it resumes its session)")
        tls_targets = {
            "hand-written HAProxy": f"https://{lab.vip}:{HAND_TLS_PORT}/",
            "platform load balancer": f"https://{lab.vip}/",
        }
        measure(lab.client, tls_targets, 32, close=True)
        print(f"# after: {load()}")
    finally:
        instance.stop()
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        lab.down()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

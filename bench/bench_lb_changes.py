"""Failed requests while a load balancer's members change through the API (issue 14: goal 0).

Everything goes through the platform: a real node (``novacron-server`` with its embedded agent and
the Linux network backend), a tenant network and subnet, a load balancer made through
``/v1/loadbalancers`` (HTTP listener, HTTP pool with an HTTP health monitor), its HAProxy running
in the load balancer's namespace on the network's bridge. The members are HAProxy processes in
namespaces of this benchmark on the same bridge (the addresses of unbound ports, as
tests/integration/test_lb_api.py does) answering their name from memory; the client is a Python
process in another namespace on the bridge.

The client loops ``GET /`` through the VIP at a bounded rate in two ways at once: on one
keep-alive connection (reused until the server closes it: a browser or a service's HTTP pool),
and with a new connection per request; any exception or non-200 answer is a failed request. While
it runs, ``CHANGES`` member changes are made through the API, cycling through: add a member,
re-weight, drain, undrain, admin down, admin up, re-weight back, drain and undrain the new member,
remove it. Each change waits for the load balancer to be ACTIVE again (as a user or an autoscaler
would; polled every 50 ms), and its time from the API call to ACTIVE is recorded. The HAProxy
master's reload counter (``show proc`` on its master socket) tells how many changes were reloads.

Run as root: ``.venv/bin/python bench/bench_lb_changes.py`` (``--changes 100 --rate 100``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from common import default_project, load, machine, make_server, pct  # noqa: E402
from lbplatform import Tenant, created, master_reloads, wait_active  # noqa: E402

from tests.conftest import Server, release_host_network  # noqa: E402

CIDR = "10.81.0.0/24"
MEMBERS = {"m1": "10.81.0.201", "m2": "10.81.0.202", "m3": "10.81.0.203", "m4": "10.81.0.204"}
CLIENT_IP = "10.81.0.250"
MEMBER_PORT = 8080

#: the client, run in its namespace: two loops (keep-alive, a connection per request) until the
#: stop file appears, then its figures as JSON on stdout
CLIENT = r"""
import http.client, json, os, sys, threading, time
vip, stop, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
results = {}

def loop(kind):
    ok, failures, slow, served, conn, worst = 0, [], 0, {}, None, 0.0
    while not os.path.exists(stop):
        t0 = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(vip, 80, timeout=5)
            conn.request("GET", "/", headers={"Connection": "close"} if kind == "new connection" else {})
            resp = conn.getresponse()
            body = resp.read().decode()
            if resp.status != 200:
                failures.append([time.time(), f"HTTP {resp.status}: {body[:80]}"])
            else:
                ok += 1
                served[body] = served.get(body, 0) + 1
            if kind == "new connection" or resp.will_close:
                conn.close()
                conn = None
        except Exception as exc:
            failures.append([time.time(), repr(exc)])
            if conn is not None:
                conn.close()
            conn = None
        took = time.monotonic() - t0
        worst = max(worst, took)
        slow += took > 1.0
        time.sleep(max(0.0, interval - took))
    results[kind] = {"ok": ok, "failures": failures, "slow": slow, "worst_s": worst, "served": served}

threads = [threading.Thread(target=loop, args=(k,)) for k in ("keep-alive", "new connection")]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results))
"""


class Changes:
    """The member changes of one cycle, made through the API on ``pool``'s members."""

    def __init__(self, c: Any, lb_id: str, pool_id: str, members: dict[str, str]) -> None:
        self.c, self.lb_id = c, lb_id
        self.base = f"/v1/loadbalancers/{lb_id}/pools/{pool_id}/members"
        self.ids = members  # name -> member id

    def patch(self, name: str, body: dict[str, Any]) -> None:
        r = self.c.patch(f"{self.base}/{self.ids[name]}", json=body)
        if r.status_code != 200:
            raise RuntimeError(f"PATCH {name} {body}: {r.status_code} {r.text}")

    def add(self, name: str) -> None:
        body = {"name": name, "address": MEMBERS[name], "protocol_port": MEMBER_PORT}
        self.ids[name] = created(self.c.post(self.base, json=body))["id"]

    def remove(self, name: str) -> None:
        r = self.c.delete(f"{self.base}/{self.ids.pop(name)}")
        if r.status_code != 204:
            raise RuntimeError(f"DELETE {name}: {r.status_code} {r.text}")

    def cycle(self) -> list[tuple[str, Callable[[], None]]]:
        return [
            ("add", lambda: self.add("m4")),
            ("re-weight", lambda: self.patch("m1", {"weight": 3})),
            ("drain", lambda: self.patch("m2", {"drain": True})),
            ("undrain", lambda: self.patch("m2", {"drain": False})),
            ("admin down", lambda: self.patch("m3", {"admin_state_up": False})),
            ("admin up", lambda: self.patch("m3", {"admin_state_up": True})),
            ("re-weight", lambda: self.patch("m1", {"weight": 1})),
            ("drain", lambda: self.patch("m4", {"drain": True})),
            ("undrain", lambda: self.patch("m4", {"drain": False})),
            ("remove", lambda: self.remove("m4")),
        ]


def build(c: Any, tenant: Tenant, project: str, workdir: Path) -> tuple[dict[str, Any], Changes]:
    """The load balancer through the API: listener, pool with a health monitor, members m1-m3."""
    tenant.create()
    lb = created(
        c.post(
            "/v1/loadbalancers",
            json={"name": "bench", "vip_subnet_id": tenant.subnet_id, "project_id": project},
        )
    )
    lb = wait_active(c, lb["id"])
    # the leg is on the bridge now: the members and the client join it
    for name, ip in MEMBERS.items():
        tenant.member(ip, MEMBER_PORT, name, workdir)
    base = f"/v1/loadbalancers/{lb['id']}"
    monitor = {"type": "HTTP", "delay": 1, "timeout": 1, "max_retries": 1, "max_retries_down": 2}
    pool = created(
        c.post(base + "/pools", json={"name": "web", "protocol": "HTTP", "healthmonitor": monitor})
    )
    wait_active(c, lb["id"])
    changes = Changes(c, lb["id"], pool["id"], {})
    for name in ("m1", "m2", "m3"):
        changes.add(name)
        wait_active(c, lb["id"])
    created(
        c.post(
            base + "/listeners", json={"protocol": "HTTP", "protocol_port": 80, "default_pool_id": pool["id"]}
        )
    )
    return wait_active(c, lb["id"]), changes


def task_seconds(c: Any, task_id: str) -> float:
    """How long the change's ``loadbalancer.apply`` task took (created -> finished)."""
    task = c.get(f"/v1/tasks/{task_id}").json()
    start, end = (datetime.fromisoformat(task[k]) for k in ("created_at", "finished_at"))
    return (end - start).total_seconds()


def run_changes(c: Any, changes: Changes, count: int) -> tuple[list[tuple[str, float]], list[float]]:
    """The changes' times from the API call to ACTIVE (by kind), and their tasks' durations."""
    timed: list[tuple[str, float]] = []
    tasks: list[float] = []
    while len(timed) < count:
        for kind, change in changes.cycle():
            if len(timed) == count:
                break
            t0 = time.monotonic()
            change()
            lb = wait_active(c, changes.lb_id)
            timed.append((kind, time.monotonic() - t0))
            tasks.append(task_seconds(c, lb["task_id"]))
    if "m4" in changes.ids:  # a count that is not a whole number of cycles: leave the pool as it began
        changes.remove("m4")
        wait_active(c, changes.lb_id)
    return timed, tasks


def report(
    timed: list[tuple[str, float]], tasks: list[float], client: dict[str, Any], reloads: int | None
) -> None:
    times = [t for _, t in timed]
    print(
        f"{len(timed)} changes, API call -> ACTIVE: p50 {pct(times, 0.5) * 1000:.0f} ms  "
        f"p95 {pct(times, 0.95) * 1000:.0f} ms  max {max(times) * 1000:.0f} ms  "
        f"mean {statistics.mean(times) * 1000:.0f} ms"
    )
    print(
        f"  of which the loadbalancer.apply task (created -> finished): p50 {pct(tasks, 0.5) * 1000:.0f} ms  "
        f"p95 {pct(tasks, 0.95) * 1000:.0f} ms"
    )
    by_kind: dict[str, list[float]] = {}
    for kind, t in timed:
        by_kind.setdefault(kind, []).append(t)
    for kind, ts in by_kind.items():
        print(f"  {kind:<11} n={len(ts):<3} p50 {pct(ts, 0.5) * 1000:6.0f} ms  max {max(ts) * 1000:6.0f} ms")
    print(
        f"HAProxy master reloads during the changes: {reloads} of {len(timed)} changes "
        "(weight, drain and admin state go through the runtime API; adds and removes reload)"
    )
    total_failed = 0
    for kind, r in client.items():
        failed = len(r["failures"])
        total_failed += failed
        print(
            f"client {kind:<15} ok {r['ok']:>6}  failed {failed:>4}  slower than 1 s {r['slow']:>3}  "
            f"worst {r['worst_s'] * 1000:.0f} ms  served by {dict(sorted(r['served'].items()))}"
        )
        reasons = Counter(reason.split("(")[0] for _, reason in r["failures"])
        for reason, n in reasons.most_common():
            print(f"    {n} x {reason}")
    print(f"FAILED REQUESTS: {total_failed} (goal 0)")


def stop_server(srv: Server) -> None:
    """The node, every HAProxy it started (by pid file), its network datapath and files."""
    srv.stop()
    for pidfile in (srv.state_dir / "run" / "lb").glob("*/haproxy.pid"):
        text = pidfile.read_text().split()
        if text and text[0].isdigit() and b"haproxy" in Path(f"/proc/{text[0]}/cmdline").read_bytes():
            subprocess.run(["kill", text[0]], check=False)
    release_host_network(srv)
    shutil.rmtree(srv.state_dir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--rate", type=float, default=100.0, help="requests/s of each client loop (bounded)")
    args = ap.parse_args()
    if not shutil.which("haproxy"):
        raise SystemExit("needs haproxy (scripts/setup.sh installs it)")
    workdir = Path(tempfile.mkdtemp(prefix="nclbc"))
    srv = make_server()
    srv.start(timeout_s=90)
    tenant: Tenant | None = None
    try:
        with srv.client() as c:
            project = default_project(c)
            tenant = Tenant(c, project, CIDR)
            print(f"# {machine()}; {load()}")
            lb, changes = build(c, tenant, project, workdir)
            client_ns = tenant.plug(CLIENT_IP)
            stop = workdir / "stop"
            argv = [
                "ip",
                "netns",
                "exec",
                client_ns,
                sys.executable,
                "-c",
                CLIENT,
                lb["vip_address"],
                str(stop),
                str(1.0 / args.rate),
            ]
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
            time.sleep(3)  # the client's first requests before the first change
            reloads_before = master_reloads(srv.state_dir, lb["id"])
            t0 = time.monotonic()
            timed, tasks = run_changes(c, changes, args.changes)
            took = time.monotonic() - t0
            reloads_after = master_reloads(srv.state_dir, lb["id"])
            time.sleep(3)  # requests after the last change (old workers finishing)
            stop.touch()
            out, _ = proc.communicate(timeout=60)
            print(f"# {args.changes} changes in {took:.1f} s; client {args.rate:g} req/s per loop; {load()}")
            reloads = (
                None if reloads_before is None or reloads_after is None else reloads_after - reloads_before
            )
            report(timed, tasks, json.loads(out), reloads)
    finally:
        if tenant is not None:
            tenant.cleanup()
        stop_server(srv)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Scale-out latency: from a scaling decision to the new member serving traffic through the LB.

Platform: a real ``novacron-server`` (QEMU driver, TCG on this machine) with its metrics store and
embedded agent; a tenant network, a load balancer (HTTP listener, a pool checked by HAProxy every
second) and a scaling group of test guests (flavor tiny) serving their hostname with busybox
httpd from their user-data. A client in a namespace of this benchmark on the tenant network (the
address of an unbound port, as the LB benchmarks do) asks the VIP about 20 times a second for the
whole run and logs which member answered.

Each repetition raises the group by one VM (``PATCH desired``: the same ``groups.scale_to`` a
policy's decision goes through, so the activity it records is the decision) and measures from the
activity's ``started_at`` to:

- ``created``: the new VM's ``created_at`` (the task's ``launch`` step made it);
- ``running``: the VM's state ``running`` (polled every 0.1 s);
- ``online``: its pool member ``ONLINE`` (HAProxy's checks, carried by the agent's report; polled);
- ``first response``: the client's first answer from the new member (its hostname) through the VIP.

The group only grows during the runs (1 → N + 1 members) and goes back to 0 at the end: a scale-in
between runs would free an address the next VM may be given at once, and a first version of this
benchmark saw such a VM not answer ARP for two minutes (until the group replaced it), a network
matter this benchmark is not about. There is no peer on this machine for this (no other cloud's
autoscaler runs here); the figures are the platform's own.

Run: .venv/bin/python bench/bench_autoscale_scaleout.py [--runs N]
"""

from __future__ import annotations

import argparse
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from common import GUEST_OUT, Guest, default_project, import_guest_image, load, machine, running_server
from lbplatform import Tenant, created, wait_active

CIDR, CLIENT_IP = "10.81.0.0/24", "10.81.0.250"
USER_DATA = "#!/bin/sh\nmkdir -p /tmp/www && hostname > /tmp/www/index.html && httpd -p 80 -h /tmp/www\n"
TIMEOUT_S = 300.0
POLL_S = 0.1
#: the client: requests to the VIP at RPS a second (a new connection each) until the stop file
#: exists or MAX_S passed; a line "epoch body-or-ERR" per answer
CLIENT = """
import os, sys, time, urllib.request
vip, out, stop, rps, max_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
end, log = time.time() + max_s, open(out, "a", buffering=1)
while time.time() < end and not os.path.exists(stop):
    t = time.time()
    try:
        with urllib.request.urlopen("http://" + vip + "/", timeout=3) as r:
            body = r.read().decode().strip()
    except Exception as e:
        body = "ERR " + type(e).__name__
    log.write(f"{t:.3f} {body}\\n")
    time.sleep(max(0.0, 1 / rps - (time.time() - t)))
"""
PHASES = ("created", "running", "online", "first response")


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _until(what: str, check: Any) -> float:
    """Poll ``check`` until truthy; the wall time it first was."""
    deadline = time.monotonic() + TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what}")
        time.sleep(POLL_S)
    return time.time()


def _setup(c: httpx.Client, tenant: Tenant) -> tuple[str, str, str]:
    """The load balancer and its checked HTTP pool on the tenant network: (lb id, vip, pool id)."""
    rules = [{"direction": "ingress", "protocol": "tcp", "port_min": 80, "port_max": 80, "remote_cidr": CIDR}]
    created(c.post("/v1/security-groups", json={"name": "web", "project_id": tenant.project, "rules": rules}))
    lb = created(
        c.post("/v1/loadbalancers", json={"name": "front", "vip_subnet_id": tenant.subnet_id,
                                          "project_id": tenant.project})
    )  # fmt: skip
    wait_active(c, lb["id"])
    monitor = {"type": "HTTP", "delay": 1, "timeout": 1, "max_retries": 1, "max_retries_down": 2}
    pool = created(
        c.post(f"/v1/loadbalancers/{lb['id']}/pools", json={"name": "app", "protocol": "HTTP",
                                                           "healthmonitor": monitor})
    )  # fmt: skip
    wait_active(c, lb["id"])
    listener = {"protocol": "HTTP", "protocol_port": 80, "default_pool_id": pool["id"]}
    created(c.post(f"/v1/loadbalancers/{lb['id']}/listeners", json=listener))
    wait_active(c, lb["id"])
    return str(lb["id"]), str(lb["vip_address"]), str(pool["id"])


def _pool_status(c: httpx.Client, lb_id: str, pool_id: str, vm_id: str) -> str | None:
    items = c.get(f"/v1/loadbalancers/{lb_id}/pools/{pool_id}/members").json()["items"]
    return next((m["operating_status"] for m in items if m["vm_id"] == vm_id), None)


def _first_answer(log: Path, name: str, since: float) -> float | None:
    for line in log.read_text().splitlines() if log.exists() else []:
        t, body = line.split(" ", 1)
        if float(t) >= since and body == name:
            return float(t)
    return None


def _scale(c: httpx.Client, desired: int) -> dict[str, Any]:
    r = c.patch("/v1/scaling-groups/web", json={"desired": desired, "reason": "bench"})
    if r.status_code != 200:
        raise RuntimeError(r.text)
    return dict(c.get("/v1/scaling-groups/web/activities").json()["items"][0])


def _new_members(c: httpx.Client, before: set[str]) -> set[str]:
    return {m["vm_id"] for m in c.get("/v1/scaling-groups/web/members").json()} - before


def one_run(c: httpx.Client, lb_id: str, pool_id: str, log: Path) -> dict[str, float]:
    """One scale-out by one VM: each phase's seconds from the decision."""
    before = _new_members(c, set())
    activity = _scale(c, len(before) + 1)
    t0 = _epoch(activity["started_at"])
    _until("the new VM", lambda: _new_members(c, before))
    [vm_id] = _new_members(c, before)
    vm = c.get(f"/v1/vms/{vm_id}").json()
    marks = {"created": _epoch(vm["created_at"])}
    marks["running"] = _until("running", lambda: c.get(f"/v1/vms/{vm_id}").json()["state"] == "running")
    marks["online"] = _until("ONLINE", lambda: _pool_status(c, lb_id, pool_id, vm_id) == "ONLINE")
    name = str(vm["name"])
    _until("its first answer", lambda: _first_answer(log, name, t0) is not None)
    answered = _first_answer(log, name, t0)
    assert answered is not None
    marks["first response"] = answered
    group = "/v1/scaling-groups/web"
    _until("the scale task to end", lambda: c.get(group).json()["members"].get("launching", 0) == 0)
    return {k: v - t0 for k, v in marks.items()}


def _group(c: httpx.Client, tenant: Tenant, pool_id: str, runs: int, log: Path) -> None:
    """The group of 1 test guest in the pool (growing to ``runs`` + 1), once it answers."""
    body = {
        "name": "web", "image": "test-guest", "flavor": "tiny", "min_size": 0, "max_size": runs + 1,
        "desired": 1, "termination_policy": "newest", "user_data": USER_DATA,
        "networks": [{"network": tenant.network_id, "security_groups": ["web"]}],
        "lb_pools": [{"pool_id": pool_id, "protocol_port": 80}], "project_id": tenant.project,
    }  # fmt: skip
    key = {"Idempotency-Key": secrets.token_hex(8)}
    created(c.post("/v1/scaling-groups", json=body, headers=key))
    members = "/v1/scaling-groups/web/members"
    _until("the first member", lambda: [m["state"] for m in c.get(members).json()] == ["in_service"])
    [first] = c.get(members).json()
    name = c.get(f"/v1/vms/{first['vm_id']}").json()["name"]
    _until("its first answer", lambda: _first_answer(log, name, 0) is not None)


def _report(runs: list[dict[str, float]], log: Path) -> None:
    for phase in PHASES:
        values = [r[phase] for r in runs]
        med, top = statistics.median(values), max(values)
        print(f"{phase:>15}: p50 {med:6.1f} s  max {top:6.1f} s  n={len(values)}")
    lines = log.read_text().splitlines()
    failed = sum(1 for line in lines if " ERR " in line)
    print(f"client: {len(lines)} requests to the VIP during the runs, {failed} failed")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    # ended by a timeout's SIGTERM: still stop the node, its guests and the namespaces
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"# {machine()}; {load()}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="asgbench"))
    with running_server() as srv, srv.client() as c:
        cmdline = (GUEST_OUT / "cmdline").read_text().strip()
        guest = Guest(GUEST_OUT / "vmlinux", GUEST_OUT / "initrd.img", GUEST_OUT / "disk.qcow2", cmdline)
        import_guest_image(c, guest)
        tenant = Tenant(c, default_project(c), CIDR)
        proc: subprocess.Popen[bytes] | None = None
        try:
            tenant.create("asgbench")
            lb_id, vip, pool_id = _setup(c, tenant)
            ns = tenant.plug(CLIENT_IP)
            log, stop = workdir / "client.log", workdir / "client.stop"
            argv = [vip, str(log), str(stop), "20", str(TIMEOUT_S * (args.runs + 2))]
            proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, *argv])
            _group(c, tenant, pool_id, args.runs, log)
            log.write_text("")  # the failures counted are those of the runs
            runs = []
            for i in range(args.runs):
                run = one_run(c, lb_id, pool_id, log)
                runs.append(run)
                print(f"run {i + 1}: " + "  ".join(f"{k} {v:6.1f} s" for k, v in run.items()), flush=True)
            stop.touch()
            _report(runs, log)
            c.patch("/v1/scaling-groups/web", json={"desired": 0, "reason": "bench done"})
            _until("the group to empty", lambda: not c.get("/v1/scaling-groups/web/members").json())
        finally:
            if proc is not None:
                proc.kill()
                proc.wait()
            tenant.cleanup()


if __name__ == "__main__":
    main()

"""Helpers of the load-balancer benchmarks that go through the platform: a real node's API, a
tenant network, namespaces on its bridge (members serving HTTP, a client), waiting for ACTIVE.

The namespaces hold the addresses of unbound ports (``port_security`` off), as
tests/integration/test_lb_api.py does, so IPAM never hands them out. Every namespace and process
made here is recorded and removed by :meth:`Tenant.cleanup` (by its own name and pid).
"""

from __future__ import annotations

import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from novacron.network.linux import names

#: an HTTP member costing almost nothing: HAProxy answering from memory with its own name
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


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {res.stderr.strip()}")
    return res


def wait_active(
    c: httpx.Client, lb_id: str, timeout_s: float = 300.0, poll_s: float = 0.05
) -> dict[str, Any]:
    """The load balancer once its change is realised (polled every ``poll_s``); raises on ERROR
    or a failed task, with the task's words."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lb = c.get(f"/v1/loadbalancers/{lb_id}").json()
        if lb["provisioning_status"] == "ACTIVE":
            return dict(lb)
        if lb["provisioning_status"] == "ERROR":
            task = c.get(f"/v1/tasks/{lb['task_id']}").json() if lb["task_id"] else {}
            raise RuntimeError(f"{lb}: {task}")
        time.sleep(poll_s)
    raise RuntimeError(f"load balancer {lb_id} not ACTIVE after {timeout_s}s")


def created(r: httpx.Response) -> dict[str, Any]:
    if r.status_code != 201:
        raise RuntimeError(f"{r.request.method} {r.request.url}: {r.status_code} {r.text}")
    return dict(r.json())


@dataclass
class Tenant:
    """A tenant network with one subnet on a real node, and namespaces of this benchmark on its
    bridge."""

    client: httpx.Client
    project: str
    cidr: str
    network_id: str = ""
    subnet_id: str = ""
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def create(self, name: str = "lbbench") -> None:
        net = created(self.client.post("/v1/networks", json={"name": name, "project_id": self.project}))
        self.network_id = net["id"]
        sub = created(
            self.client.post(
                "/v1/subnets", json={"network": self.network_id, "name": name, "cidr": self.cidr}
            )
        )
        self.subnet_id = sub["id"]

    def plug(self, ip: str) -> str:
        """A namespace on the network's bridge holding ``ip`` (an unbound port reserves it)."""
        port = created(
            self.client.post(
                "/v1/ports",
                json={
                    "network": self.network_id,
                    "project_id": self.project,
                    "fixed_ips": [{"ip": ip}],
                    "port_security": False,
                },
            )
        )
        ns = "nclbb" + secrets.token_hex(3)
        outer = "nct" + ns[-6:]
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", outer, "master", names.bridge(self.network_id), "up")
        sh("ip", "-n", ns, "link", "set", "eth0", "address", port["mac"], "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        prefix = self.cidr.split("/")[1]
        sh("ip", "-n", ns, "addr", "add", f"{ip}/{prefix}", "dev", "eth0")
        return ns

    def member(self, ip: str, port: int, name: str, workdir: Path) -> str:
        """An HTTP member on ``ip:port`` answering its ``name`` (HAProxy, foreground)."""
        ns = self.plug(ip)
        cfg = workdir / f"member-{name}.cfg"
        cfg.write_text(MEMBER_CFG.format(port=port, name=name))
        argv = ["ip", "netns", "exec", ns, "haproxy", "-f", str(cfg)]
        self.procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return ns

    def cleanup(self) -> None:
        for proc in self.procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ns in self.namespaces:
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                sh("kill", "-9", pid, check=False)
            sh("ip", "netns", "del", ns, check=False)


def master_reloads(state_dir: Path, lb_id: str) -> int | None:
    """How many times the load balancer's HAProxy master has reloaded (``show proc``), read on
    its master socket under the node's run directory; None when it does not answer."""
    import socket

    sock_path = state_dir / "run" / "lb" / names.h(lb_id) / "master.sock"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(3)
            sock.connect(str(sock_path))
            sock.sendall(b"show proc\n")
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError:
        return None
    for line in answer.decode().splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == "master" and fields[2].isdigit():
            return int(fields[2])
    return None

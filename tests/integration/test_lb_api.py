"""A load balancer made through the API on a real node serves a member, and goes away whole.

The all-in-one node's embedded agent builds the leg (a namespace on the tenant network's bridge)
from the network sync and runs HAProxy there on ``lb_apply``. The member is a namespace of this
test on the same bridge, holding the address of an unbound port (so IPAM never hands it out),
serving HTTP with Python; a client in that namespace asks the VIP.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from novacron.network.linux import names
from tests.conftest import Server, default_project, require

CIDR, MEMBER_IP = "10.79.0.0/24", "10.79.0.200"
#: the external network of the floating-IP test: this test's "internet" namespace is its gateway
PUBLIC, INTERNET_IP = "198.51.100.0/24", "198.51.100.1"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {res.stderr.strip()}")
    return res


def wait_active(c: httpx.Client, lb_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """The load balancer once its change is realised; fails at once on ERROR (with the task's words)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lb = c.get(f"/v1/loadbalancers/{lb_id}").json()
        if lb["provisioning_status"] == "ACTIVE":
            return dict(lb)
        task = c.get(f"/v1/tasks/{lb['task_id']}").json() if lb["task_id"] else {}
        if lb["provisioning_status"] == "ERROR" or task.get("state") == "failed":
            raise AssertionError(f"{lb}: {task}")
        time.sleep(0.2)
    raise AssertionError(f"load balancer {lb_id} not ACTIVE after {timeout_s}s")


@pytest.fixture
def member_ns() -> Iterator[str]:
    """A namespace name for the member, removed (with its server) after the test."""
    ns = "nclbt" + secrets.token_hex(3)
    yield ns
    for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
        sh("kill", "-9", pid, check=False)
    sh("ip", "netns", "del", ns, check=False)


def plug_member(ns: str, network_id: str, mac: str) -> subprocess.Popen[bytes]:
    """The member: a namespace on the network's bridge with ``MEMBER_IP``, serving HTTP on 8080."""
    outer = "nct" + ns[-6:]
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
    sh("ip", "link", "set", outer, "master", names.bridge(network_id), "up")
    sh("ip", "-n", ns, "link", "set", "eth0", "address", mac, "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", ns, "addr", "add", f"{MEMBER_IP}/24", "dev", "eth0")
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", "8080", "--bind", MEMBER_IP],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def ask_vip(ns: str, vip: str, timeout_s: float = 30.0) -> str:
    """The VIP's answer to a client in ``ns`` (retried while HAProxy's first check runs)."""
    code = f"import urllib.request;print(urllib.request.urlopen('http://{vip}/', timeout=3).status)"
    deadline = time.monotonic() + timeout_s
    res = None
    while time.monotonic() < deadline:
        res = sh("ip", "netns", "exec", ns, sys.executable, "-c", code, check=False)
        if res.returncode == 0:
            return res.stdout.strip()
        time.sleep(0.3)
    raise AssertionError(f"the VIP {vip} did not answer: {res.stderr if res else ''}")


def tenant_network(c: httpx.Client, project: str) -> tuple[str, httpx.Response, httpx.Response]:
    """A tenant network with its subnet, and an unbound port holding the member's address (so
    IPAM never hands it out): (network id, subnet answer, port answer)."""
    net = c.post("/v1/networks", json={"name": "lbnet", "project_id": project})
    assert net.status_code == 201, net.text
    network_id = net.json()["id"]
    sub = c.post("/v1/subnets", json={"network": network_id, "name": "lbsub", "cidr": CIDR})
    assert sub.status_code == 201, sub.text
    body = {
        "network": network_id,
        "project_id": project,
        "fixed_ips": [{"ip": MEMBER_IP}],
        "port_security": False,
    }
    port = c.post("/v1/ports", json=body)
    assert port.status_code == 201, port.text
    return network_id, sub, port


def test_a_load_balancer_made_through_the_api_serves_its_member(server: Server, member_ns: str) -> None:
    require(shutil.which("haproxy") is not None, "haproxy is not installed")
    with server.client() as c:
        project = default_project(c)
        network_id, sub, port = tenant_network(c, project)
        r = c.post(
            "/v1/loadbalancers",
            json={"name": "web", "vip_subnet_id": sub.json()["id"], "project_id": project},
        )
        assert r.status_code == 201, r.text
        lb = wait_active(c, r.json()["id"])
        server_proc = plug_member(member_ns, network_id, port.json()["mac"])
        try:
            base = f"/v1/loadbalancers/{lb['id']}"
            monitor = {"type": "HTTP", "delay": 1, "timeout": 1, "max_retries": 1, "max_retries_down": 2}
            pool = c.post(base + "/pools", json={"name": "web", "protocol": "HTTP", "healthmonitor": monitor})
            assert pool.status_code == 201, pool.text
            wait_active(c, lb["id"])
            member = {"address": MEMBER_IP, "protocol_port": 8080}
            assert c.post(f"{base}/pools/{pool.json()['id']}/members", json=member).status_code == 201
            wait_active(c, lb["id"])
            listener = {"protocol": "HTTP", "protocol_port": 80, "default_pool_id": pool.json()["id"]}
            assert c.post(base + "/listeners", json=listener).status_code == 201
            wait_active(c, lb["id"])
            assert ask_vip(member_ns, lb["vip_address"]) == "200"
            # the agent's reports carry the member's health: ONLINE, and the load balancer with it
            members = f"{base}/pools/{pool.json()['id']}/members"
            deadline = time.monotonic() + 30
            while c.get(members).json()["items"][0]["operating_status"] != "ONLINE":
                assert time.monotonic() < deadline, c.get(members).json()
                time.sleep(0.3)
            assert c.get(base).json()["operating_status"] == "ONLINE"
            # the statistics reach the monitoring store, owned as the database says
            query = {"query": f'novacron_lb_listener_requests_total{{loadbalancer_id="{lb["id"]}"}}'}
            deadline = time.monotonic() + 60
            # (a report sampled before the request counted it may land first: wait for the count)
            while not (
                (found := c.get("/v1/metrics/query", params=query).json()["data"]["result"])
                and float(found[0]["value"][1]) >= 1
            ):
                assert time.monotonic() < deadline, (
                    f"no counted load-balancer statistics in the store: {found}"
                )
                time.sleep(0.5)
            assert found[0]["metric"]["tenant_id"] == lb["tenant_id"]
            # the member stops: its health check fails, the next reports say so
            server_proc.kill()
            deadline = time.monotonic() + 30
            while c.get(members).json()["items"][0]["operating_status"] != "OFFLINE":
                assert time.monotonic() < deadline, c.get(members).json()
                time.sleep(0.3)
            assert c.get(base).json()["operating_status"] == "DEGRADED"
            events = c.get("/v1/events", params={"types": "loadbalancer.member.*", "tail": "true"}).json()[
                "items"
            ]
            assert ("loadbalancer.member.down", lb["id"]) in [(e["type"], e["resource_id"]) for e in events]
            assert c.delete(base).status_code == 204
            deadline = time.monotonic() + 60
            while c.get(base).status_code != 404:
                assert time.monotonic() < deadline, c.get(base).json()
                time.sleep(0.2)
            assert c.get(f"/v1/ports/{lb['vip_port_id']}").status_code == 404
        finally:
            server_proc.kill()


@pytest.fixture
def internet_ns() -> Iterator[tuple[str, str]]:
    """The "internet": a namespace holding ``INTERNET_IP`` behind a veth whose outer end (returned
    with the namespace's name) is the external network's physical interface on this node."""
    ns = "nclbi" + secrets.token_hex(3)
    outer = "upl" + ns[-6:]  # not "nc": the backend removes its own links by that prefix
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
    sh("ip", "link", "set", outer, "up")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", ns, "addr", "add", f"{INTERNET_IP}/24", "dev", "eth0")
    yield ns, outer
    sh("ip", "netns", "del", ns, check=False)


def test_the_internet_reaches_a_member_through_the_floating_ip_of_a_vip(
    server: Server, member_ns: str, internet_ns: tuple[str, str]
) -> None:
    """floating IP → the tenant's router (DNAT) → VIP → HAProxy → member, on the real datapath."""
    require(shutil.which("haproxy") is not None, "haproxy is not installed")
    internet, physical = internet_ns
    with server.client() as c:
        project = default_project(c)
        [host] = c.get("/v1/hosts").json()["items"]
        r = c.patch(f"/v1/hosts/{host['id']}", json={"traits": [*host["traits"], "network-node"]})
        assert r.status_code == 200, r.text
        public = {"name": "public", "external": True, "physical_interface": physical, "project_id": project}
        r = c.post("/v1/networks", json=public)
        assert r.status_code == 201, r.text
        body = {
            "network": "public",
            "name": "public-v4",
            "cidr": PUBLIC,
            "gateway_ip": INTERNET_IP,
            "dhcp": False,
        }
        assert c.post("/v1/subnets", json=body).status_code == 201
        network_id, sub, port = tenant_network(c, project)
        router = c.post(
            "/v1/routers", json={"name": "edge", "project_id": project, "external_network": "public"}
        )
        assert router.status_code == 201, router.text
        r = c.post(f"/v1/routers/{router.json()['id']}/interfaces", json={"subnet": sub.json()["id"]})
        assert r.status_code == 200, r.text
        body = {
            "name": "web",
            "vip_subnet_id": sub.json()["id"],
            "project_id": project,
            "floating_network_id": "public",
        }
        r = c.post("/v1/loadbalancers", json=body)
        assert r.status_code == 201, r.text
        floating_ip = r.json()["floating_ip"]
        assert floating_ip is not None and floating_ip.startswith("198.51.100.")
        lb = wait_active(c, r.json()["id"])
        server_proc = plug_member(member_ns, network_id, port.json()["mac"])
        try:
            base = f"/v1/loadbalancers/{lb['id']}"
            pool = c.post(base + "/pools", json={"name": "web", "protocol": "HTTP"})
            assert pool.status_code == 201, pool.text
            wait_active(c, lb["id"])
            member = {"address": MEMBER_IP, "protocol_port": 8080}
            assert c.post(f"{base}/pools/{pool.json()['id']}/members", json=member).status_code == 201
            wait_active(c, lb["id"])
            listener = {"protocol": "HTTP", "protocol_port": 80, "default_pool_id": pool.json()["id"]}
            assert c.post(base + "/listeners", json=listener).status_code == 201
            wait_active(c, lb["id"])
            assert ask_vip(internet, floating_ip) == "200"
            # deleted, the load balancer leaves its floating IP unassociated (the tenant's until released)
            assert c.delete(base).status_code == 204
            deadline = time.monotonic() + 60
            while c.get(base).status_code != 404:
                assert time.monotonic() < deadline, c.get(base).json()
                time.sleep(0.2)
            [fip] = c.get("/v1/floating-ips").json()["items"]
            assert (fip["ip"], fip["port_id"], fip["router_id"]) == (floating_ip, None, None)
        finally:
            server_proc.kill()

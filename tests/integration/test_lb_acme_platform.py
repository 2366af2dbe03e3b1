"""An ACME certificate ordered through the API, proved by the tenant's own load balancer, served.

A real node (its embedded agent runs the load balancer's HAProxy in a namespace on the tenant
network) and Let's Encrypt's test server pebble in a namespace of this test on the same network
(pebble's DNS answers every name with the VIP). The order is a task: the platform is the ACME
client, the agent puts each HTTP-01 answer on the load balancer (``lb_challenge``), pebble fetches
it through the VIP, and the issued certificate then serves a TERMINATED_HTTPS listener, verified
by a client against pebble's issuing root.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import default_project, destroy_server, make_server, require, short_tmpdir
from tests.integration.pebblelab import Pebble, have_pebble
from tests.integration.test_lb_api import MEMBER_IP, ask_vip, plug_member, sh, tenant_network, wait_active

#: the loopback address pebble's directory is reached at (opened by NOVACRON_EGRESS_ALLOW)
DIRECTORY_ADDRESS = "127.0.0.3"
NAME = "shop.example.com"

HTTPS_CLIENT = """
import socket, ssl, sys
vip, name, cafile = sys.argv[1], sys.argv[2], sys.argv[3]
context = ssl.create_default_context(cafile=cafile)
with socket.create_connection((vip, 443), 5) as raw, context.wrap_socket(raw, server_hostname=name) as tls:
    tls.sendall(f"GET / HTTP/1.0\\r\\nHost: {name}\\r\\n\\r\\n".encode())
    status = tls.recv(64).split()[1].decode()
    print(status, tls.getpeercert()["serialNumber"])
"""


@dataclass
class TenantSite:
    """pebble's place: the test's namespace on the tenant network, which reaches the VIP."""

    workdir: Path
    client: str
    vip: str


@pytest.fixture
def client_ns() -> Iterator[str]:
    ns = "nclba" + short_tmpdir("ncns").name[-5:]
    yield ns
    for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
        sh("kill", "-9", pid, check=False)
    sh("ip", "netns", "del", ns, check=False)


def wait_certificate(c: httpx.Client, cert_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cert = dict(c.get(f"/v1/certificates/{cert_id}").json())
        if cert["status"] == "ACTIVE":
            return cert
        assert cert["status"] != "ERROR", cert
        time.sleep(0.3)
    raise AssertionError(f"certificate {cert_id} not issued after {timeout_s}s")


def make_load_balancer(c: httpx.Client, project: str) -> tuple[dict[str, Any], str, str]:
    """A load balancer whose HTTP listener (port 80) sends to the member: (it, network id, member MAC)."""
    network_id, subnet, member_port = tenant_network(c, project)
    sub, port = subnet.json(), member_port.json()
    r = c.post("/v1/loadbalancers", json={"name": "shop", "vip_subnet_id": sub["id"], "project_id": project})
    assert r.status_code == 201, r.text
    lb = wait_active(c, r.json()["id"])
    base = f"/v1/loadbalancers/{lb['id']}"
    pool = c.post(base + "/pools", json={"name": "web", "protocol": "HTTP"}).json()
    wait_active(c, lb["id"])
    assert (
        c.post(
            f"{base}/pools/{pool['id']}/members", json={"address": MEMBER_IP, "protocol_port": 8080}
        ).status_code
        == 201
    )
    wait_active(c, lb["id"])
    listener = {"protocol": "HTTP", "protocol_port": 80, "default_pool_id": pool["id"]}
    assert c.post(base + "/listeners", json=listener).status_code == 201
    return {**wait_active(c, lb["id"]), "pool_id": pool["id"]}, network_id, port["mac"]


def test_an_acme_certificate_ordered_through_the_api_is_proved_by_the_load_balancer_and_served(
    client_ns: str,
) -> None:
    require(shutil.which("haproxy") is not None, "haproxy is not installed")
    require(have_pebble(), "needs pebble and pebble-challtestsrv (scripts/setup.sh installs pebble)")
    workdir = short_tmpdir("ncacp")
    srv = make_server(
        NOVACRON_EGRESS_ALLOW=f"{DIRECTORY_ADDRESS}/32",
        NOVACRON_ACME_CA_BUNDLE=str(workdir / "pebble" / "tls-ca.pem"),
    )
    srv.start()
    pebble: Pebble | None = None
    try:
        with srv.client() as c:
            project = default_project(c)
            lb, network_id, mac = make_load_balancer(c, project)
            member = plug_member(client_ns, network_id, mac)
            assert ask_vip(client_ns, lb["vip_address"]) == "200"
            pebble = Pebble(TenantSite(workdir, client_ns, lb["vip_address"]), address=DIRECTORY_ADDRESS)
            pebble.start()

            order = {"names": [NAME], "loadbalancer_id": lb["id"], "directory_url": pebble.directory_url}
            r = c.post("/v1/certificates", json={"name": "shop", "project_id": project, "acme": order})
            assert r.status_code == 201, r.text
            cert = wait_certificate(c, r.json()["id"])
            assert cert["names"] == [NAME] and cert["source"] == "acme"
            assert "private_key" not in cert

            base = f"/v1/loadbalancers/{lb['id']}"
            https = {
                "protocol": "TERMINATED_HTTPS",
                "protocol_port": 443,
                "default_pool_id": lb["pool_id"],
                "default_tls_container_ref": cert["id"],
            }
            assert c.post(base + "/listeners", json=https).status_code == 201
            wait_active(c, lb["id"])
            root = workdir / "pebble-root.pem"
            root.write_text(pebble.issuing_root())
            out = sh(
                "ip",
                "netns",
                "exec",
                client_ns,
                sys.executable,
                "-c",
                HTTPS_CLIENT,
                lb["vip_address"],
                NAME,
                str(root),
            )
            status, serial = out.stdout.split()
            assert status == "200"
            assert int(serial, 16) == int(cert["serial"], 16)
            member.kill()
            assert c.delete(base).status_code == 204
            deadline = time.monotonic() + 60
            while c.get(base).status_code != 404:
                assert time.monotonic() < deadline, c.get(base).json()
                time.sleep(0.2)
    finally:
        if pebble is not None:
            pebble.stop()
        destroy_server(srv)

"""An all-in-one server's embedded agent builds tenant networks in the root namespace; destroying
the test server removes them, and nothing of another host sharing the kernel."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

from novacron.network.linux import names
from tests.conftest import (
    Guest,
    default_project,
    destroy_server,
    import_guest_image,
    make_server,
    require,
    wait_task,
)


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines()}


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {ln.split()[0] for ln in out.splitlines() if ln.strip()}


def test_destroying_an_all_in_one_server_removes_its_networks_only(guest: Guest) -> None:
    require(os.geteuid() == 0, "bridges and namespaces need root")
    require(shutil.which("dnsmasq") is not None, "dnsmasq is not installed")
    server = make_server()
    # another host's network on the same kernel: not this server's to remove
    decoy = names.bridge(f"net-decoy-{uuid.uuid4().hex}")
    subprocess.run(["ip", "link", "add", decoy, "type", "bridge"], check=True)
    try:
        server.start(60)
        with server.client() as c:
            import_guest_image(c, guest)
            project = default_project(c)
            r = c.post("/v1/networks", json={"name": "aio", "project_id": project})
            assert r.status_code == 201, r.text
            net = r.json()["id"]
            r = c.post(
                "/v1/subnets",
                json={
                    "network": net,
                    "name": "aio-v4",
                    "cidr": "10.41.0.0/24",
                    "allocation_pools": [{"start": "10.41.0.10", "end": "10.41.0.100"}],
                },
            )
            assert r.status_code == 201, r.text
            r = c.post(
                "/v1/vms",
                json={
                    "name": "aio-1",
                    "image": "test-guest",
                    "flavor": "tiny",
                    "networks": [{"network": net}],
                    "project_id": project,
                },
            )
            assert r.status_code == 202, r.text
            assert wait_task(c, r.json()["task_id"], 180)["state"] == "succeeded"
            tap = c.get("/v1/ports", params={"network_id": net}).json()["items"][0]["device"]
        dhcp_ns = names.dhcp_ns(server.env["NOVACRON_HOST_NAME"], net)
        assert {names.bridge(net), tap} <= _links()
        assert dhcp_ns in _namespaces()

        destroy_server(server)
        assert not {names.bridge(net), tap} & _links()
        assert dhcp_ns not in _namespaces()
        assert decoy in _links()
    finally:
        destroy_server(server)
        subprocess.run(["ip", "link", "del", decoy], check=False)

"""Guest information (issue 16), end to end: a real all-in-one server, a tenant network with its
real dnsmasq, and two real guests on it. One runs qemu-guest-agent (started by its user-data, as a
tenant would): its addresses, hostname, OS and filesystems come from the agent. The other has
none: its address is the one the network's DHCP server leased it. Another tenant sees neither;
the CLI and the dashboard show the addresses and where they come from.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    START_QGA,
    TENANT_PASSWORD,
    Guest,
    Server,
    destroy_server,
    import_guest_image,
    make_server,
    require,
    tenant_user,
    wait_task,
)
from tests.e2e.browser import Browser
from tests.e2e.conftest import DESKTOP
from tests.integration.test_cli import Cli

CIDR = "10.47.0.0/24"
#: the tenant starts the agent on its virtio-serial port (udev would name it; the test guest has none)
START_AGENT = "#!/bin/sh\n" + START_QGA + "\necho QGA-STARTED\n"
#: a TCG guest on a busy 2-core machine: boot, DHCP, then the next guest-information round
WAIT_S = 240.0


@dataclass
class Lab:
    server: Server
    alpha: httpx.Client
    beta: httpx.Client
    #: VM name -> (id, the fixed IP of its port)
    vms: dict[str, tuple[str, str]]


def _vm_on(alpha: httpx.Client, project: str, net: str, name: str, user_data: str = "") -> str:
    body = {"name": name, "image": "test-guest", "flavor": "tiny", "user_data": user_data}
    r = alpha.post("/v1/vms", json={**body, "project_id": project, "networks": [{"network": net}]})
    assert r.status_code == 202, r.text
    return str(r.json()["task_id"])


@pytest.fixture(scope="module")
def lab(guest: Guest) -> Iterator[Lab]:
    require(os.geteuid() == 0, "tenant networks need root")
    require(shutil.which("dnsmasq") is not None, "dnsmasq is not installed")
    srv = make_server()
    try:
        srv.start(60)
        with srv.client() as admin:
            import_guest_image(admin, guest)
            alpha, project = tenant_user(admin, srv, "alpha")
            beta, _ = tenant_user(admin, srv, "beta")
        r = alpha.post("/v1/networks", json={"name": "app", "project_id": project})
        assert r.status_code == 201, r.text
        net = r.json()["id"]
        subnet = {"network": net, "name": "app-v4", "cidr": CIDR}
        assert alpha.post("/v1/subnets", json=subnet).status_code == 201
        tasks = {
            "ga": _vm_on(alpha, project, net, "ga", START_AGENT),
            "plain": _vm_on(alpha, project, net, "plain"),
        }
        vms = {}
        for name, task_id in tasks.items():
            done = wait_task(alpha, task_id, 300)
            assert done["state"] == "succeeded", done
            vm_id = done["resource_id"]
            ports = alpha.get("/v1/ports", params={"network_id": net}).json()["items"]
            ip = next(p["fixed_ips"][0]["ip"] for p in ports if p["vm_id"] == vm_id)
            vms[name] = (vm_id, ip)
        yield Lab(srv, alpha, beta, vms)
        alpha.close()
        beta.close()
    finally:
        destroy_server(srv)


def _wait_source(c: httpx.Client, vm_id: str, source: str) -> dict[str, Any]:
    """The VM as soon as its addresses come from ``source`` (bounded)."""
    deadline = time.monotonic() + WAIT_S
    vm: dict[str, Any] = {}
    while time.monotonic() < deadline:
        vm = c.get(f"/v1/vms/{vm_id}").json()
        if vm["ip_source"] == source and vm["ips"]:
            return vm
        time.sleep(1)
    raise AssertionError(f"no addresses from {source} within {WAIT_S}s: {vm}")


def test_the_guest_agent_tells_addresses_hostname_os_and_filesystems(lab: Lab) -> None:
    vm_id, ip = lab.vms["ga"]
    vm = _wait_source(lab.alpha, vm_id, "agent")
    deadline = time.monotonic() + WAIT_S
    while ip not in vm["ips"] and time.monotonic() < deadline:  # the agent may answer before DHCP
        time.sleep(1)
        vm = lab.alpha.get(f"/v1/vms/{vm_id}").json()
    assert vm["ips"] == [ip], vm
    guest = vm["guest"]
    assert guest["agent_at"] is not None
    assert guest["hostname"] == "ga"
    assert guest["os"]["pretty-name"] == "NovaCron test guest (busybox)"
    assert guest["os"]["kernel-release"].endswith("-amd64")
    nic = next(n for n in guest["interfaces"] if n["name"] == "eth0")
    assert nic["ips"][0].startswith(f"{ip}/")
    seed = next(f for f in guest["filesystems"] if f["mountpoint"] == "/mnt/seed")
    assert seed["type"] == "iso9660" and seed["total_bytes"] > 0
    # the list carries the addresses too, in its one query
    rows = {v["name"]: v for v in lab.alpha.get("/v1/vms").json()["items"]}
    assert rows["ga"]["ips"] == [ip] and rows["ga"]["ip_source"] == "agent"
    assert "guest" not in rows["ga"] or rows["ga"]["guest"] is None


def test_a_guest_without_an_agent_shows_the_address_its_nic_leased(lab: Lab) -> None:
    vm_id, ip = lab.vms["plain"]
    vm = _wait_source(lab.alpha, vm_id, "lease")
    assert vm["ips"] == [ip]
    assert vm["guest"]["agent_at"] is None and vm["guest"]["hostname"] == ""
    assert vm["guest"]["lease_ips"] == [ip]


def test_another_tenant_sees_none_of_it(lab: Lab) -> None:
    for vm_id, _ in lab.vms.values():
        assert lab.beta.get(f"/v1/vms/{vm_id}").status_code == 404
    assert lab.beta.get("/v1/vms").json()["items"] == []


def test_cli_lists_and_shows_the_addresses_and_their_source(lab: Lab, tmp_path: Path) -> None:
    _wait_source(lab.alpha, lab.vms["ga"][0], "agent")
    cli = Cli(tmp_path / "credentials.json", lab.server)
    cli.ok("login", "--server", lab.server.url, "--username", "alpha-user@alpha", "--password-stdin",
           stdin=TENANT_PASSWORD + "\n")  # fmt: skip
    listed = cli.ok("vm", "list").out
    for name, (_, ip) in lab.vms.items():
        line = next(ln for ln in listed.splitlines() if f" {name} " in f" {ln} ")
        assert ip in line, listed
    shown = cli.ok("vm", "show", "ga").out
    assert f"{lab.vms['ga'][1]} (source: guest agent)" in shown
    assert "NovaCron test guest (busybox)" in shown and "/mnt/seed (iso9660)" in shown
    assert "(source: DHCP lease)" in cli.ok("vm", "show", "plain").out


def test_dashboard_lists_the_addresses_and_the_vm_page_shows_the_guest(lab: Lab, browser: Any) -> None:
    _wait_source(lab.alpha, lab.vms["ga"][0], "agent")
    _wait_source(lab.alpha, lab.vms["plain"][0], "lease")
    b = Browser(browser, lab.server.url, DESKTOP)
    try:
        b.login("alpha-user", TENANT_PASSWORD, tenant="alpha")
        b.go("/vms")
        for name, (_, ip) in lab.vms.items():
            b.page.wait_for_selector(f"tr:has-text('{name}') [data-testid=vm-ip]:has-text('{ip}')")
        b.go(f"/vms/{lab.vms['ga'][0]}")
        panel = "[data-testid=vm-guest]"
        b.page.wait_for_selector(f"{panel} :text('source: guest agent')")
        text = b.page.inner_text(panel)
        assert "NovaCron test guest (busybox)" in text and "/mnt/seed" in text and lab.vms["ga"][1] in text
        b.go(f"/vms/{lab.vms['plain'][0]}")
        b.page.wait_for_selector(f"{panel} :text('source: DHCP lease')")
        assert b.errors == []
    finally:
        b.close()

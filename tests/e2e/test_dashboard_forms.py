"""The dashboard's catalog and create actions in Chromium (issue 17, item 12): a flavor created and
deleted by the administrator, a security group deleted (and refused while a port uses it), an image
uploaded from a local file with its progress bar and deleted, and a VM created with a network and
a security group. Each outcome is checked in the page and through the API.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.browser import Browser, page_problems
from tests.e2e.conftest import DESKTOP, PASSWORD, PHONE, VIEWS, Cluster

#: records every value the upload bar takes, installed before the form is sent
WATCH_PROGRESS = """() => {
  window.__progress = [];
  const box = document.querySelector('[data-testid=upload-progress]');
  new MutationObserver(() => {
    const bar = box.querySelector('[role=progressbar]');
    if (bar) window.__progress.push(Number(bar.getAttribute('aria-valuenow')));
  }).observe(box, {subtree: true, childList: true, attributes: true});
}"""


def _member(cluster: Cluster, tenant: str) -> httpx.Client:
    client = cluster.server.client(cluster.server.token(cluster.tenants[tenant][0], PASSWORD, tenant))
    client.timeout = httpx.Timeout(60)
    return client


def _delete_row(page: Any, row: str) -> None:
    page.click(f"{row} button:text-is('Delete')")
    page.click("dialog button.danger")


def test_flavor_created_and_deleted_by_the_admin(cluster: Cluster, browser: Any) -> None:
    api = cluster.admin
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login("admin", cluster.server.admin_password)
        b.go("/flavors")
        # the API's own refusal, under the field it names
        page.fill("#fl-name", "web.big")
        page.fill("#fl-vcpus", "99")
        page.click("form[aria-label='New flavor'] button[type=submit]")
        page.wait_for_selector("#fl-vcpus[aria-invalid=true]")
        assert page.inner_text("#fl-vcpus-error") != ""
        assert api.get("/v1/flavors", params={"name": "web.big"}).json()["items"] == []

        page.fill("#fl-vcpus", "2")
        page.fill("#fl-ram", "768")
        page.fill("#fl-disk", "3")
        page.select_option("#fl-machine", "q35")
        page.select_option("#fl-firmware", "uefi")
        page.click("form[aria-label='New flavor'] button[type=submit]")
        row = page.wait_for_selector("tr[data-flavor='web.big']")
        text = row.inner_text()
        assert "768 MiB" in text and "3 GiB" in text and "q35, uefi" in text
        made = api.get("/v1/flavors", params={"name": "web.big"}).json()["items"]
        assert [(f["vcpus"], f["ram_mb"], f["disk_gb"], f["hardware"]) for f in made] == [
            (2, 768, 3, {"machine": "q35", "firmware": "uefi"})
        ]

        _delete_row(page, "tr[data-flavor='web.big']")
        page.wait_for_selector("tr[data-flavor='web.big']", state="detached")
        assert api.get("/v1/flavors", params={"name": "web.big"}).json()["items"] == []
        assert b.errors == []
    finally:
        b.close()


def test_image_uploaded_with_progress_and_deleted(cluster: Cluster, browser: Any, tmp_path: Path) -> None:
    disk = tmp_path / "web-upload.img"
    disk.write_bytes(b"\0" * (24 << 20))  # a raw disk of 24 MiB: the bar has bytes to follow
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        with _member(cluster, "alpha") as api:
            b.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
            b.go("/images")
            page.set_input_files("#img-file", str(disk))
            assert page.input_value("#img-name") == "web-upload"  # the file's name, suggested
            page.evaluate(WATCH_PROGRESS)
            page.click("form[aria-label='Upload an image'] button[type=submit]")
            row = page.wait_for_selector("tr[data-image='web-upload']:has(.badge[data-state=active])")
            assert "24.0 MiB" in row.inner_text()
            seen = page.evaluate("window.__progress")
            assert seen and seen[0] == 0 and max(seen) == 100, seen
            image = api.get("/v1/images", params={"name": "web-upload"}).json()["items"][0]
            assert (image["status"], image["size_bytes"], image["disk_format"]) == ("active", 24 << 20, "raw")

            _delete_row(page, "tr[data-image='web-upload']")
            page.wait_for_selector("tr[data-image='web-upload']", state="detached")
            assert api.get("/v1/images", params={"name": "web-upload"}).json()["items"] == []
        assert b.errors == []
    finally:
        b.close()


def test_vm_created_with_a_network_and_group_then_the_group_deleted(cluster: Cluster, browser: Any) -> None:
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        with _member(cluster, "alpha") as api:
            net = api.post("/v1/networks", json={"name": "form-net"}).json()
            r = api.post("/v1/subnets", json={"network": net["id"], "name": "s", "cidr": "10.31.0.0/24"})
            assert r.status_code == 201, r.text
            group = api.post("/v1/security-groups", json={"name": "form-sg"}).json()
            spare = api.post("/v1/security-groups", json={"name": "spare-sg"}).json()

            b.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
            b.go("/vms/new")
            page.fill("#f-name", "form-vm")
            page.select_option("#f-image", "test-guest")
            page.select_option("#f-flavor", "tiny")
            page.check("#f-networks input[value='{}']".format(net["id"]))
            page.check("#f-security_groups input[value='{}']".format(group["id"]))
            page.click("form button[type=submit]")
            page.wait_for_url(re.compile(r"#/vms/vm-"))  # the form's own URL is #/vms/new
            b.ready()
            vm_id = page.url.rsplit("/", 1)[1]
            ports = api.get("/v1/ports", params={"network_id": net["id"]}).json()["items"]
            assert [(p["vm_id"], p["network_id"]) for p in ports] == [(vm_id, net["id"])]
            assert ports[0]["security_groups"] in ([group["id"]], ["form-sg"])

            # the group a port uses: the API's 409 shown plainly, the group still listed
            b.go("/security-groups")
            _delete_row(page, "tr[data-group='form-sg']")
            alert = page.wait_for_selector("main .alert[role=alert]")
            assert "form-sg" in alert.inner_text() and "used by ports" in alert.inner_text()
            assert page.query_selector("tr[data-group='form-sg']") is not None
            # an unused one goes
            _delete_row(page, "tr[data-group='spare-sg']")
            page.wait_for_selector("tr[data-group='spare-sg']", state="detached")
            assert api.get(f"/v1/security-groups/{spare['id']}").status_code == 404
            assert api.get(f"/v1/security-groups/{group['id']}").status_code == 200
            api.delete(f"/v1/vms/{vm_id}")  # its guest need not boot: the module's server goes next
        assert b.errors == []
    finally:
        b.close()


def test_forms_phone_and_desktop_light_and_dark(cluster: Cluster, browser: Any) -> None:
    problems: list[str] = []
    for size, viewport, scheme in VIEWS:
        b = Browser(browser, cluster.server.url, viewport, scheme)
        try:
            b.login("admin", cluster.server.admin_password)
            for route in ("/flavors", "/images", "/security-groups", "/vms/new"):
                b.go(route)
                problems += page_problems(b, route, f"forms{route.replace('/', '-')}", size, scheme)
            assert b.errors == []
        finally:
            b.close()
    assert problems == [], problems
    assert PHONE in [v for _, v, _ in VIEWS]

"""Templates and clones in a real browser: mark an image as a template, make VMs from it on the
Images page, then clone a running VM from its page (a full copy of one of its snapshots; the dialog
offers a linked clone of it too); real QEMU guests behind."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.conftest import Guest, wait_task
from tests.e2e.browser import Browser, axe_violations
from tests.e2e.conftest import DESKTOP, PASSWORD, Cluster

BOOT_MS = 180_000  # a TCG guest on a busy 2-core machine


def test_template_new_vms_and_clone_in_the_browser(cluster: Cluster, browser: Any, guest: Guest) -> None:
    username, _ = cluster.tenants["alpha"]
    with cluster.server.client(cluster.server.token(username, PASSWORD, "alpha")) as alpha:
        # the tenant's own image: a member marks it (the public test image is the admin's)
        image_id = alpha.post("/v1/images", json={"name": "alpha-base", "kernel_cmdline": guest.cmdline})
        assert image_id.status_code == 201, image_id.text
        for part, path in (("kernel", guest.kernel), ("initrd", guest.initrd), ("file", guest.disk)):
            r = alpha.put(
                f"/v1/images/{image_id.json()['id']}/{part}",
                content=path.read_bytes(),
                headers={"Content-Type": "application/octet-stream"},
            )
            assert r.status_code == 200, r.text
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login(username, PASSWORD, tenant="alpha")
        b.go("/images")
        cell = "[data-testid=template-alpha-base]"
        page.click(f"{cell} button:text-is('Mark as template')")
        page.wait_for_selector(f"{cell} .badge:text-is('template')")  # live, from the image event
        assert axe_violations(page) == []

        page.click(f"{cell} button:text-is('New VMs')")
        page.fill("#many-name", "tmpl")
        page.fill("#many-count", "1")
        page.click("dialog button.primary")
        page.wait_for_selector("text=1 VM(s) from alpha-base are being created.")

        b.go("/vms")
        b.follow("main a:text-is('tmpl-1')")
        page.wait_for_selector("[data-testid=vm-state] .badge[data-state=running]", timeout=BOOT_MS)
        # a template is made from a stopped VM: the button says so while it runs
        assert page.is_disabled("main button:text-is('Make template')")

        # a snapshot of the running VM, which the clone dialog offers as a linked clone's or a full
        # copy's source
        vm_id = page.url.rsplit("/", 1)[-1]
        with cluster.server.client(cluster.server.token(username, PASSWORD, "alpha")) as alpha:
            r = alpha.post(f"/v1/vms/{vm_id}/snapshots", json={"name": "before-copy"})
            assert r.status_code == 202, r.text
            assert wait_task(alpha, r.json()["task_id"], timeout_s=180)["state"] == "succeeded"
        page.wait_for_selector("main button:text-is('Clone'):enabled")
        page.click("main button:text-is('Clone')")
        page.fill("#clone-name", "tmpl-copy")
        offered = page.locator("#clone-from option").all_inner_texts()
        assert "Snapshot before-copy (linked clone)" in offered, offered
        page.select_option("#clone-from", label="Snapshot before-copy (full copy)")
        page.click("dialog button.primary")
        page.wait_for_url("**/#/vms/vm-*")
        page.wait_for_selector("h1:has-text('tmpl-copy')")
        page.wait_for_selector("[data-testid=vm-state] .badge[data-state=running]", timeout=BOOT_MS)
        page.wait_for_function(
            "() => /vm.clone\\s+succeeded\\s+100%/.test(document.querySelector('main').innerText)",
            timeout=30_000,
        )
        # a full copy: its disk stands alone (no backing file: neither the snapshot's base nor the image)
        disk = cluster.server.state_dir / "instances" / page.url.rsplit("/", 1)[-1] / "disk.qcow2"
        info = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(disk)],
                              capture_output=True, check=True, text=True).stdout  # fmt: skip
        assert "backing-filename" not in json.loads(info), info
    finally:
        b.close()

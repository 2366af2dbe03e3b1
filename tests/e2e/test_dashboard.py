"""The dashboard in a real browser (Debian's Chromium) against a real server and real QEMU guests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import wait_task
from tests.e2e.browser import Browser, axe_violations, page_problems
from tests.e2e.conftest import ARTIFACTS, DESKTOP, PASSWORD, PHONE, Cluster

BOOT_S = 120_000  # ms: a TCG guest on a busy 2-core machine


def _wait_xterm(page: Any, pattern: str, timeout_ms: int) -> None:
    """Wait until the terminal's rendered rows match ``pattern`` (a JavaScript regex, multiline)."""
    page.wait_for_function(
        "p => new RegExp(p, 'm').test(document.querySelector('.xterm-rows')?.innerText || '')",
        arg=pattern,
        timeout=timeout_ms,
    )


def _member_token(cluster: Cluster, tenant: str) -> str:
    return cluster.server.token(cluster.tenants[tenant][0], PASSWORD, tenant)


@pytest.fixture(scope="module")
def alpha_vm(cluster: Cluster) -> Iterator[dict[str, str]]:
    """A running VM of tenant alpha, made through the API."""
    with cluster.server.client(_member_token(cluster, "alpha")) as alpha:
        r = alpha.post("/v1/vms", json={"name": "alpha-secret", "image": "test-guest", "flavor": "tiny"})
        assert r.status_code == 202, r.text
        assert wait_task(alpha, r.json()["task_id"], 180)["state"] == "succeeded"
        yield {"id": r.json()["vm"]["id"], "task_id": r.json()["task_id"]}


def test_create_watch_console_stop_delete(cluster: Cluster, browser: Any) -> None:
    username, _ = cluster.tenants["alpha"]
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login(username, PASSWORD, tenant="alpha")
        b.go("/vms/new")
        # the API's own validation message appears next to the field it names
        with httpx.Client(base_url=cluster.server.url, timeout=30) as raw:
            token = _member_token(cluster, "alpha")
            bad = raw.post(
                "/v1/vms",
                json={"name": "Bad_Name", "image": "test-guest", "flavor": "tiny"},
                headers={"Authorization": f"Bearer {token}"},
            ).json()
        reason = next(e["reason"] for e in bad["errors"] if e["field"] == "body.name")
        page.fill("#f-name", "Bad_Name")
        page.select_option("#f-image", "test-guest")
        page.select_option("#f-flavor", "tiny")
        page.click("form button[type=submit]")
        page.wait_for_selector("#f-name[aria-invalid=true]")
        assert page.inner_text("#f-name-error") == reason

        page.fill("#f-name", "web-e2e")
        page.fill("#f-user_data", "hello from the browser")
        page.evaluate("window.__sameDocument = true")
        page.click("form button[type=submit]")
        page.wait_for_url("**/#/vms/vm-*")
        b.ready()
        # building -> running arrives over the event stream: no reload (the marker survives)
        page.wait_for_selector("[data-testid=vm-state] .badge[data-state=running]", timeout=BOOT_S)
        assert page.evaluate("window.__sameDocument") is True
        vm_id = page.url.rsplit("/", 1)[1]
        page.wait_for_function(
            "() => /vm.create\\s+succeeded\\s+100%/.test(document.querySelector('main').innerText)",
            timeout=30_000,
        )

        # metrics: the charts get the agent's samples every second
        page.wait_for_function(
            "() => /CPU \\d/.test(document.querySelector('.chart .value')?.textContent || '')", timeout=30_000
        )

        # the serial console in xterm.js: the boot marker, then a command typed in the browser
        page.click("text=Open console")
        _wait_xterm(page, "NOVACRON-GUEST-UP hostname=web-e2e", BOOT_S)
        _wait_xterm(page, "^user-data: hello from the browser", 30_000)
        page.wait_for_selector("text=Connected")
        _wait_xterm(page, "web-e2e#", BOOT_S)  # the guest's shell prompt
        page.click(".xterm")
        page.keyboard.type("echo typed-$((6*7))\n")
        _wait_xterm(page, "^typed-42$", 30_000)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(ARTIFACTS / "vm-console-desktop-light.png"), full_page=True)

        # the HA flag, changed with If-Match behind a confirmation
        page.click("main button:text-is('Turn HA on')")
        page.click("dialog button.primary")
        page.wait_for_selector("[data-testid=vm-details] dd:has-text('restart elsewhere (priority 0)')")
        with cluster.server.client(_member_token(cluster, "alpha")) as alpha:
            assert alpha.get(f"/v1/vms/{vm_id}").json()["ha"] is True

        # stop, with confirmation; the state changes live
        page.click("main button:text-is('Stop')")
        page.click("dialog button.danger")
        page.wait_for_selector("[data-testid=vm-state] .badge[data-state=stopped]", timeout=90_000)

        page.click("main button:text-is('Delete')")
        page.click("dialog button.danger")
        page.wait_for_selector("h1:text('web-e2e was deleted')", timeout=90_000)
        deadline = time.monotonic() + 30
        with cluster.server.client(_member_token(cluster, "alpha")) as alpha:
            while alpha.get(f"/v1/vms/{vm_id}").status_code != 404 and time.monotonic() < deadline:
                time.sleep(0.3)
            assert alpha.get(f"/v1/vms/{vm_id}").status_code == 404
        assert b.errors == []
    finally:
        b.close()


def test_other_tenant_sees_only_its_own(cluster: Cluster, browser: Any, alpha_vm: dict[str, str]) -> None:
    alpha = Browser(browser, cluster.server.url, DESKTOP)
    beta = Browser(browser, cluster.server.url, PHONE)
    try:
        alpha.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
        alpha.go("/vms")
        assert "alpha-secret" in alpha.main_text()

        beta.login(cluster.tenants["beta"][0], PASSWORD, tenant="beta")
        beta.go("/vms")
        assert "alpha-secret" not in beta.main_text()
        assert "No VMs yet." in beta.main_text()
        beta.go(f"/vms/{alpha_vm['id']}")
        assert beta.page.inner_text("main h1") == "Not found"
        assert "alpha-secret" not in beta.main_text()
        beta.go(f"/tasks/{alpha_vm['task_id']}")
        assert beta.page.inner_text("main h1") == "Not found"

        # live updates: while beta watches its overview, alpha's VM changes state; beta's live
        # stream is connected, yet nothing of alpha's reaches the page
        beta.go("/")
        beta.page.wait_for_selector(".live[data-state=live]")
        with cluster.server.client(_member_token(cluster, "alpha")) as api:
            r = api.post(f"/v1/vms/{alpha_vm['id']}/actions/reboot")
            assert r.status_code == 202, r.text
            assert wait_task(api, r.json()["task_id"], 120)["state"] == "succeeded"
        alpha.go("/")
        alpha.page.wait_for_selector("main .events li:has-text('task.succeeded')")
        time.sleep(1.0)  # several of beta's stream polls (every 250 ms) have passed
        text = beta.main_text()
        assert "alpha-secret" not in text and alpha_vm["id"] not in text and "task." not in text
        assert beta.errors == [] and alpha.errors == []
    finally:
        alpha.close()
        beta.close()


def _guest_ready(api: httpx.Client, vm_id: str) -> None:
    """Wait until the guest's latest boot reached its shell (a hot-unplug needs the guest's ACPI)."""
    deadline = time.monotonic() + BOOT_S / 1000
    while time.monotonic() < deadline:
        text = api.get(f"/v1/vms/{vm_id}/console-log").text
        if text.rfind("NOVACRON-GUEST-READY") > text.rfind("NOVACRON-GUEST-UP") >= 0:
            return
        time.sleep(0.3)
    raise AssertionError(f"VM {vm_id} did not boot")


def test_volume_created_attached_and_detached_in_the_browser(
    cluster: Cluster, browser: Any, alpha_vm: dict[str, str]
) -> None:
    """Volumes page: create (the API's refusal next to its field), attach to the running VM (a
    hot-plug), the VM page lists it, detach there; each step arrives over the event stream."""
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        with cluster.server.client(_member_token(cluster, "alpha")) as api:
            _guest_ready(api, alpha_vm["id"])
        b.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
        b.go("/volumes")
        page.fill("#vol-name", "web-vol")
        page.fill("#vol-size", "0")
        page.click("form[aria-label='New volume'] button[type=submit]")
        page.wait_for_selector("#vol-size[aria-invalid=true]")
        page.fill("#vol-size", "1")
        page.click("form[aria-label='New volume'] button[type=submit]")
        row = "tr[data-volume=web-vol]"
        page.wait_for_selector(f"{row} .badge[data-state=available]", timeout=30_000)
        page.click(f"{row} button:text-is('Attach')")
        page.select_option("dialog #attach-vm", alpha_vm["id"])
        page.click("dialog button.primary")
        page.wait_for_selector(f"{row} .badge[data-state=in-use]", timeout=60_000)
        assert "alpha-secret" in page.inner_text(row)

        b.go(f"/vms/{alpha_vm['id']}")
        vm_row = f"[data-testid=vm-volumes] {row}"
        page.wait_for_selector(f"{vm_row} .badge[data-state=in-use]")
        page.click(f"{vm_row} button:text-is('Detach')")
        page.click("dialog button.primary")
        page.wait_for_selector(f"{vm_row}", state="detached", timeout=90_000)
        with cluster.server.client(_member_token(cluster, "alpha")) as api:
            vol = api.get("/v1/volumes", params={"name": "web-vol"}).json()["items"][0]
            assert vol["status"] == "available" and vol["vm_id"] is None
        assert b.errors == [], b.errors
    finally:
        b.close()


def test_every_page_phone_and_desktop_light_and_dark(
    cluster: Cluster, browser: Any, alpha_vm: dict[str, str]
) -> None:
    routes = [
        "/",
        "/vms",
        "/vms/new",
        f"/vms/{alpha_vm['id']}",
        "/volumes",
        "/images",
        "/flavors",
        "/hosts",
        "/tasks",
        f"/tasks/{alpha_vm['task_id']}",
        "/tenants",
        "/projects",
        "/users",
        "/roles",
        "/audit",
    ]
    problems: list[str] = []
    for size, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        for scheme in ("light", "dark"):
            b = Browser(browser, cluster.server.url, viewport, scheme)
            try:
                b.page.goto(f"{cluster.server.url}/")
                b.page.wait_for_selector("#username")
                b.page.screenshot(path=str(ARTIFACTS / f"login-{size}-{scheme}.png"))
                problems += [f"login {size} {scheme}: {v}" for v in axe_violations(b.page, scheme == "dark")]
                b.login("admin", cluster.server.admin_password)
                for route in routes:
                    b.go(route)
                    if route.startswith("/vms/vm-"):
                        b.page.wait_for_function(
                            "() => /CPU \\d/.test(document.querySelector('.chart .value')?.textContent || '')"
                        )
                    name = route.strip("/").split("/")[0] or "overview"
                    if route.count("/") > 1:
                        name += "-detail" if route != "/vms/new" else "-new"
                    problems += page_problems(b, route, name, size, scheme)
                if size == "desktop" and scheme == "light":
                    b.go("/hosts")
                    b.page.click("text=Plan a rebalance (dry run)")
                    plan = b.page.wait_for_selector("[data-testid=rebalance-plan]")
                    assert "Imbalance" in plan.inner_text()
                    # maintenance on and off, each confirmed; the table follows the host's events
                    b.page.click("main button:text-is('Maintenance')")
                    b.page.click("dialog button.primary")
                    b.page.wait_for_selector("td .badge[data-state=maintenance]")
                    assert cluster.admin.get("/v1/hosts").json()["items"][0]["state"] == "maintenance"
                    b.page.click("main button:text-is('End maintenance')")
                    b.page.click("dialog button.primary")
                    b.page.wait_for_selector("td .badge[data-state=up]")
                    assert cluster.admin.get("/v1/hosts").json()["items"][0]["state"] == "up"
                assert b.errors == [], b.errors
            finally:
                b.close()
    assert problems == []

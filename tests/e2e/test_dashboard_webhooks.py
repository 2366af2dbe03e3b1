"""Issue 19's webhooks page in Debian's Chromium against the suite's shared server: a tenant
administrator's subscription made with its secret shown once, an internal URL refused under its
field, paused, a test message queued (and held: paused), its delivery log shown, deleted.

Nothing leaves the machine: the subscription's only event type never occurs and it is paused
before its test message, which therefore stays pending until the subscription is deleted."""

from __future__ import annotations

from typing import Any

from tests.e2e.browser import Browser, page_problems
from tests.e2e.conftest import DESKTOP, PASSWORD, PHONE, Cluster


def _fill(b: Browser, name: str, url: str, events: str) -> None:
    b.page.fill("#hook-name", name)
    b.page.fill("#hook-url", url)
    b.page.fill("#hook-events", events)
    b.page.click("form[aria-label='New webhook'] button[type=submit]")


def test_a_tenant_admin_subscribes_pauses_tests_and_deletes_a_webhook(cluster: Cluster, browser: Any) -> None:
    beta = next(t for t in cluster.admin.get("/v1/tenants").json()["items"] if t["name"] == "beta")
    user = {"username": "beta-hooks", "password": PASSWORD, "role": "tenant-admin", "tenant_id": beta["id"]}
    assert cluster.admin.post("/v1/users", json=user).status_code == 201
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login("beta-hooks", PASSWORD, tenant="beta")
        b.follow("nav a:text-is('Webhooks')")
        assert "No webhooks yet." in b.main_text()
        # the platform's own address: refused under the URL field, nothing made
        _fill(b, "ops", "http://127.0.0.1:9/hook", "never.happens")
        page.wait_for_selector("#hook-url[aria-invalid=true]")
        assert "public addresses" in page.inner_text("#hook-url-error")
        assert page.query_selector("[data-testid=new-secret]") is None
        _fill(b, "ops", "https://93.184.215.14/hooks", "never.happens")
        secret = page.wait_for_selector("[data-testid=new-secret-value]").input_value()
        assert secret.startswith("whsec_")
        assert "will not be shown again" in page.inner_text("[data-testid=new-secret]")
        row = "tr[data-hook=ops]"
        page.wait_for_selector(f"{row} .badge[data-state=active]")
        page.click(f"{row} button:text-is('Pause')")
        page.wait_for_selector(f"{row} .badge[data-state=paused]")
        assert "paused by beta-hooks" in page.inner_text(row)
        page.click(f"{row} button:text-is('Send test')")
        page.wait_for_selector("[data-testid=deliveries] tr[data-delivery] .badge[data-state=pending]")
        assert "webhook.test" in page.inner_text("[data-testid=deliveries]")
        # shown once: the page loaded again has the subscription and no secret
        b._load(page.reload, f"main[data-ready=true] {row}")
        assert secret not in page.content()
        problems = page_problems(b, "/webhooks", "webhooks", "desktop", "light")
        page.click(f"{row} button:text-is('Delete')")
        page.click("dialog button.danger")
        page.wait_for_selector("main :text('No webhooks yet.')")
        assert cluster.admin.get("/v1/webhooks").json()["items"] == []
        assert problems == [], problems
        assert b.errors == [], b.errors
    finally:
        b.close()


def test_an_admin_changes_live_settings_sees_a_bad_value_refused_compares_and_rolls_back(
    cluster: Cluster, browser: Any
) -> None:
    """Issue 19's live configuration page: a value out of bounds shown under its field and not
    stored, a change saved as a new version in force at once, compared and rolled back."""
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    submit = "form[aria-label='Live settings'] button[type=submit]"
    threshold = "#cfg-scheduler-rebalance_threshold"
    try:
        b.login("admin", cluster.server.admin_password)
        b.follow("nav a:text-is('Live settings')")
        start = cluster.admin.get("/v1/config").json()["version"]
        page.fill(threshold, "2")
        page.click(submit)
        page.wait_for_selector(f"{threshold}[aria-invalid=true]")
        assert "at most 1" in page.inner_text(f"{threshold}-error")
        assert cluster.admin.get("/v1/config").json()["version"] == start
        page.fill(threshold, "0.25")
        page.select_option("#cfg-scheduler-placement_strategy", "pack")
        page.fill("#cfg-reason", "pack the hosts")
        page.click(submit)
        page.wait_for_selector(f"[data-testid=config-history] tr[data-version='{start + 1}'] .badge")
        config = cluster.admin.get("/v1/config").json()
        assert config["effective"]["scheduler"] == {
            **config["effective"]["scheduler"],
            "placement_strategy": "pack",
            "rebalance_threshold": 0.25,
        }
        assert "pack the hosts" in page.inner_text("[data-testid=config-history]")
        problems = page_problems(b, "/settings", "settings", "desktop", "light")
        before = f"[data-testid=config-history] tr[data-version='{start}']"
        page.click(f"{before} button:text-is('Compare')")
        page.wait_for_selector("[data-testid=config-diff] tr:has-text('scheduler.placement_strategy')")
        assert "pack" in page.inner_text("[data-testid=config-diff]")
        page.click(f"{before} button:text-is('Roll back to this')")
        page.click("dialog button.primary")
        page.wait_for_selector(f"[data-testid=config-history] tr[data-version='{start + 2}'] .badge")
        restored = cluster.admin.get("/v1/config").json()
        assert (
            restored["rollback_of"] == start
            and restored["effective"]["scheduler"]["placement_strategy"] == "spread"
        )
        assert b.errors == [], b.errors
    finally:
        b.close()
    for size, viewport, scheme in (("phone", PHONE, "light"), ("desktop", DESKTOP, "dark")):
        other = Browser(browser, cluster.server.url, viewport, scheme)
        try:
            other.login("admin", cluster.server.admin_password)
            other.go("/settings")
            other.page.wait_for_selector("[data-testid=config-history] tr[data-version]")
            problems += page_problems(other, "/settings", "settings", size, scheme)
            assert other.errors == [], other.errors
        finally:
            other.close()
    assert problems == [], problems

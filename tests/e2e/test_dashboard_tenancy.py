"""The dashboard's side of issue 11 finding 16, in Debian's Chromium against a real server: a
username shared by two tenants signs in with the Tenant field or as name@tenant, and a tenant
role's overview shows shared hosts as a capacity summary, not their allocation counters."""

from __future__ import annotations

from typing import Any

from tests.e2e.browser import Browser
from tests.e2e.conftest import DESKTOP, PASSWORD, Cluster


def test_shared_username_signs_in_with_its_tenant_and_hosts_are_a_summary(
    cluster: Cluster, browser: Any
) -> None:
    username, _ = cluster.tenants["alpha"]
    beta = next(t for t in cluster.admin.get("/v1/tenants").json()["items"] if t["name"] == "beta")
    twin = {
        "username": username,
        "password": "twin-horse-battery-42",
        "role": "member",
        "tenant_id": beta["id"],
    }
    r = cluster.admin.post("/v1/users", json=twin)
    assert r.status_code == 201, r.text
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        # a tenant user without its tenant: the page says what it says for a wrong password
        b._load(lambda: page.goto(f"{cluster.server.url}/"), "#username")
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        page.click("form button[type=submit]")
        page.wait_for_selector("#login-error .alert")
        assert "Wrong username or password" in page.inner_text("#login-error")
        assert "name@tenant" in page.inner_text("#login-error")  # and what to do instead
        b.login(username, PASSWORD, tenant="alpha")
        assert "alpha" in page.inner_text("[data-testid=who]")
        # or name@tenant in the username field
        twin_browser = Browser(browser, cluster.server.url, DESKTOP)
        try:
            twin_browser.login(f"{username}@beta", twin["password"])
            assert "beta" in twin_browser.page.inner_text("[data-testid=who]")
        finally:
            twin_browser.close()
        b.go("/")
        text = b.main_text()
        assert "vCPUs free" in text and "allocated" not in text, text
    finally:
        b.close()
        cluster.admin.delete(f"/v1/users/{r.json()['id']}")

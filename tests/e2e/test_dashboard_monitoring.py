"""The dashboard's monitoring pages in Chromium against a real node with a booted guest: the VM's
charts from the chart API (range picker, legend, guest memory next to QEMU's RSS, live updates), a
host's charts for administrators, the tenant overview and a custom dashboard saved per user."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import wait_task
from tests.e2e.browser import Browser, page_problems
from tests.e2e.conftest import DESKTOP, PASSWORD, PHONE, Cluster

VM_NAME = "mon-app"
CPU_QUERY = "sum(rate(novacron_vm_cpu_seconds_total[1m]))"


def _member(cluster: Cluster, tenant: str) -> httpx.Client:
    client = cluster.server.client(cluster.server.token(cluster.tenants[tenant][0], PASSWORD, tenant))
    client.timeout = httpx.Timeout(60)
    return client


@pytest.fixture(scope="module")
def vm_id(cluster: Cluster) -> Iterator[str]:
    """Tenant alpha's booted VM, once its chart shows guest memory (the balloon's statistics)."""
    with _member(cluster, "alpha") as alpha:
        r = alpha.post("/v1/vms", json={"name": VM_NAME, "image": "test-guest", "flavor": "tiny"})
        assert r.status_code == 202, r.text
        ident = r.json()["vm"]["id"]
        assert wait_task(alpha, r.json()["task_id"], 180)["state"] == "succeeded"
        deadline = time.monotonic() + 120
        names: set[str] = set()
        while time.monotonic() < deadline:
            chart = alpha.get(f"/v1/vms/{ident}/metrics", params={"range": "5m"}).json()
            names = {s["name"] for s in chart["series"] if s["points"]}
            if {"guest_memory_used", "process_rss", "cpu"} <= names:
                break
            time.sleep(1)
        assert {"guest_memory_used", "process_rss", "cpu"} <= names, names
        yield ident


def _legend(page: Any, chart: str) -> str:
    return str(page.inner_text(f"figure[data-chart={chart}] .u-legend"))


def _step(page: Any, step: str) -> None:
    page.wait_for_selector(f"[data-testid=vm-charts][data-step='{step}']")


def _gains_points_live(page: Any, vm_id: str) -> None:
    """Live mode follows the chart's event stream: the page, never reloaded, draws newer points
    while it stays open, and does not poll the chart meanwhile."""
    page.wait_for_selector("[data-testid=vm-charts][data-live=stream]")
    assert "updating live" in page.inner_text("[data-testid=chart-step]")
    polled: list[str] = []
    page.on("request", lambda r: polled.append(r.url) if "metrics?range=5m" in r.url else None)
    page.evaluate("window.__stillTheSamePage = true")
    last = float(page.get_attribute("figure[data-chart=cpu]", "data-last-time"))
    page.wait_for_function(
        f"Number(document.querySelector('figure[data-chart=cpu]').dataset.lastTime) >= {last + 2}",
        timeout=20_000,
    )
    assert page.evaluate("window.__stillTheSamePage === true"), "the page was reloaded"
    assert polled == [], polled


def test_vm_charts_ranges_legend_and_live_updates(cluster: Cluster, vm_id: str, browser: Any) -> None:
    problems: list[str] = []
    for size, viewport, scheme in (("desktop", DESKTOP, "light"), ("phone", PHONE, "dark")):
        b = Browser(browser, cluster.server.url, viewport, scheme)
        page = b.page
        try:
            b.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
            b.go(f"/vms/{vm_id}")
            _step(page, "1")
            page.wait_for_function(
                "document.querySelector('figure[data-chart=memory] h3 .value')?.textContent.includes('MiB')"
            )
            legend = _legend(page, "memory")
            assert "Guest memory used (as the guest sees it)" in legend, legend
            assert "QEMU process RSS" in legend, legend
            assert "Guest CPU (vCPU threads)" in _legend(page, "cpu")
            # every line of the memory chart has points: the plot's data is the chart API's
            counts = page.evaluate(
                """() => [...document.querySelectorAll('figure[data-chart=memory] .u-legend .u-series')]
                    .map(row => row.textContent)"""
            )
            assert len(counts) == 4, counts  # the time row and three lines
            # hovering the plot reads out the values under the cursor in the legend
            over = "figure[data-chart=memory] .u-over"
            box = page.query_selector(over).bounding_box()
            page.hover(over, position={"x": box["width"] * 0.9, "y": box["height"] / 2})
            page.wait_for_function(
                "document.querySelector('figure[data-chart=memory] .u-legend').textContent.includes('MiB')"
            )
            if size == "desktop":
                page.click("button[data-range='1h']")
                _step(page, "15")
                assert page.get_attribute("button[data-range='1h']", "aria-pressed") == "true"
                page.click("button[data-range='24h']")
                _step(page, "300")
                assert "one point every 5 min" in page.inner_text("[data-testid=chart-step]")
                page.click("button[data-range='5m']")
                _step(page, "1")
                _gains_points_live(page, vm_id)
            problems += page_problems(b, f"/vms/{vm_id}", "vm-metrics", size, scheme)
            b.go("/monitoring")
            row = page.wait_for_selector(f"tr[data-vm={VM_NAME}]")
            text = row.inner_text()
            assert "cores" in text and "MiB" in text, text
            problems += page_problems(b, "/monitoring", "monitoring", size, scheme)
            b.go("/vms")  # the VM list's live usage: the same figures in its Usage column
            usage = f"tr[data-vm={VM_NAME}] td[data-label=Usage]"
            page.wait_for_function(
                "sel => /cores · .*MiB/.test(document.querySelector(sel)?.textContent || '')", arg=usage
            )
            assert b.errors == [], b.errors
        finally:
            b.close()
    assert problems == [], problems


def test_host_charts_for_administrators(cluster: Cluster, vm_id: str, browser: Any) -> None:
    host = cluster.admin.get("/v1/hosts").json()["items"][0]
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login("admin", cluster.server.admin_password)
        b.go("/hosts")
        page.click(f"a[href='#/hosts/{host['id']}/metrics']")
        page.wait_for_selector("[data-testid=host-charts][data-step='1']")
        page.wait_for_function(
            "document.querySelector('figure[data-chart=memory] h3 .value')?.textContent.includes('GiB')"
        )
        assert "CPU by mode: user" in _legend(page, "cpu")
        assert "1" in page.inner_text("figure[data-chart=qemu] h3 .value")
        assert page_problems(b, f"/hosts/{host['id']}/metrics", "host-metrics", "desktop", "light") == []
        assert b.errors == [], b.errors
    finally:
        b.close()
    # a tenant's user is refused the host's chart
    with _member(cluster, "alpha") as alpha:
        assert alpha.get(f"/v1/hosts/{host['id']}/metrics", params={"range": "5m"}).status_code in (403, 404)


def test_custom_dashboard_saved_per_user(cluster: Cluster, vm_id: str, browser: Any) -> None:
    alpha = Browser(browser, cluster.server.url, DESKTOP)
    page = alpha.page
    problems: list[str] = []
    try:
        alpha.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
        alpha.go("/dashboards")
        page.fill("#dash-name", "ops")
        page.fill("#dash-title", "Guest CPU")
        page.fill("#dash-query", "sum(rate(novacron_vm_cpu_seconds_total[1m])")  # unbalanced
        page.select_option("#dash-unit", "cores")
        page.click("form button[type=submit]")
        page.wait_for_selector("#dash-query[aria-invalid=true]")
        assert page.inner_text("#dash-query-error")
        page.fill("#dash-query", CPU_QUERY)
        page.click("form button[type=submit]")
        page.wait_for_url("**/#/dashboards/dsh-*")
        alpha.ready()
        dashboard_id = page.url.rsplit("/", 1)[1]
        page.wait_for_function(
            "document.querySelector('[data-panel=\"Guest CPU\"] h3 .value')?.textContent.includes('cores')"
        )
        # a second panel, a stat, added on the dashboard's page
        page.fill("#panel-title", "Guest memory")
        page.fill("#panel-query", "sum(novacron_vm_guest_memory_total_bytes)")
        page.select_option("#panel-unit", "bytes")
        page.select_option("#panel-chart", "stat")
        page.click("form[aria-label] button[type=submit], form button[type=submit]")
        page.wait_for_selector("[data-panel='Guest memory'] .stat-value:has-text('MiB')")
        # saved server-side: it survives a reload
        page.reload()
        alpha.ready()
        page.wait_for_selector("[data-panel='Guest memory'] .stat-value:has-text('MiB')")
        page.wait_for_selector("[data-panel='Guest CPU'] .u-legend")
        problems += page_problems(alpha, f"/dashboards/{dashboard_id}", "dashboard", "desktop", "light")
        assert alpha.errors == [], alpha.errors
    finally:
        alpha.close()
    beta = Browser(browser, cluster.server.url, PHONE)
    try:
        beta.login(cluster.tenants["beta"][0], PASSWORD, tenant="beta")
        beta.go(f"/dashboards/{dashboard_id}")
        assert beta.page.inner_text("main h1") == "Not found"
        beta.go("/dashboards")
        assert "ops" not in beta.main_text()
        problems += page_problems(beta, "/dashboards", "dashboards", "phone", "light")
    finally:
        beta.close()
    with _member(cluster, "beta") as api:
        assert api.get(f"/v1/dashboards/{dashboard_id}").status_code == 404
        assert api.get("/v1/dashboards").json()["items"] == []
        assert api.delete(f"/v1/dashboards/{dashboard_id}", headers={"If-Match": '"1"'}).status_code == 404
    with _member(cluster, "alpha") as api:
        saved = api.get(f"/v1/dashboards/{dashboard_id}").json()
        assert [p["title"] for p in saved["panels"]] == ["Guest CPU", "Guest memory"]
    assert problems == [], problems

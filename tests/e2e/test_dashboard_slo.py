"""The dashboard's probe, SLO and SLA report pages in Chromium, against a real node (simulated compute,
the linux network backend, its own VictoriaMetrics).

A tenant's VM runs on the simulated driver; its "guest" is a network namespace on the network's
bridge serving HTTP (as in tests/integration/test_slo.py), so the probe made in the page really runs
from the network's DHCP namespace and succeeds. A day of the probe's history, with a half-hour
outage, is imported into the node's VictoriaMetrics under the probe's own labels, so the SLO's budget
burn chart and the month's report have something to show.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from novacron.network.linux import names
from tests.conftest import Guest, Server, destroy_server, import_guest_image, make_server, require
from tests.e2e.browser import Browser, page_problems
from tests.e2e.conftest import DESKTOP, PASSWORD, PHONE, VIEWS
from tests.integration.test_quota_api import SIM
from tests.integration.test_slo import (
    HTTP_SERVER,
    guest_namespace,
    import_series,
    make_vm,
    poll,
    success_lines,
)

PAGES = ["/probes", "/slos", "/slo-report"]
OUTAGE_S = 1800


@dataclass
class Env:
    server: Server
    victoria: str
    #: tenant name -> its member's API client
    apis: dict[str, httpx.Client]
    vm: dict[str, Any]


@pytest.fixture(scope="module")
def env(guest: Guest) -> Iterator[Env]:
    require(os.geteuid() == 0, "root: the linux network backend and namespaces")
    require(os.path.exists("/usr/bin/victoria-metrics"), "VictoriaMetrics (Debian victoria-metrics)")
    srv = make_server(**SIM, NOVACRON_METRICS_RETENTION="100y")
    srv.start(timeout_s=120)  # the machine is shared: a start under load takes longer
    apis: dict[str, httpx.Client] = {}
    try:
        with srv.client() as admin:
            import_guest_image(admin, guest)
            projects = {}
            for name in ("alpha", "beta"):
                tenant = admin.post("/v1/tenants", json={"name": name}).json()
                project = admin.post("/v1/projects", json={"name": "main", "tenant_id": tenant["id"]})
                projects[name] = project.json()["id"]
                user = {
                    "username": f"{name}-ops",
                    "password": PASSWORD,
                    "role": "tenant-admin",
                    "tenant_id": tenant["id"],
                }
                assert admin.post("/v1/users", json=user).status_code == 201
                apis[name] = srv.client(srv.token(f"{name}-ops", PASSWORD, name))
        found = re.search(r"metrics store: victoriametrics at (http://[\d.:]+)", srv.log_path.read_text())
        assert found, "the node runs no VictoriaMetrics"
        vm = make_vm(apis["alpha"], projects["alpha"], "web", "web", "10.64.0.0/24")
        yield Env(srv, found.group(1), apis, vm)
    finally:
        for api in apis.values():
            api.close()
        destroy_server(srv)


def _submit(page: Any, form: str) -> None:
    page.click(f"form[aria-label='{form}'] button[type=submit]")


def test_a_tenant_probes_its_vm_sets_an_slo_and_reads_the_report(env: Env, browser: Any) -> None:
    api = env.apis["alpha"]
    dhcp_ns = names.dhcp_ns(env.server.env["NOVACRON_HOST_NAME"], env.vm["network_id"])
    poll("the network's DHCP namespace", lambda: Path("/run/netns", dhcp_ns).exists())
    alpha = Browser(browser, env.server.url, DESKTOP)
    page = alpha.page
    with guest_namespace(names.bridge(env.vm["network_id"]), env.vm["ip"]) as ns:
        web = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", HTTP_SERVER, env.vm["ip"]])
        try:
            alpha.login("alpha-ops", PASSWORD, tenant="alpha")
            alpha.go("/probes")
            # a TCP probe without a port: the API's refusal shows next to the port
            page.fill("#prb-name", "web")
            page.select_option("#prb-kind", "tcp")
            page.select_option("#prb-vm_id", label="web")
            page.fill("#prb-target_port", "")
            _submit(page, "New probe")
            page.wait_for_selector("#prb-target_port[aria-invalid=true]")
            assert "required for a tcp probe" in page.inner_text("#prb-target_port-error")
            assert api.get("/v1/probes").json()["items"] == []

            # the form follows the kind: HTTP asks for a path, status and body text
            assert not page.is_visible("#prb-path")
            page.select_option("#prb-kind", "http")
            page.fill("#prb-target_port", "8080")
            page.fill("#prb-path", "/health")
            page.fill("#prb-body_contains", "novacron-ok")
            page.fill("#prb-interval_s", "1")
            page.fill("#prb-timeout_s", "1")
            _submit(page, "New probe")
            row = page.wait_for_selector("tr[data-probe=web]")
            assert f"http://{env.vm['ip']}:8080/health" in row.inner_text()
            # its last result and when: the page reads them again every few seconds
            up = page.wait_for_selector("tr[data-probe=web] [data-result=up]", timeout=60_000)
            assert "ago" in up.inner_text()
            probe = api.get("/v1/probes", params={"name": "web"}).json()["items"][0]
            assert probe["last_result"]["success"] is True

            # a day of the probe's history, with a half-hour outage six hours ago
            now = time.time()
            outage = (now - 6 * 3600, now - 6 * 3600 + OUTAGE_S)
            history = success_lines(probe, now - 86400, now - 120, 10, lambda t: outage[0] <= t < outage[1])
            import_series(env.victoria, history)

            # the SLO, made in the page on that probe
            alpha.go("/slos")
            page.fill("#slo-name", "web-availability")
            page.select_option("#slo-probe_id", label="web (http)")
            page.fill("#slo-target_percent", "95")
            page.fill("#slo-window_days", "1")
            _submit(page, "New SLO")
            row = page.wait_for_selector("tr[data-slo=web-availability]")
            bar = row.query_selector("[role=progressbar]")
            assert bar is not None, row.inner_text()
            left = float(bar.get_attribute("aria-valuenow") or "nan")
            assert 0 < left < 100, row.inner_text()
            assert "95" in row.inner_text() and "%" in row.inner_text()
            slo = api.get("/v1/slos", params={"name": "web-availability"}).json()["items"][0]
            assert len(slo["alert_rules"]) == 3 and all(r["rule_id"] for r in slo["alert_rules"])

            # its page: the figures and the budget burn chart over the day
            alpha.follow("tr[data-slo=web-availability] a")
            figures = page.inner_text("[data-testid=slo-figures]")
            assert "SLI over 1 d" in figures and re.search(r"9\d\.\d{3} %", figures), figures
            page.wait_for_selector("[data-testid=burn-chart][data-points] [data-chart=budget] canvas")
            points = int(page.get_attribute("[data-testid=burn-chart]", "data-points") or 0)
            assert points > 400, points  # a day in steps of 173 s, nearly all with results
            burn = page.inner_text("[data-chart=burn]")
            assert "burn rate" in burn
        finally:
            web.terminate()
            web.wait()

    # the month's report: inline, and as a CSV download
    month = datetime.now(UTC).strftime("%Y-%m")
    alpha.go("/slo-report")
    page.wait_for_selector("[data-testid=report] table")
    report = page.inner_text("[data-testid=report]")
    assert f"SLA report for alpha, {month}" in report and "web-availability" in report
    assert "Incidents of web-availability" in report, report
    with page.expect_download() as download:
        page.click("[data-testid=report-csv]")
    assert download.value.suggested_filename == f"sla-{month}.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [(r["slo"], r["target_percent"]) for r in rows] == [("web-availability", "95.000")]
    assert int(rows[0]["incidents"]) >= 1 and int(rows[0]["downtime_seconds"]) >= OUTAGE_S * 0.8
    assert alpha.errors == []
    alpha.close()

    # another tenant sees none of it
    beta = Browser(browser, env.server.url, PHONE)
    try:
        beta.login("beta-ops", PASSWORD, tenant="beta")
        for route in PAGES:
            beta.go(route)
            text = beta.main_text()
            assert "web-availability" not in text and "10.64.0." not in text, (route, text)
        beta.go(f"/slos/{slo['id']}")
        assert "Not found" in beta.main_text()
        assert beta.errors == []
    finally:
        beta.close()


def test_slo_pages_phone_and_desktop(env: Env, browser: Any) -> None:
    slos = env.apis["alpha"].get("/v1/slos").json()["items"]
    routes = PAGES + [f"/slos/{slos[0]['id']}"] if slos else PAGES
    problems: list[str] = []
    for size, viewport, scheme in VIEWS:
        b = Browser(browser, env.server.url, viewport, scheme)
        try:
            b.login("alpha-ops", PASSWORD, tenant="alpha")
            for route in routes:
                b.go(route)
                if route == "/slo-report":
                    b.page.wait_for_selector("[data-testid=report] > *")
                if route.startswith("/slos/"):
                    b.page.wait_for_selector("[data-testid=burn-chart][data-points]")
                name = "slo" + re.sub(r"/[a-z]+-[0-9a-f-]+$", "-detail", route).replace("/", "-")
                problems += page_problems(b, route, name, size, scheme)
            assert b.errors == []
        finally:
            b.close()
    assert problems == []


def test_an_administrator_reads_a_tenants_report_and_the_tenant_deletes_its_slo(
    env: Env, browser: Any
) -> None:
    month = datetime.now(UTC).strftime("%Y-%m")
    b = Browser(browser, env.server.url, DESKTOP)
    page = b.page
    try:
        b.login("admin", env.server.admin_password)
        b.go("/slo-report")
        page.select_option("#report-tenant", label="alpha")
        page.click("form[aria-label='Report month'] button[type=submit]")
        page.wait_for_selector(f"[data-testid=report] h2:text-is('SLA report for alpha, {month}')")
        assert "web-availability" in page.inner_text("[data-testid=report]")
    finally:
        b.close()

    api = env.apis["alpha"]
    slo = api.get("/v1/slos", params={"name": "web-availability"}).json()["items"][0]
    b = Browser(browser, env.server.url, PHONE)
    page = b.page
    try:
        b.login("alpha-ops", PASSWORD, tenant="alpha")
        # a probe an SLO measures is not deleted: the API's reason shows
        b.go("/probes")
        page.click("tr[data-probe=web] button:text-is('Delete')")
        page.click("dialog button.danger")
        toast = page.wait_for_selector(".toast.bad")
        assert "web-availability" in toast.inner_text()
        # the SLO deleted from its page takes its alert rules with it; then the probe goes
        b.go(f"/slos/{slo['id']}")
        page.click("main .page-head button.danger")
        page.click("dialog button.danger")
        page.wait_for_selector("main[data-ready=true] .empty:text-is('No SLOs yet.')")
        assert api.get("/v1/slos").json()["items"] == []
        rule_ids = {r["rule_id"] for r in slo["alert_rules"]}
        assert not rule_ids & {r["id"] for r in api.get("/v1/alert-rules").json()["items"]}
        b.go("/probes")
        page.click("tr[data-probe=web] button:text-is('Delete')")
        page.click("dialog button.danger")
        page.wait_for_selector("tr[data-probe=web]", state="detached")
        assert api.get("/v1/probes").json()["items"] == []
        assert b.errors == []
    finally:
        b.close()

"""The dashboard's alerting pages in Chromium, against a real node (its own VictoriaMetrics, vmalert
and Alertmanager): receivers, rules (and a refused one), silences, tenancy, a platform alert firing.

No guest is needed: the tenant's alert that fires is an absence rule on its VMs' CPU series (it
has no VM), the administrator's a threshold on a host series every node writes
(``novacron_host_qemu_processes``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import Server, destroy_server, make_server
from tests.e2e.browser import Browser, page_problems
from tests.e2e.conftest import DESKTOP, PASSWORD, PHONE, VIEWS

SECRET = "whsec-dashboard-0123456789"
#: a private range the egress guard is told to open, so the webhook's URL is accepted
HOOK = "http://10.254.0.9/hook"
PAGES = ["/alerts", "/alert-rules", "/alert-receivers", "/silences"]


@dataclass
class Env:
    server: Server
    admin: httpx.Client

    def member(self, tenant: str) -> httpx.Client:
        return self.server.client(self.server.token(f"{tenant}-ops", PASSWORD, tenant))


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    srv = make_server(NOVACRON_EGRESS_ALLOW="10.254.0.0/16")
    srv.start(timeout_s=120)  # the machine is shared: a start under load takes longer
    try:
        with srv.client() as admin:
            for name in ("alpha", "beta"):
                tenant = admin.post("/v1/tenants", json={"name": name}).json()
                user = {
                    "username": f"{name}-ops",
                    "password": PASSWORD,
                    "role": "tenant-admin",
                    "tenant_id": tenant["id"],
                }
                r = admin.post("/v1/users", json=user)
                assert r.status_code == 201, r.text
            yield Env(srv, admin)
    finally:
        destroy_server(srv)


def _reason(resp: httpx.Response, field: str) -> str:
    return str(next(e["reason"] for e in resp.json()["errors"] if e["field"].removeprefix("body.") == field))


def _confirm(page: Any, button: str) -> None:
    page.click(button)
    page.click("dialog button.danger")
    page.wait_for_selector("dialog", state="detached")


def test_tenant_makes_a_receiver_a_rule_and_a_silence(env: Env, browser: Any) -> None:
    alpha = Browser(browser, env.server.url, DESKTOP)
    beta = Browser(browser, env.server.url, PHONE)
    page = alpha.page
    try:
        with env.member("alpha") as api:
            alpha.login("alpha-ops", PASSWORD, tenant="alpha")
            # a signed webhook: the secret goes in, and never comes back to the page
            alpha.go("/alert-receivers")
            page.fill("#rcv-name", "ops-hook")
            page.fill("#rcv-url", HOOK)
            page.fill("#rcv-signing_secret", SECRET)
            page.click("form[aria-label='New receiver'] button[type=submit]")
            row = page.wait_for_selector("tr[data-receiver=ops-hook]")
            assert HOOK in row.inner_text() and "secret set" in row.inner_text()
            assert page.input_value("#rcv-signing_secret") == ""
            assert SECRET not in page.content()
            made = api.get("/v1/alert-receivers", params={"name": "ops-hook"}).json()["items"]
            assert [(r["kind"], r["url"], r["signing_secret_set"]) for r in made] == [("webhook", HOOK, True)]
            assert SECRET not in str(made)

            # a bad metric name: the API's own reason shows next to the field
            refused = api.post(
                "/v1/alert-rules",
                json={"name": "cpu-high", "kind": "threshold", "metric": "cpu usage", "value": 1},
            )
            assert refused.status_code == 422, refused.text
            alpha.go("/alert-rules")
            page.fill("#ar-name", "cpu-high")
            page.fill("#ar-metric", "cpu usage")
            page.fill("#ar-value", "0.9")
            page.click("form[aria-label='New alert rule'] button[type=submit]")
            page.wait_for_selector("#ar-metric[aria-invalid=true]")
            assert page.inner_text("#ar-metric-error") == _reason(refused, "metric")
            assert api.get("/v1/alert-rules").json()["items"] == []

            # the form follows the kind: an absence rule has no comparison nor value
            page.select_option("#ar-kind", "absence")
            assert not page.is_visible("#ar-value") and page.is_visible("#ar-window")
            page.select_option("#ar-kind", "threshold")

            # the threshold rule, with a range function, a comparison, a `for` and the receiver
            page.fill("#ar-metric", "novacron_vm_cpu_seconds_total")
            page.select_option("#ar-function", "rate")
            page.fill("#ar-window", "30s")
            page.select_option("#ar-op", ">=")
            page.fill("#ar-for", "2m")
            page.select_option("#ar-severity", "critical")
            page.select_option("#ar-receivers", label="ops-hook (webhook)")
            page.click("form[aria-label='New alert rule'] button[type=submit]")
            row = page.wait_for_selector("tr[data-rule=cpu-high]")
            assert "ops-hook" in row.inner_text() and "2.0 min" in row.inner_text()
            rule = api.get("/v1/alert-rules", params={"name": "cpu-high"}).json()["items"][0]
            assert rule["expr"].startswith("rate(novacron_vm_cpu_seconds_total{")
            assert rule["expr"].endswith("[30s]) >= 0.9")
            assert (rule["for_s"], rule["severity"], rule["receiver_ids"]) == (
                120,
                "critical",
                [made[0]["id"]],
            )

            # an absence rule on the tenant's VM CPU series: alpha has no VM, so it fires at once
            page.fill("#ar-name", "no-vms")
            page.select_option("#ar-kind", "absence")
            page.fill("#ar-metric", "novacron_vm_cpu_seconds_total")
            page.fill("#ar-window", "30s")
            page.click("form[aria-label='New alert rule'] button[type=submit]")
            page.wait_for_selector("tr[data-rule=no-vms]:has-text('absent_over_time')")
            alpha.go("/alerts")
            row = page.wait_for_selector("tr[data-alert=no-vms][data-alert-state=firing]", timeout=90_000)
            assert "warning" in row.inner_text()

            # a silence made from the alert's row (its labels prefilled), then expired
            alpha.follow(row.query_selector("a:text-is('Silence')").click)
            rule_id = api.get("/v1/alert-rules", params={"name": "no-vms"}).json()["items"][0]["id"]
            prefilled = page.input_value("#sil-matchers").splitlines()
            assert prefilled == ["alertname=no-vms", f"novacron_rule_id={rule_id}"], prefilled
            page.fill("#sil-comment", "maintenance window")
            page.click("form[aria-label='New silence'] button[type=submit]")
            row = page.wait_for_selector("tr[data-silence-state=active]:has-text('maintenance window')")
            silence_id = row.get_attribute("data-silence")
            stored = api.get(f"/v1/silences/{silence_id}").json()
            assert {(m["name"], m["value"]) for m in stored["matchers"]} >= {
                ("alertname", "no-vms"),
                ("novacron_rule_id", rule_id),
            }
            assert stored["state"] == "active"
            _confirm(page, f"tr[data-silence='{silence_id}'] button:text-is('Expire')")
            page.wait_for_selector(f"tr[data-silence='{silence_id}'][data-silence-state=expired]")
            assert api.get(f"/v1/silences/{silence_id}").json()["state"] == "expired"

        # another tenant sees none of it
        beta.login("beta-ops", PASSWORD, tenant="beta")
        for route, name in (
            ("/alert-rules", "cpu-high"),
            ("/alert-receivers", "ops-hook"),
            ("/silences", "maintenance"),
        ):
            beta.go(route)
            assert name not in beta.main_text(), route
        assert alpha.errors == [] and beta.errors == []
    finally:
        alpha.close()
        beta.close()


def _firing(admin: httpx.Client, name: str, timeout_s: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for alert in admin.get("/v1/alerts", params={"state": "firing"}).json()["items"]:
            if alert["name"] == name:
                return dict(alert)
        time.sleep(0.5)
    raise AssertionError(f"{name} never fired: {admin.get('/v1/alerts').json()}")


def test_a_firing_alert_shows_and_is_silenced_from_its_row(env: Env, browser: Any) -> None:
    admin = env.admin
    r = admin.post(
        "/v1/alert-rules",
        json={
            "name": "qemu-count",
            "kind": "threshold",
            "metric": "novacron_host_qemu_processes",
            "op": ">=",
            "value": 0,
            "severity": "info",
        },
    )
    assert r.status_code == 201, r.text
    started = time.monotonic()
    alert = _firing(admin, "qemu-count")
    fired_s = time.monotonic() - started
    b = Browser(browser, env.server.url, DESKTOP)
    page = b.page
    try:
        b.login("admin", env.server.admin_password)
        b.go("/alerts")
        row = page.wait_for_selector("tr[data-alert=qemu-count][data-alert-state=firing]")
        text = row.inner_text()
        assert "info" in text and f"host={alert['labels']['host']}" in text, text
        assert page_problems(b, "/alerts", "alerts-firing", "desktop", "light") == []
        b.follow(row.query_selector("a:text-is('Silence')").click)
        prefilled = page.input_value("#sil-matchers").splitlines()
        assert "alertname=qemu-count" in prefilled and f"host={alert['labels']['host']}" in prefilled
        page.fill("#sil-comment", "known")
        page.click("form[aria-label='New silence'] button[type=submit]")
        page.wait_for_selector("tr[data-silence-state=active]:has-text('known')")
        silences = admin.get("/v1/silences").json()["items"]
        assert any(s["comment"] == "known" and s["state"] == "active" for s in silences)

        # disabled from the rules page, the rule stops firing; enabled again, it fires again
        b.go("/alert-rules")
        page.click("tr[data-rule=qemu-count] button:text-is('Disable')")
        page.wait_for_selector("tr[data-rule=qemu-count] [data-state=disabled]")
        assert admin.get(f"/v1/alert-rules/{r.json()['id']}").json()["enabled"] is False
        b.go("/alerts")
        page.wait_for_selector("tr[data-alert=qemu-count][data-alert-state=firing]", state="detached")
        b.go("/alert-rules")
        page.click("tr[data-rule=qemu-count] button:text-is('Enable')")
        page.wait_for_selector("tr[data-rule=qemu-count] [data-state=enabled]")
        b.go("/alerts")
        page.wait_for_selector("tr[data-alert=qemu-count][data-alert-state=firing]", timeout=90_000)
        assert b.errors == []
        print(f"qemu-count fired {fired_s:.1f} s after its rule was created")
    finally:
        b.close()


def test_alert_pages_phone_and_desktop(env: Env, browser: Any) -> None:
    problems: list[str] = []
    for size, viewport, scheme in VIEWS:
        b = Browser(browser, env.server.url, viewport, scheme)
        try:
            b.login("alpha-ops", PASSWORD, tenant="alpha")
            for route in PAGES:
                b.go(route)
                problems += page_problems(b, route, f"alerts{route.replace('/', '-')}", size, scheme)
            assert b.errors == []
        finally:
            b.close()
    assert problems == []

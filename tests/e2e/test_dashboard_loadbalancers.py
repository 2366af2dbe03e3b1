"""The dashboard's load balancer pages in Chromium, against a real server whose agent runs HAProxy.

A tenant creates a load balancer in the form (a refused name first, the API's reason next to the
field), sees it in the list turn ACTIVE by itself, opens it, adds a pool, a listener and a member,
changes the member's weight and drains it, sees each status badge, and deletes the load balancer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import destroy_server, make_server
from tests.e2e.browser import Browser, page_problems
from tests.e2e.conftest import DESKTOP, PASSWORD, PHONE, Cluster, _tenant_user
from tests.integration.test_lb_cli import require_load_balancers

ACTIVE = "[data-testid=lb-details] [data-state=ACTIVE]"


@pytest.fixture(scope="module")
def lb_cluster() -> Iterator[Cluster]:
    require_load_balancers()
    srv = make_server(NOVACRON_COMPUTE_DRIVER="simulated")
    srv.start(timeout_s=90)
    try:
        with srv.client() as admin:
            yield Cluster(srv, admin, {"alpha": _tenant_user(admin, "alpha")})
    finally:
        destroy_server(srv)


def _alpha(cluster: Cluster) -> httpx.Client:
    client = cluster.server.client(cluster.server.token(cluster.tenants["alpha"][0], PASSWORD, "alpha"))
    client.timeout = httpx.Timeout(60)
    return client


def _settled(b: Browser, api: httpx.Client, lb_id: str) -> None:
    """The load balancer's task has realised the last change, and the page (refreshing by itself)
    shows it ACTIVE again."""
    deadline = time.monotonic() + 90
    while api.get(f"/v1/loadbalancers/{lb_id}").json()["provisioning_status"] != "ACTIVE":
        assert time.monotonic() < deadline, "the load balancer's task did not end in 90 s"
        time.sleep(0.2)
    b.page.wait_for_selector(ACTIVE, timeout=30_000)


def test_load_balancer_from_the_form_to_delete(lb_cluster: Cluster, browser: Any) -> None:
    b = Browser(browser, lb_cluster.server.url, DESKTOP)
    page = b.page
    problems: list[str] = []
    try:
        with _alpha(lb_cluster) as api:
            assert api.post("/v1/networks", json={"name": "web"}).status_code == 201
            r = api.post("/v1/subnets", json={"network": "web", "name": "web4", "cidr": "10.30.0.0/24"})
            assert r.status_code == 201, r.text
            subnet_id = r.json()["id"]

            b.login(lb_cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
            b.go("/loadbalancers")
            page.fill("#lb-name", "web lb")  # a space: the API refuses the name
            page.select_option("#lb-subnet", subnet_id)
            page.click("form[aria-label='New load balancer'] button[type=submit]")
            page.wait_for_selector("#lb-name[aria-invalid=true]")
            assert page.inner_text("#lb-name-error")
            page.fill("#lb-name", "web-lb")
            page.click("form[aria-label='New load balancer'] button[type=submit]")
            page.wait_for_selector("tr[data-lb=web-lb] [data-state=ACTIVE]", timeout=90_000)
            lb = api.get("/v1/loadbalancers", params={"name": "web-lb"}).json()["items"][0]
            assert lb["vip_address"] in page.inner_text("tr[data-lb=web-lb]")
            problems += page_problems(b, "/loadbalancers", "loadbalancers", "desktop", "light")
            page.set_viewport_size(PHONE)
            problems += page_problems(b, "/loadbalancers", "loadbalancers", "phone", "light")
            page.set_viewport_size(DESKTOP)

            b.follow("tr[data-lb=web-lb] a")
            _settled(b, api, lb["id"])
            page.fill("#pool-name", "web")
            page.select_option("#pool-monitor", "TCP")
            page.click("form[aria-label='New pool'] button[type=submit]")
            page.wait_for_selector("section[data-pool=web]")
            _settled(b, api, lb["id"])
            page.fill("#lis-name", "http")
            page.select_option("#lis-pool", label="web")
            page.click("form[aria-label='New listener'] button[type=submit]")
            page.wait_for_selector("tr[data-listener='80']")
            _settled(b, api, lb["id"])

            # a member outside the tenant's subnets is refused next to the address field
            page.fill("#mem-address", "192.0.2.9")
            page.click("form[aria-label='Add a member'] button[type=submit]")
            page.wait_for_selector("#mem-address[aria-invalid=true]")
            assert "192.0.2.9" in page.inner_text("#mem-address-error")
            page.fill("#mem-address", "10.30.0.50")
            page.fill("#mem-port", "8080")
            page.fill("#mem-name", "m1")
            page.click("form[aria-label='Add a member'] button[type=submit]")
            row = "tr[data-member='10.30.0.50']"
            page.wait_for_selector(row)
            _settled(b, api, lb["id"])
            # nothing answers at 10.30.0.50: HAProxy's TCP check takes it down, the agent's report
            # says so, and the badge turns OFFLINE with no reload (the member.down event)
            page.wait_for_selector(f"{row} [data-state=OFFLINE]", timeout=90_000)
            pool = api.get(f"/v1/loadbalancers/{lb['id']}/pools").json()["items"][0]
            members = f"/v1/loadbalancers/{lb['id']}/pools/{pool['id']}/members"
            member = api.get(members).json()["items"][0]
            assert (member["address"], member["protocol_port"], member["name"]) == ("10.30.0.50", 8080, "m1")

            page.fill(f"#mw-{member['id']}", "5")
            page.click("form[aria-label='Weight of m1'] button[type=submit]")
            page.wait_for_selector(".toast:text-is('Weight of m1 set to 5.')")  # the PATCH answered
            _settled(b, api, lb["id"])
            assert api.get(f"{members}/{member['id']}").json()["weight"] == 5
            page.click(f"{row} button:text-is('Drain')")
            page.wait_for_selector(f"{row} button:text-is('Undrain')")
            _settled(b, api, lb["id"])
            assert api.get(f"{members}/{member['id']}").json()["drain"] is True
            assert "draining" in page.inner_text(row)
            route = "/loadbalancers/:id"
            problems += page_problems(b, route, "loadbalancer", "desktop", "light")
            page.emulate_media(color_scheme="dark")
            problems += page_problems(b, route, "loadbalancer", "desktop", "dark")
            page.set_viewport_size(PHONE)
            page.emulate_media(color_scheme="light")
            problems += page_problems(b, route, "loadbalancer", "phone", "light")
            page.set_viewport_size(DESKTOP)

            page.click(".page-head button.danger")
            page.click("dialog button.danger")
            page.wait_for_url("**/#/loadbalancers")
            b.ready()
            page.wait_for_selector("tr[data-lb=web-lb]", state="detached", timeout=90_000)
            assert api.get("/v1/loadbalancers").json()["items"] == []
        assert b.errors == []
        assert problems == []
    finally:
        b.close()

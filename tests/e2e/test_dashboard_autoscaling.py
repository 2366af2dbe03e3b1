"""The dashboard's scaling group, cost and capacity pages in Chromium, against a real node (simulated
compute, no tenant networking: the members need no guest to boot, and the cost is real).

Tenant alpha creates a group in the form (a refused name first, the API's reason next to the field),
sees its row while beta's group is absent, sets the desired count with a reason and reads the reason
back in the activity history, is refused a count above the maximum with the API's detail, protects
a member from scale-in, adds a lifecycle hook in the form (a refused private URL first, the egress
guard's reason next to the field) and sees the next member wait on it, then its outcome in the
history; changes the template (API) and refreshes the group from the page (0/0 refused by field,
then the unprotected member replaced, its version and the progress shown, the protected one
skipped), and reads its cost with the node's currency beside the clouds' shapes. The platform
administrator reads the capacity forecast.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Guest, default_project, destroy_server, make_server
from tests.e2e.browser import Browser, page_problems
from tests.e2e.conftest import DESKTOP, PASSWORD, PHONE, Cluster, _tenant_user

BASE = "/v1/scaling-groups"
CURRENCY = "EUR"


def _disk_image(admin: httpx.Client, guest: Guest) -> None:
    """The test guest's disk alone as public image 'test-guest': simulated members never boot it, so
    its kernel and initrd (65 MB) are not uploaded."""
    body = {"name": "test-guest", "public": True, "project_id": default_project(admin)}
    image = admin.post("/v1/images", json=body).json()
    r = admin.put(f"/v1/images/{image['id']}/file", content=guest.disk.read_bytes(),
                  headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "active", r.text


@pytest.fixture(scope="module")
def as_cluster(guest: Guest) -> Iterator[Cluster]:
    srv = make_server(
        NOVACRON_COMPUTE_DRIVER="simulated", NOVACRON_NETWORK_BACKEND="none", NOVACRON_CURRENCY=CURRENCY,
        NOVACRON_EGRESS_ALLOW="127.0.0.0/8",  # the lifecycle hook's receiver, on 127.0.0.2
    )  # fmt: skip
    srv.start(timeout_s=120)  # the machine is shared: a start under load takes longer
    try:
        with srv.client() as admin:
            _disk_image(admin, guest)
            for resource, per_hour in (("vcpus", 0.02), ("ram_mb", 0.00001)):
                assert admin.put(f"/v1/prices/{resource}", json={"per_hour": per_hour}).status_code == 200
            tenants = {name: _tenant_user(admin, name) for name in ("alpha", "beta")}
            yield Cluster(srv, admin, tenants)
    finally:
        destroy_server(srv)


def _api(cluster: Cluster, tenant: str) -> httpx.Client:
    srv = cluster.server
    return srv.client(srv.token(cluster.tenants[tenant][0], PASSWORD, tenant))


def _poll(what: str, check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {timeout_s} s"
        time.sleep(0.2)


def _in_service(api: httpx.Client, group_id: str) -> int:
    return int(api.get(f"{BASE}/{group_id}").json()["members"]["in_service"])


class _Silent(http.server.BaseHTTPRequestHandler):
    """A lifecycle hook receiver that takes each event and never answers the action."""

    got: list[bytes] = []

    def do_POST(self) -> None:
        self.got.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), _Silent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.2:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def _hook_and_a_member_waiting_on_it(page: Any, api: httpx.Client, group_id: str, url: str) -> None:
    """Add a launch hook in the form; the next member waits on it (shown), then joins at its timeout."""
    page.fill("#hook-name", "gate")
    page.fill("#hook-url", "http://10.9.8.7/hook")  # private: the egress guard refuses it
    page.fill("#hook-secret", "a-secret-of-sixteen+")
    page.fill("#hook-timeout", "6")
    _submit(page, "New lifecycle hook")
    page.wait_for_selector("#hook-url[aria-invalid=true]")
    assert "private" in page.inner_text("#hook-url-error")
    page.fill("#hook-url", url)
    page.fill("#hook-secret", "a-secret-of-sixteen+")
    _submit(page, "New lifecycle hook")
    page.wait_for_selector("tr[data-hook=gate]")
    assert "launching" in page.inner_text("tr[data-hook=gate]")
    assert "a-secret-of-sixteen+" not in page.content()
    assert api.patch(f"{BASE}/{group_id}", json={"desired": 3}).status_code == 200
    page.wait_for_selector("tr[data-member] [data-state=pending_launch]", timeout=30_000)
    assert "hook gate until" in page.inner_text("tr[data-member] [data-waiting=gate]")
    # no answer: at the 6 s timeout the default (continue) applies and the history says so
    page.wait_for_selector("td[data-label=Reason]:has-text(\"hook 'gate' on the launch\")", timeout=30_000)
    assert "timed out" in page.inner_text("td[data-label=Reason]:has-text(\"hook 'gate'\")")
    _poll("three members in service", lambda: _in_service(api, group_id) == 3)


def _submit(page: Any, form: str) -> None:
    page.click(f"form[aria-label='{form}'] button[type=submit]")


def test_scaling_groups_cost_and_capacity_pages(as_cluster: Cluster, browser: Any, receiver: str) -> None:
    with _api(as_cluster, "beta") as beta:
        r = beta.post(BASE, json={"name": "beta-web", "image": "test-guest", "flavor": "tiny", "min_size": 0,
                                  "max_size": 2, "desired": 0})  # fmt: skip
        assert r.status_code == 201, r.text
    b = Browser(browser, as_cluster.server.url, DESKTOP)
    page = b.page
    problems: list[str] = []
    try:
        with _api(as_cluster, "alpha") as api:
            b.login(as_cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
            b.go("/scaling-groups")
            page.fill("#sg-name", "Web")  # upper case: the API refuses the name
            page.select_option("#sg-image", label="test-guest")
            page.select_option("#sg-flavor", label="tiny (1 vCPU, 128 MiB)")
            page.fill("#sg-max", "3")
            page.fill("#sg-desired-new", "1")
            _submit(page, "New scaling group")
            page.wait_for_selector("#sg-name[aria-invalid=true]")
            assert page.inner_text("#sg-name-error")
            page.fill("#sg-name", "web")
            _submit(page, "New scaling group")
            row = "tr[data-group=web]"
            page.wait_for_selector(row)
            assert "1 (0–3)" in page.inner_text(row)
            assert page.query_selector("tr[data-group=beta-web]") is None
            assert "beta-web" not in b.main_text()
            group = api.get(BASE, params={"name": "web"}).json()["items"][0]
            # the member boots on the simulated host; the list follows by itself
            page.wait_for_selector(f"{row} td[data-label='Members running']:text-is('1')")
            problems += page_problems(b, "/scaling-groups", "scaling-groups", "desktop", "light")
            page.set_viewport_size(PHONE)
            problems += page_problems(b, "/scaling-groups", "scaling-groups", "phone", "light")
            page.set_viewport_size(DESKTOP)

            b.follow(f"{row} a")
            page.fill("#sg-desired", "2")
            page.fill("#sg-reason", "launch day traffic")
            with page.expect_request(lambda r: r.method == "PATCH") as patch:
                _submit(page, "Desired count")
            # the page sends the version it shows, so a change made meanwhile is refused, not lost
            assert patch.value.headers["if-match"].startswith(f'"{group["id"]}.v')
            page.wait_for_selector("td[data-label=Reason]:text-is('launch day traffic')")
            # newest first: the reason set in the form heads the history
            newest = page.inner_text("tr[data-activity] >> nth=0 >> td[data-label=Reason]")
            assert newest == "launch day traffic"
            assert api.get(f"{BASE}/{group['id']}").json()["desired"] == 2

            page.fill("#sg-desired", "9")  # above the maximum: the API's detail shows
            _submit(page, "Desired count")
            page.wait_for_selector("#sg-desired[aria-invalid=true]")
            assert "between min_size (0) and max_size (3)" in page.inner_text("#sg-desired-error")
            # said once, under the field: the form's banner is for errors no field shows (issue 17)
            assert "between min_size" not in page.inner_text("[data-testid=desired-error]")
            assert api.get(f"{BASE}/{group['id']}").json()["desired"] == 2

            _poll("two members in service", lambda: _in_service(api, group["id"]) == 2)
            page.wait_for_selector("tr[data-member]:nth-child(2)")
            vm_id = api.get(f"{BASE}/{group['id']}/members").json()[0]["vm_id"]
            page.check(f"#prot-{vm_id}")
            page.wait_for_selector(".toast:has-text('is protected from scale-in')")
            members = api.get(f"{BASE}/{group['id']}/members").json()
            assert {m["vm_id"]: m["protected_from_scale_in"] for m in members}[vm_id] is True

            # changed behind the page's back (no event: only the version moves): the stale
            # If-Match is refused with the API's words, and the page reads the group again
            page.reload()
            b.ready()
            assert api.patch(f"{BASE}/{group['id']}", json={"cooldown_s": 60}).status_code == 200
            page.fill("#sg-desired", "3")
            _submit(page, "Desired count")
            page.wait_for_selector("[data-testid=desired-error]:has-text('changed since you read it')")
            page.wait_for_selector("[data-testid=sg-details] dd:text-is('60 s · 120 s')")
            assert api.get(f"{BASE}/{group['id']}").json()["desired"] == 2
            # the group's own cost: its members' VMs, in the node's currency
            vm_ids = [m["vm_id"] for m in members]
            group_cost = api.get("/v1/cost", params={"vm_id": vm_ids}).json()
            shown = page.inner_text("[data-testid=sg-details]")
            assert f"{group_cost['per_month']:.2f} {CURRENCY} per month" in shown
            assert "Drain timeout" in shown and "30 s" in shown  # a leaving member's sessions' bound
            # scaling against static provisioning: the figures, or the API's reason while the
            # metrics store has too few CPU samples of the members (they ran for seconds)
            roi = "section[aria-label='Scaling against static provisioning']"
            page.wait_for_selector(f"{roi} [data-testid=sg-roi], {roi} .alert")
            roi_text = page.inner_text(roi)
            assert "VM-hours" in roi_text or "no CPU samples of these VMs" in roi_text, roi_text
            route = "/scaling-groups/:id"
            problems += page_problems(b, route, "scaling-group", "desktop", "light")
            page.emulate_media(color_scheme="dark")
            problems += page_problems(b, route, "scaling-group", "desktop", "dark")
            page.emulate_media(color_scheme="light")
            _hook_and_a_member_waiting_on_it(page, api, group["id"], receiver)

            # a template change through the API shows as v2 with the members still v1; a refresh
            # from the page: 0/0 refused naming the field, then surge 1 replaces the unprotected
            # members and skips the protected one, the progress and the versions shown
            r = api.patch(f"{BASE}/{group['id']}", json={"labels": {"release": "2"}})
            assert r.status_code == 200 and r.json()["template_version"] == 2, r.text
            page.wait_for_selector("[data-testid=sg-template-version]:text-is('v2')")
            assert "v1 (older" in page.inner_text(f"tr[data-member={vm_id}]")
            page.fill("#rf-surge", "0")
            page.fill("#rf-unavailable", "0")
            _submit(page, "Instance refresh")
            page.wait_for_selector("#rf-unavailable[aria-invalid=true]")
            assert "no member could ever be replaced" in page.inner_text("#rf-unavailable-error")
            page.fill("#rf-surge", "1")
            _submit(page, "Instance refresh")
            page.wait_for_selector(
                "[data-testid=sg-refresh] [role=progressbar][aria-valuenow='100']", timeout=60_000
            )
            refresh = page.inner_text("[data-testid=sg-refresh]")
            # the two unprotected members replaced (their launch hook timing out), the protected one skipped
            assert "2 of 2 replaced" in refresh and vm_id in refresh, refresh
            now = {m["vm_id"]: m["template_version"] for m in api.get(f"{BASE}/{group['id']}/members").json()}
            assert len(now) == 3 and now[vm_id] == 1, now
            for fresh in [v for v, version in now.items() if version == 2]:
                page.wait_for_selector(f"tr[data-member={fresh}] [data-testid=member-version]:text-is('v2')")
            problems += page_problems(b, route, "scaling-group-refreshed", "desktop", "light")

            b.go("/cost")
            cost = api.get("/v1/cost").json()
            assert cost["currency"] == CURRENCY and cost["per_month"] > 0
            total = page.inner_text("[data-testid=cost-total]")
            assert f"{cost['per_month']:.2f} {CURRENCY}" in total
            member_name = next(v["name"] for v in cost["items"] if v["vm_id"] == vm_id)
            aws = next(v["clouds"]["aws"] for v in cost["items"] if v["vm_id"] == vm_id)
            vm_row = page.inner_text(f"tr[data-vm='{member_name}']")
            assert aws["type"] in vm_row and aws["as_of"] in vm_row
            problems += page_problems(b, "/cost", "cost", "desktop", "light")
            page.set_viewport_size(PHONE)
            problems += page_problems(b, "/cost", "cost", "phone", "light")
        assert b.errors == []
    finally:
        b.close()

    admin = Browser(browser, as_cluster.server.url, DESKTOP)
    try:
        admin.login("admin", as_cluster.server.admin_password)
        admin.go("/capacity")
        forecast = as_cluster.admin.get("/v1/capacity/forecast").json()
        host_group = forecast["groups"][0]
        section = admin.page.inner_text(f"[data-capacity='{host_group['name']}']")
        for pool in host_group["pools"]:
            assert pool["resource"] in section
        assert host_group["bottleneck"] in admin.page.inner_text("[data-testid=bottleneck]")
        problems += page_problems(admin, "/capacity", "capacity", "desktop", "light")
        # a platform administrator, in no tenant, picks the tenant whose cost it reads
        alpha = as_cluster.admin.get("/v1/tenants", params={"name": "alpha"}).json()["items"][0]
        admin.go(f"/cost?tenant={alpha['id']}")
        assert admin.page.input_value("#cost-tenant") == alpha["id"]
        assert f"{cost['per_month']:.2f} {CURRENCY}" in admin.page.inner_text("[data-testid=cost-total]")
        assert admin.errors == []
    finally:
        admin.close()
    assert problems == []

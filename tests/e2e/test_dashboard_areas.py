"""The dashboard's networking, quota/usage and backup/DR pages in Chromium, against a real server.

One server and one booted guest for the module: the guest is backed up (a real backup into a local
target, then verified) and counts against its tenant's quota.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import default_project, wait_console, wait_task
from tests.e2e.browser import Browser, page_problems
from tests.e2e.conftest import DESKTOP, PASSWORD, PHONE, Cluster

#: the guest writes 4 MiB to its disk, so the backup and its verify have chunks to check
WRITE = """#!/bin/sh
dd if=/dev/urandom of=/dev/vda bs=1M count=4 seek=8 conv=fsync 2>/dev/null
echo WEB-DISK-WRITTEN
"""
NEW_PAGES = [
    "Networks",
    "Security groups",
    "Routers",
    "Floating IPs",
    "Backups",
    "Schedules",
    "DR runbooks",
    "Quotas",
    "Reservations",
    "Usage and cost",
]


@dataclass
class Areas:
    vm_id: str
    backup_id: str
    tenant_node: str
    project_node: str
    sub_node: str


def _member(cluster: Cluster, tenant: str) -> httpx.Client:
    client = cluster.server.client(cluster.server.token(cluster.tenants[tenant][0], PASSWORD, tenant))
    client.timeout = httpx.Timeout(60)
    return client


@pytest.fixture(scope="module")
def booting(cluster: Cluster) -> tuple[str, str]:
    """Tenant alpha's VM, asked for first: the guest boots while the networking test runs."""
    with _member(cluster, "alpha") as alpha:
        r = alpha.post(
            "/v1/vms", json={"name": "alpha-app", "image": "test-guest", "flavor": "tiny", "user_data": WRITE}
        )
        assert r.status_code == 202, r.text
        return r.json()["vm"]["id"], r.json()["task_id"]


@pytest.fixture(scope="module")
def areas(cluster: Cluster, booting: tuple[str, str]) -> Iterator[Areas]:
    """Tenant alpha's VM (booted), a verified backup of it, a quota limit, a schedule, a runbook."""
    admin = cluster.admin
    r = admin.post(
        "/v1/backup-targets",
        json={"name": "local", "type": "local", "config": {"path": str(cluster.server.state_dir / "bkt")}},
    )
    assert r.status_code == 201, r.text
    tenant_id = admin.get("/v1/tenants", params={"name": "alpha"}).json()["items"][0]["id"]
    node = admin.get("/v1/quota", params={"tenant_id": tenant_id}).json()
    r = admin.patch(f"/v1/quota/nodes/{node['id']}", json={"limits": {"vcpus": 8, "ram_mb": 8192, "vms": 4}})
    assert r.status_code == 200, r.text
    project = cluster.tenants["alpha"][1]
    project_node = admin.get("/v1/quota", params={"project_id": project}).json()["id"]
    r = admin.post("/v1/projects", json={"name": "web", "tenant_id": tenant_id, "parent_id": project})
    assert r.status_code == 201, r.text
    sub = admin.get("/v1/quota", params={"project_id": r.json()["id"]}).json()
    r = admin.patch(f"/v1/quota/nodes/{sub['id']}", json={"limits": {"vcpus": 2}})
    assert r.status_code == 200, r.text
    # a price, so that metering gives the usage report a cost
    assert admin.put("/v1/prices/vcpus", json={"per_hour": 0.5}).status_code == 200
    with _member(cluster, "alpha") as alpha:
        vm_id, task_id = booting
        assert wait_task(alpha, task_id, 180)["state"] == "succeeded"
        wait_console(alpha, vm_id, "WEB-DISK-WRITTEN", 180)
        # a data volume hot-plugged in: the backup holds it beside the root disk
        r = alpha.post("/v1/volumes", json={"name": "alpha-data", "size_gb": 1, "project_id": project})
        assert r.status_code == 202, r.text
        volume_id = r.json()["volume"]["id"]
        assert wait_task(alpha, r.json()["task_id"], 120)["state"] == "succeeded"
        r = alpha.post(f"/v1/volumes/{volume_id}/attach", json={"vm": vm_id})
        assert wait_task(alpha, r.json()["task_id"], 120)["state"] == "succeeded"
        r = alpha.post("/v1/backups", json={"vm": vm_id})
        assert r.status_code == 202, r.text
        backup_id = r.json()["backup"]["id"]
        assert wait_task(alpha, r.json()["task_id"], 300)["state"] == "succeeded"
        r = alpha.post(f"/v1/backups/{backup_id}/verify")
        assert wait_task(alpha, r.json()["task_id"], 120)["state"] == "succeeded"
        r = admin.post(
            "/v1/backup-policies",
            json={"name": "nightly", "vm": vm_id, "interval_s": 86400, "enabled": False},
        )
        assert r.status_code == 201, r.text
        # an RPO target of one second: the backup is older than that, so the page shows it missed
        r = admin.post(
            "/v1/dr/runbooks",
            json={"name": "app-dr", "project_id": project, "steps": [{"vm": vm_id}], "rpo_target_s": 1},
        )
        assert r.status_code == 201, r.text
        r = alpha.post("/v1/routers", json={"name": "edge", "project_id": project})
        assert r.status_code == 201, r.text
        assert admin.post("/v1/usage/meter").status_code == 200
        yield Areas(vm_id, backup_id, node["id"], project_node, sub["id"])


def _reason(resp: httpx.Response, field: str) -> str:
    body = resp.json()
    return str(next(e["reason"] for e in body["errors"] if e["field"] == field))


def test_network_form_rules_and_tenant_scope(
    booting: tuple[str, str], cluster: Cluster, browser: Any
) -> None:
    alpha = Browser(browser, cluster.server.url, DESKTOP)
    beta = Browser(browser, cluster.server.url, PHONE)
    page = alpha.page
    try:
        with _member(cluster, "alpha") as api:
            # the API's own reason for a bad CIDR, to compare with what the form shows
            probe = api.post("/v1/networks", json={"name": "probe"}).json()
            bad = api.post("/v1/subnets", json={"network": probe["id"], "name": "s", "cidr": "10.9.0.0/33"})
            assert bad.status_code == 422, bad.text
            reason = _reason(bad, "body.cidr")
            assert api.delete(f"/v1/networks/{probe['id']}").status_code == 204

            alpha.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
            alpha.go("/networks")
            page.fill("#net-name", "web-net")
            page.fill("#sub-cidr", "10.9.0.0/33")
            page.click("form[aria-label='New network'] button[type=submit]")
            page.wait_for_selector("#sub-cidr[aria-invalid=true]")
            assert page.inner_text("#sub-cidr-error") == reason
            # a refused subnet leaves no network behind
            assert api.get("/v1/networks", params={"name": "web-net"}).json()["items"] == []

            page.fill("#sub-cidr", "10.9.0.0/24")
            page.fill("#sub-dns", "10.9.0.53")
            page.click("form[aria-label='New network'] button[type=submit]")
            row = page.wait_for_selector("tr[data-network=web-net]:has-text('10.9.0.0/24')")
            assert row is not None
            net = api.get("/v1/networks", params={"name": "web-net"}).json()["items"][0]
            subnet = api.get("/v1/subnets", params={"network_id": net["id"]}).json()["items"][0]
            assert (subnet["cidr"], subnet["dns_servers"]) == ("10.9.0.0/24", ["10.9.0.53"])
            alpha.follow("tr[data-network=web-net] a")
            assert "10.9.0.1" in alpha.main_text()  # the default gateway the API chose

            # a security group made in the form, then a rule added and removed in its editor
            alpha.go("/security-groups")
            page.fill("#sg-name", "web-sg")
            page.click("form button[type=submit]")
            page.wait_for_url("**/#/security-groups/*")
            alpha.ready()
            group_id = page.url.rsplit("/", 1)[1]
            before = len(api.get(f"/v1/security-groups/{group_id}").json()["rules"])
            page.fill("#rule-port_min", "22")  # ports without a protocol: the API refuses
            page.click("form[aria-label='Add a rule'] button[type=submit]")
            page.wait_for_selector("#rule-port_min[aria-invalid=true]")
            assert "protocol" in page.inner_text("#rule-port_min-error")
            page.select_option("#rule-protocol", "tcp")
            page.fill("#rule-remote_cidr", "10.0.0.0/8")
            page.click("form[aria-label='Add a rule'] button[type=submit]")
            page.wait_for_selector("tr:has([data-testid=rule]:text-is('tcp 22')):has-text('10.0.0.0/8')")
            rules = api.get(f"/v1/security-groups/{group_id}").json()["rules"]
            assert len(rules) == before + 1
            added = next(r for r in rules if r["port_min"] == 22)
            assert (added["protocol"], added["remote_cidr"], added["direction"]) == (
                "tcp",
                "10.0.0.0/8",
                "ingress",
            )
            page.click(f"tr[data-rule='{added['id']}'] button:text-is('Remove')")
            page.click("dialog button.danger")
            page.wait_for_selector(f"tr[data-rule='{added['id']}']", state="detached")
            assert len(api.get(f"/v1/security-groups/{group_id}").json()["rules"]) == before

            # a router made in the form: a bad name first, with the API's reason next to the field
            refused = api.post("/v1/routers", json={"name": "web router"})
            alpha.go("/routers")
            page.fill("#rt-name", "web router")
            page.click("form[aria-label='New router'] button[type=submit]")
            page.wait_for_selector("#rt-name[aria-invalid=true]")
            assert page.inner_text("#rt-name-error") == _reason(refused, "body.name")
            page.fill("#rt-name", "web-router")
            page.click("form[aria-label='New router'] button[type=submit]")
            assert "no gateway" in page.wait_for_selector("tr[data-router=web-router]").inner_text()
            made = api.get("/v1/routers", params={"name": "web-router"}).json()["items"]
            assert [(r["external_network_id"], r["snat"]) for r in made] == [(None, True)]

        # another tenant: the network's and group's URLs are not found, the lists do not show them
        beta.login(cluster.tenants["beta"][0], PASSWORD, tenant="beta")
        beta.go(f"/networks/{net['id']}")
        assert beta.page.inner_text("main h1") == "Not found"
        assert "web-net" not in beta.main_text()
        beta.go(f"/security-groups/{group_id}")
        assert beta.page.inner_text("main h1") == "Not found"
        beta.go("/networks")
        assert "web-net" not in beta.main_text()
        assert alpha.errors == [] and beta.errors == []
    finally:
        alpha.close()
        beta.close()


def _confirm(page: Any, button: str) -> None:
    """Press a destroying button and confirm in its dialog."""
    page.click(button)
    page.click("dialog button.danger")
    page.wait_for_selector("dialog", state="detached")


def test_subnet_router_interface_and_floating_ip_actions(
    booting: tuple[str, str], cluster: Cluster, browser: Any
) -> None:
    """Add and delete a subnet; join it to a router, set and clear the gateway; allocate, associate,
    disassociate and release a floating IP; delete the router. Each checked in the API, and each
    refused input shows the API's reason next to its field."""
    admin = cluster.admin
    r = admin.post(
        "/v1/networks", json={"name": "public", "external": True, "project_id": default_project(admin)}
    )
    assert r.status_code == 201, r.text
    assert (
        admin.post(
            "/v1/subnets", json={"network": "public", "name": "public-v4", "cidr": "203.0.113.0/24"}
        ).status_code
        == 201
    )
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        with _member(cluster, "alpha") as api:
            net = api.post("/v1/networks", json={"name": "app-net"}).json()
            rt = api.post("/v1/routers", json={"name": "app-router"}).json()
            bad = api.post(
                "/v1/subnets", json={"network": net["id"], "name": "app-v4", "cidr": "10.30.0.0/33"}
            )
            b.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
            b.go(f"/networks/{net['id']}")
            page.fill("#nsub-name", "app-v4")
            page.fill("#nsub-cidr", "10.30.0.0/33")
            page.click("form[aria-label='Add a subnet'] button[type=submit]")
            page.wait_for_selector("#nsub-cidr[aria-invalid=true]")
            assert page.inner_text("#nsub-cidr-error") == _reason(bad, "body.cidr")
            page.fill("#nsub-cidr", "10.30.0.0/24")
            page.click("form[aria-label='Add a subnet'] button[type=submit]")
            page.wait_for_selector("tr[data-subnet=app-v4]:has-text('10.30.0.1')")
            page.fill("#nsub-name", "spare")
            page.fill("#nsub-cidr", "10.31.0.0/24")
            page.click("form[aria-label='Add a subnet'] button[type=submit]")
            page.wait_for_selector("tr[data-subnet=spare]")
            _confirm(page, "tr[data-subnet=spare] button:text-is('Delete')")
            page.wait_for_selector("tr[data-subnet=spare]", state="detached")
            subnets = api.get("/v1/subnets", params={"network_id": net["id"]}).json()["items"]
            assert [(x["name"], x["cidr"], x["gateway_ip"]) for x in subnets] == [
                ("app-v4", "10.30.0.0/24", "10.30.0.1")
            ]

            # a VM with a port on the new subnet (associating needs only its port: no wait for the boot)
            r = api.post("/v1/vms", json={"name": "alpha-web", "image": "test-guest", "flavor": "tiny",
                                          "networks": [{"network": "app-net"}]})  # fmt: skip
            assert r.status_code == 202, r.text
            web_vm = r.json()["vm"]["id"]
            port = api.get("/v1/ports", params={"vm_id": web_vm}).json()["items"][0]

            b.go("/routers")
            b.follow("tr[data-router=app-router] a")
            page.select_option("#rif-subnet", subnets[0]["id"])
            page.click("form[aria-label='Add an interface'] button[type=submit]")
            page.wait_for_selector("tr[data-interface='10.30.0.1']")
            joined = api.get(f"/v1/routers/{rt['id']}").json()["interfaces"]
            assert [(i["ip"], i["network_id"]) for i in joined] == [("10.30.0.1", net["id"])]
            again = api.post(f"/v1/routers/{rt['id']}/interfaces", json={"subnet": subnets[0]["id"]})
            page.click("form[aria-label='Add an interface'] button[type=submit]")
            page.wait_for_selector("#rif-subnet[aria-invalid=true]")
            assert page.inner_text("#rif-subnet-error") == _reason(again, "body.subnet")

            # a floating IP: allocated, then refused for the VM's port while the router has no gateway
            b.go("/floating-ips")
            page.click("form[aria-label='Allocate a floating IP'] button[type=submit]")
            fip = page.wait_for_selector("tr[data-fip] code").inner_text()
            made = api.get("/v1/floating-ips").json()["items"]
            assert [(f["ip"], f["port_id"]) for f in made] == [(fip, None)]
            refused = api.patch(f"/v1/floating-ips/{made[0]['id']}", json={"port": port["id"]})
            page.select_option("#fipa-port", port["id"])
            page.click("form[aria-label='Associate a floating IP'] button[type=submit]")
            page.wait_for_selector("#fipa-port[aria-invalid=true]")
            assert page.inner_text("#fipa-port-error") == _reason(refused, "body.port")

            b.go(f"/routers/{rt['id']}")
            page.click("form[aria-label='Set the gateway'] button[type=submit]")
            page.wait_for_selector("[data-testid=router-details]:has-text('203.0.113.')")
            assert (
                api.get(f"/v1/routers/{rt['id']}").json()["external_network_id"]
                == admin.get("/v1/networks", params={"name": "public"}).json()["items"][0]["id"]
            )

            b.go("/floating-ips")
            page.select_option("#fipa-port", port["id"])
            page.click("form[aria-label='Associate a floating IP'] button[type=submit]")
            page.wait_for_selector(f"tr[data-fip='{fip}'] .badge[data-state=associated]")
            got = api.get(f"/v1/floating-ips/{made[0]['id']}").json()
            assert (got["port_id"], got["fixed_ip"]) == (port["id"], port["fixed_ips"][0]["ip"])
            assert "alpha-web" in page.inner_text(f"tr[data-fip='{fip}']")
            _confirm(page, f"tr[data-fip='{fip}'] button:text-is('Disassociate')")
            page.wait_for_selector(f"tr[data-fip='{fip}'] .badge[data-state=unassociated]")
            assert api.get(f"/v1/floating-ips/{made[0]['id']}").json()["port_id"] is None
            _confirm(page, f"tr[data-fip='{fip}'] button:text-is('Release')")
            page.wait_for_selector(f"tr[data-fip='{fip}']", state="detached")
            assert api.get("/v1/floating-ips").json()["items"] == []

            b.go(f"/routers/{rt['id']}")
            _confirm(page, "main button:text-is('Clear gateway')")
            page.wait_for_selector("[data-testid=router-details]:has-text('no gateway')")
            assert api.get(f"/v1/routers/{rt['id']}").json()["external_network_id"] is None
            _confirm(page, "tr[data-interface='10.30.0.1'] button:text-is('Remove')")
            page.wait_for_selector("tr[data-interface='10.30.0.1']", state="detached")
            assert api.get(f"/v1/routers/{rt['id']}").json()["interfaces"] == []
            _confirm(page, "main .page-head button:text-is('Delete')")
            page.wait_for_url("**/#/routers")
            assert api.get(f"/v1/routers/{rt['id']}").status_code == 404
            assert api.delete(f"/v1/vms/{web_vm}").status_code == 202
        assert b.errors == [], b.errors
    finally:
        b.close()


def _local(page: Any, when: datetime) -> str:
    """``when`` as a datetime-local input's value in the browser's time zone."""
    js = "d => { const x = new Date(d); return new Date(x - x.getTimezoneOffset() * 60000)"
    js += ".toISOString().slice(0, 16); }"
    return str(page.evaluate(js, when.isoformat()))


def _rpo_missed(api: httpx.Client) -> bool:
    """The app-dr runbook's first VM is past its RPO target, as the DR page will show it."""
    runbooks = api.get("/v1/dr/runbooks", params={"name": "app-dr"}).json()["items"]
    if not runbooks:
        return False
    # the runbook itself, as the page reads it: the list leaves ``rpo`` empty, and all() over
    # nothing was true at once, so the page opened while the backup was younger than its target
    steps = api.get(f"/v1/dr/runbooks/{runbooks[0]['id']}").json()["rpo"]
    return bool(steps) and all(not step["rpo_met"] for step in steps)


def test_quota_backups_dr_and_reservations(cluster: Cluster, browser: Any, areas: Areas) -> None:
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        with _member(cluster, "alpha") as api:
            b.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
            # the tenant's vCPU bar carries the API's figures (the booted VM is counted)
            b.go("/quota")
            mine = {r["resource"]: r for r in api.get("/v1/quota").json()["resources"]}
            assert mine["vcpus"]["used"] >= 1 and mine["vcpus"]["effective_limit"] == 8
            for resource in ("vcpus", "ram_mb", "vms"):
                bar = page.wait_for_selector(f"[data-node='{areas.tenant_node}'] [data-resource={resource}]")
                used, limit = mine[resource]["used"], mine[resource]["effective_limit"]
                assert (bar.get_attribute("data-used"), bar.get_attribute("data-limit")) == (
                    str(used),
                    str(limit),
                )
                assert f"{used}" in bar.inner_text() and f"/ {limit}" in bar.inner_text()
                now = bar.query_selector("[role=progressbar]").get_attribute("aria-valuenow")
                assert now == str(int(100 * used / limit + 0.5))  # rounded half up, as toFixed(0)

            # the sub-project nests under its project, with its own (lower) vCPU limit
            sub = page.wait_for_selector(
                f"li:has(> [data-node='{areas.project_node}']) > ul [data-node='{areas.sub_node}']"
            )
            assert sub.query_selector("[data-resource=vcpus]").get_attribute("data-limit") == "2"

            # the month's usage report: the API's rows and total, and the same as CSV
            report = api.get("/v1/usage").json()
            assert report["items"] and report["total_cost"] > 0
            b.go("/usage")
            prices = api.get("/v1/prices")  # amounts carry the price list's currency when readable
            items = prices.json()["items"] if prices.status_code == 200 else []
            cur = f" {items[0]['currency']}" if items else ""
            assert page.inner_text("[data-testid=usage-total]") == f"Total {report['total_cost']:.2f}{cur}"
            assert len(page.query_selector_all("main tr[data-usage]")) == len(report["items"])
            csv = page.evaluate(
                "async () => (await fetch(document.querySelector('a[download]').href)).text()"
            )
            lines = csv.strip().split("\n")
            assert (
                lines[0] == "project,resource,quantity,unit,cost" and len(lines) == len(report["items"]) + 2
            )
            assert lines[-1].endswith(str(report["total_cost"]))

            # the backup, with its verify result, on the Backups page and on the VM's page
            snap = api.get(f"/v1/backups/{areas.backup_id}").json()
            assert snap["state"] == "available" and snap["verify_result"]["ok"] is True
            assert snap["verify_result"]["chunks_checked"] >= 1
            b.go("/backups")
            row = page.wait_for_selector(f"tr[data-backup='{areas.backup_id}']")
            text = row.inner_text()
            assert "alpha-app" in text and "available" in text
            assert f"verified {snap['verify_result']['chunks_checked']} chunks" in text
            # the disks it holds: the root disk and the attached volume, by id, each with its size
            (vol,) = [d for d in snap["disks"] if d["volume_id"]]
            disks = row.query_selector("[data-testid=backup-disks]")
            assert disks is not None
            lines = disks.inner_text().split("\n")
            assert (
                lines[0].startswith("root disk vda · ") and lines[1] == f"volume {vol['volume_id']} · 1.0 GiB"
            ), lines
            # verify again from the page: the row follows the new result without a reload
            page.click(f"tr[data-backup='{areas.backup_id}'] button:text-is('Verify')")
            old = snap["verify_result"]["at"]
            page.wait_for_selector(
                f"tr[data-backup='{areas.backup_id}'] [data-testid=verify]:not([data-at='{old}'])",
                timeout=60_000,
            )
            assert api.get(f"/v1/backups/{areas.backup_id}").json()["verify_result"]["at"] != old
            # "Back up now": a second (incremental) backup appears in the list as it completes
            page.select_option("#backup-vm", areas.vm_id)
            page.click("main button:text-is('Back up')")
            page.wait_for_selector(
                f"tr[data-backup]:not([data-backup='{areas.backup_id}']) .badge[data-state=available]",
                timeout=120_000,
            )
            both = api.get("/v1/backups", params={"vm_id": areas.vm_id}).json()["items"]
            assert [x["state"] for x in both] == ["available", "available"]
            b.go(f"/vms/{areas.vm_id}")
            page.wait_for_selector(f"tr[data-backup='{areas.backup_id}'] [data-testid=verify]")
            assert "No network ports." in b.main_text()

            # the schedule and the runbook: its RPO against a 1 s target is missed, in red
            b.go("/backup-policies")
            assert "nightly" in b.main_text() and "alpha-app" in b.main_text()
            # the backup just taken is younger than the 1 s target for a moment: the page shows the
            # state of when it is drawn, so it is opened once the API says the target is missed
            deadline = time.monotonic() + 30
            while not _rpo_missed(api):
                assert time.monotonic() < deadline, "the runbook's RPO never went past its 1 s target"
                time.sleep(0.2)
            b.go("/dr")
            missed = page.wait_for_selector(
                "[data-runbook=app-dr] [data-testid=rpo] .badge[data-state=missed]"
            )
            assert "bad" in (missed.get_attribute("class") or "")
            assert "never" in page.inner_text("[data-runbook=app-dr] [data-testid=last-drill]")

            b.go("/routers")
            assert "no gateway" in page.inner_text("tr[data-router=edge]")

            # a reservation booked in the form, then cancelled
            b.go("/reservations")
            start = datetime.now(UTC) + timedelta(days=1)
            page.fill("#res-name", "launch-day")
            page.fill("#res-starts_at", _local(page, start))
            page.fill("#res-ends_at", _local(page, start - timedelta(hours=1)))  # before the start
            page.click("form[aria-label='New reservation'] button[type=submit]")
            page.wait_for_selector("#res-ends_at[aria-invalid=true]")
            assert page.inner_text("#res-ends_at-error") == "must be after starts_at"
            page.fill("#res-ends_at", _local(page, start + timedelta(hours=2)))
            page.click("form[aria-label='New reservation'] button[type=submit]")
            page.wait_for_selector("tr[data-reservation=launch-day]:has-text('pending')")
            booked = api.get("/v1/reservations").json()["items"]
            assert [(x["name"], x["vcpus"], x["status"]) for x in booked] == [("launch-day", 1, "pending")]
            page.click("tr[data-reservation=launch-day] button:text-is('Cancel')")
            page.click("dialog button.danger")
            page.wait_for_selector("tr[data-reservation=launch-day]:has-text('cancelled')")
            assert api.get("/v1/reservations").json()["items"][0]["status"] == "cancelled"
        assert b.errors == [], b.errors
    finally:
        b.close()


def _schedule_form(cluster: Cluster, b: Browser, areas: Areas) -> None:
    """A backup schedule made in the form (a tenant admin's or an admin's): first refused by name."""
    page = b.page
    b.go("/backup-policies")
    page.fill("#pol-name", "Weekly!")
    page.click("form[aria-label='New schedule'] button[type=submit]")
    page.wait_for_selector("#pol-name[aria-invalid=true]")
    refused = cluster.admin.post("/v1/backup-policies", json={"name": "Weekly!", "vm": areas.vm_id})
    assert page.inner_text("#pol-name-error") == _reason(refused, "body.name")
    page.fill("#pol-name", "weekly")
    page.select_option("#pol-vm", areas.vm_id)
    page.select_option("#pol-interval", "604800")
    page.fill("#pol-keep", "4")
    page.click("form[aria-label='New schedule'] button[type=submit]")
    row = page.wait_for_selector("tr[data-policy=weekly]")
    assert "alpha-app" in row.inner_text() and "last 4" in row.inner_text() and "7.0 d" in row.inner_text()
    made = cluster.admin.get("/v1/backup-policies", params={"name": "weekly"}).json()["items"][0]
    assert (made["vm_id"], made["interval_s"], made["retention"]) == (areas.vm_id, 604800, {"keep_last": 4})


def _limit_form(cluster: Cluster, b: Browser, areas: Areas) -> None:
    """A sub-project's limit set in the form: above its tenant's it is refused, and says why."""
    page = b.page
    b.go("/quota")
    refused = cluster.admin.patch(f"/v1/quota/nodes/{areas.sub_node}", json={"limits": {"vcpus": 100}})
    page.select_option("#lim-node", areas.sub_node)
    page.select_option("#lim-resource", "vcpus")
    page.fill("#lim-value", "100")
    page.click("form[aria-label='Set a limit'] button[type=submit]")
    page.wait_for_selector("#lim-value[aria-invalid=true]")
    assert page.inner_text("#lim-value-error") == _reason(refused, "body.limits.vcpus")
    page.fill("#lim-value", "3")
    page.click("form[aria-label='Set a limit'] button[type=submit]")
    page.wait_for_selector(f"[data-node='{areas.sub_node}'] [data-resource=vcpus][data-limit='3']")
    node = cluster.admin.get("/v1/quota", params={"node_id": areas.sub_node}).json()
    assert next(r["limit"] for r in node["resources"] if r["resource"] == "vcpus") == 3


def test_new_pages_phone_and_desktop_light_and_dark(cluster: Cluster, browser: Any, areas: Areas) -> None:
    net = cluster.admin.get("/v1/networks", params={"name": "web-net"}).json()["items"]
    groups = cluster.admin.get("/v1/security-groups").json()["items"]
    routes = ["/networks", "/security-groups", "/routers", "/floating-ips"]
    routes += [f"/networks/{net[0]['id']}"] if net else []  # made by the first test of the module
    routes += [f"/security-groups/{groups[0]['id']}"] if groups else []
    edge = cluster.admin.get("/v1/routers", params={"name": "edge"}).json()["items"][0]
    routes += [f"/routers/{edge['id']}"]
    routes += ["/quota", "/reservations", "/usage", "/backups", "/backup-policies", "/dr"]
    problems: list[str] = []
    for size, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        for scheme in ("light", "dark"):
            b = Browser(browser, cluster.server.url, viewport, scheme)
            try:
                b.login("admin", cluster.server.admin_password)
                nav = (
                    b.page.inner_text("nav#sidenav")
                    if size == "desktop"
                    else b.page.evaluate("document.querySelector('nav#sidenav').textContent")
                )
                missing = [p for p in NEW_PAGES if p not in nav]
                assert missing == [], f"not in the menu: {missing}"
                for route in routes:
                    b.go(route)
                    name = route.strip("/").split("/")[0] + ("-detail" if route.count("/") > 1 else "")
                    problems += page_problems(b, route, name, size, scheme)
                if size == "desktop" and scheme == "light":
                    _schedule_form(cluster, b, areas)
                    _limit_form(cluster, b, areas)
                if size == "phone" and scheme == "light":
                    # keyboard only: open the menu, Tab to a new page's link, follow it with Enter
                    b.page.focus("button.menu-toggle")
                    b.page.keyboard.press("Enter")
                    for _ in range(20):
                        b.page.keyboard.press("Tab")
                        if b.page.evaluate("document.activeElement.textContent") == "Networks":
                            break
                    b.page.evaluate("delete document.querySelector('main').dataset.ready")
                    b.page.keyboard.press("Enter")
                    b.page.wait_for_url("**/#/networks")
                    b.ready()
                    assert b.page.inner_text("main h1") == "Networks"
                assert b.errors == [], b.errors
            finally:
                b.close()
    assert problems == []


def test_runbook_form_dry_run_budget_and_price(cluster: Cluster, browser: Any, areas: Areas) -> None:
    """An admin makes a runbook in the form (refused first, by field), starts its dry run from the
    page and follows the task to succeeded; a failover asked for and cancelled starts nothing; a
    price and a budget set in their forms (refused first) are what the API then gives."""
    admin = cluster.admin
    # a replicated backup and a recovery group, what a dry run restores from and into; a target of
    # its own, so the other tests' backups keep their only (default) target until now
    for name, extra in (("site-b", {}), ("dr-src", {"replicate_to": "site-b", "replicate_every_s": 1})):
        config = {"path": str(cluster.server.state_dir / f"bkt-{name}")}
        r = admin.post("/v1/backup-targets", json={"name": name, "type": "local", "config": config, **extra})
        assert r.status_code == 201, r.text
    host = admin.get("/v1/hosts").json()["items"][0]["name"]
    assert admin.post("/v1/aggregates", json={"name": "recovery", "hosts": [host]}).status_code == 201
    r = admin.post("/v1/backups", json={"vm": areas.vm_id, "target": "dr-src"})
    assert r.status_code == 202, r.text
    backup_id = r.json()["backup"]["id"]
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login("admin", cluster.server.admin_password)
        b.go("/dr")
        project = cluster.tenants["alpha"][1]
        page.select_option("#rb-project", project)
        page.fill("#rb-name", "Web DR")  # a bad name and no VM: both refused, each by its field
        page.select_option("#rb-group", "recovery")
        page.click("form[aria-label='New runbook'] button[type=submit]")
        page.wait_for_selector("#rb-steps[aria-invalid=true]")
        refused = admin.post("/v1/dr/runbooks", json={"name": "Web DR", "project_id": project, "steps": []})
        assert page.inner_text("#rb-name-error") == _reason(refused, "body.name")
        assert page.inner_text("#rb-steps-error") == _reason(refused, "body.steps")
        page.fill("#rb-name", "web-dr")
        page.select_option("#rb-steps", areas.vm_id)
        page.click("form[aria-label='New runbook'] button:text-is('Add VM')")
        page.wait_for_selector(f"[data-testid=rb-order] li[data-vm='{areas.vm_id}']")
        page.fill("#rb-rpo", "600")
        page.click("form[aria-label='New runbook'] button[type=submit]")
        page.wait_for_selector("[data-runbook=web-dr]")
        made = admin.get("/v1/dr/runbooks", params={"name": "web-dr"}).json()["items"]
        group = admin.get("/v1/aggregates").json()["items"][0]["id"]
        assert [([st["vm"] for st in x["steps"]], x["recovery_group"], x["rpo_target_s"]) for x in made] == [
            ([areas.vm_id], group, 600)
        ]
        runbook = made[0]

        # a failover asked for and cancelled: nothing starts
        page.click("[data-runbook=web-dr] button:text-is('Fail over')")
        page.click("dialog button:text-is('Cancel')")
        assert admin.get("/v1/tasks", params={"resource_id": runbook["id"]}).json()["items"] == []

        assert wait_task(admin, r.json()["task_id"], 300)["state"] == "succeeded"
        deadline = time.monotonic() + 60
        while not admin.get(f"/v1/backups/{backup_id}").json()["replicated_at"]:
            assert time.monotonic() < deadline, admin.get("/v1/backup-targets").text
            time.sleep(0.5)
        page.click("[data-runbook=web-dr] button:text-is('Dry run')")
        page.click("dialog button.primary")
        run = page.wait_for_selector("[data-runbook=web-dr] [data-testid=run]")
        task_id = run.get_attribute("data-task")
        page.wait_for_selector(
            "[data-runbook=web-dr] [data-testid=run]:is([data-state=succeeded], [data-state=failed])",
            timeout=240_000,
        )
        task = admin.get(f"/v1/tasks/{task_id}").json()
        assert (task["kind"], task["state"]) == ("dr.dry_run", "succeeded"), task
        assert page.get_attribute("[data-runbook=web-dr] [data-testid=run]", "data-state") == "succeeded"
        page.wait_for_selector("[data-runbook=web-dr] [data-testid=last-test]:has-text('RTO')")

        # a price: a negative one refused next to its field, then set
        b.go("/usage")
        refused = admin.put("/v1/prices/ram_mb", json={"per_hour": -1})
        page.select_option("#price-resource", "ram_mb")
        page.fill("#price-per_hour", "-1")
        page.click("form[aria-label='Set a price'] button[type=submit]")
        page.wait_for_selector("#price-per_hour[aria-invalid=true]")
        assert page.inner_text("#price-per_hour-error") == _reason(refused, "body.per_hour")
        page.fill("#price-per_hour", "0.001")
        page.click("form[aria-label='Set a price'] button[type=submit]")
        page.wait_for_selector("tr[data-price=ram_mb]:has-text('0.001')")
        prices = {p["resource"]: p["per_hour"] for p in admin.get("/v1/prices").json()["items"]}
        assert prices["ram_mb"] == 0.001

        # a budget for tenant alpha
        tenant_id = admin.get("/v1/tenants", params={"name": "alpha"}).json()["items"][0]["id"]
        refused = admin.put("/v1/budgets", json={"tenant_id": tenant_id, "amount": -5})
        page.select_option("#bud-scope", f"tenant:{tenant_id}")
        page.fill("#bud-amount", "-5")
        page.click("form[aria-label='Set a budget'] button[type=submit]")
        page.wait_for_selector("#bud-amount[aria-invalid=true]")
        assert page.inner_text("#bud-amount-error") == _reason(refused, "body.amount")
        page.fill("#bud-amount", "100")
        page.click("form[aria-label='Set a budget'] button[type=submit]")
        page.wait_for_selector("tr[data-budget][data-month='']:has-text('100.00')")
        budgets = admin.get("/v1/budgets").json()["items"]
        assert [(x["tenant_id"], x["month"], x["amount"]) for x in budgets] == [(tenant_id, None, 100.0)]
        assert "of a budget of 100.00" in b.main_text()  # the report above follows
        assert b.errors == [], b.errors
    finally:
        b.close()


def test_instant_restore_from_the_backups_page(cluster: Cluster, browser: Any, areas: Areas) -> None:
    """The restore dialog's Instant option: the new VM boots from the backup and its disk is copied in."""
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
        b.go("/backups")
        page.click(f"tr[data-backup='{areas.backup_id}'] button:text-is('Restore')")
        page.fill("#restore-name", "alpha-instant")
        page.check("#restore-instant")
        page.click("dialog button.primary")
        page.wait_for_selector("dialog", state="detached")
        vm_link = page.wait_for_selector("#toasts a")
        assert "Booting from the backup as" in str(page.inner_text("#toasts"))
        vm_id = str(vm_link.get_attribute("href")).rpartition("/")[2]
    finally:
        b.close()
    with _member(cluster, "alpha") as api:
        tasks = api.get("/v1/tasks", params={"resource_id": vm_id}).json()["items"]
        assert [t["kind"] for t in tasks] == ["backup.restore_instant"], tasks
        done = wait_task(api, tasks[0]["id"], 300)
        assert done["state"] == "succeeded", done["error"]
        vm = api.get(f"/v1/vms/{vm_id}").json()
        assert vm["name"] == "alpha-instant" and vm["state"] == "running" and vm["task_state"] is None, vm
        # the backup's volume was written into a new volume of the new VM before it booted
        (vol,) = api.get("/v1/volumes", params={"vm_id": vm_id}).json()["items"]
        assert vol["status"] == "in-use" and vol["source_volume_id"], vol
        r = api.delete(f"/v1/vms/{vm_id}")
        assert r.status_code == 202 and wait_task(api, r.json()["task_id"], 120)["state"] == "succeeded"


def test_backup_targets_created_edited_and_deleted(cluster: Cluster, browser: Any, areas: Areas) -> None:
    """Issue 17 item 7: an admin makes a target in the form, renames one (a bad name refused under
    its field only), is refused a moved path, deletes a target holding a backup (refused, the API's
    reason shown), then deletes it with its backup, and an empty one plainly."""
    admin = cluster.admin
    spare = {"path": str(cluster.server.state_dir / "bkt-spare")}
    r = admin.post("/v1/backup-targets", json={"name": "spare", "type": "local", "config": spare})
    assert r.status_code == 201, r.text
    r = admin.post("/v1/backups", json={"vm": areas.vm_id, "target": "spare"})
    assert r.status_code == 202, r.text
    backup_id = r.json()["backup"]["id"]
    assert wait_task(admin, r.json()["task_id"], 300)["state"] == "succeeded"
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login("admin", cluster.server.admin_password)
        # with several targets, "Back up now" asks which one
        b.go("/backups")
        assert "spare" in page.eval_on_selector_all("#backup-target option", "os => os.map((o) => o.value)")
        b.go("/backup-targets")
        page.wait_for_selector("tr[data-target=spare]")
        assert "path=" + spare["path"] in page.inner_text("tr[data-target=spare]")
        # a new one from the form: the kind's settings are named in the hint
        page.fill("#bt-name", "extra")
        assert "path=" in page.inner_text("#bt-config-hint")
        page.fill("#bt-config", f"path={cluster.server.state_dir / 'bkt-extra'}")
        page.click("form[aria-label='New backup target'] button[type=submit]")
        page.wait_for_selector("tr[data-target=extra]")

        page.click("tr[data-target=spare] button:text-is('Edit')")
        page.fill("#bte-name", "Spare!")
        page.click("form[aria-label='Edit backup target spare'] button[type=submit]")
        page.wait_for_selector("#bte-name[aria-invalid=true]")
        reason = _reason(admin.patch("/v1/backup-targets/spare", json={"name": "Spare!"}), "body.name")
        assert page.inner_text("#bte-name-error") == reason and page.inner_text("main").count(reason) == 1
        page.fill("#bte-name", "spare-2")
        page.fill("#bte-config", "path=/var/tmp/elsewhere")
        page.click("form[aria-label='Edit backup target spare'] button[type=submit]")
        page.wait_for_selector("#bte-config[aria-invalid=true]")
        assert page.inner_text("#bte-config-error") == "a local target's path cannot change"
        page.fill("#bte-config", f"path={spare['path']}")
        page.click("form[aria-label='Edit backup target spare'] button[type=submit]")
        page.wait_for_selector("tr[data-target=spare-2]")
        assert admin.get("/v1/backup-targets/spare-2").json()["config"] == spare

        _confirm(page, "tr[data-target=spare-2] button:text-is('Delete')")
        problem = page.wait_for_selector("[data-testid=target-problem] .alert")
        assert "1 backup stored on it" in problem.inner_text()
        assert admin.get(f"/v1/backups/{backup_id}").status_code == 200
        page.click("tr[data-target=spare-2] button:text-is('Delete')")
        page.check("#bt-force")
        page.click("dialog button.danger")
        page.wait_for_selector("tr[data-target=spare-2]", state="detached")
        assert admin.get("/v1/backup-targets/spare-2").status_code == 404
        assert admin.get(f"/v1/backups/{backup_id}").status_code == 404
        _confirm(page, "tr[data-target=extra] button:text-is('Delete')")
        page.wait_for_selector("tr[data-target=extra]", state="detached")
        problems = page_problems(b, "/backup-targets", "backup-targets", "desktop", "light")
        assert problems == [] and b.errors == [], (problems, b.errors)
    finally:
        b.close()


def test_a_volume_backup_restores_as_a_new_volume_from_the_backups_page(
    cluster: Cluster, browser: Any, areas: Areas
) -> None:
    """A detached volume's own backup is listed by its volume; its restore dialog makes a new volume."""
    with _member(cluster, "alpha") as api:
        body = {"name": "alpha-spare", "size_gb": 1, "project_id": cluster.tenants["alpha"][1]}
        r = api.post("/v1/volumes", json=body)
        assert r.status_code == 202 and wait_task(api, r.json()["task_id"], 120)["state"] == "succeeded"
        r = api.post("/v1/backups", json={"volume": "alpha-spare", "target": "local"})
        assert r.status_code == 202, r.text
        backup_id = r.json()["backup"]["id"]
        assert wait_task(api, r.json()["task_id"], 120)["state"] == "succeeded"
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
        b.go("/backups")
        row = page.wait_for_selector(f"tr[data-backup='{backup_id}']")
        assert "volume alpha-spare" in row.inner_text()
        page.click(f"tr[data-backup='{backup_id}'] button:text-is('Restore')")
        assert page.inner_text("dialog label[for=restore-name]") == "New volume name"
        page.fill("#restore-name", "alpha-spare-copy")
        page.click("dialog button.primary")
        page.wait_for_selector("dialog", state="detached")
        page.wait_for_selector("#toasts a")
        assert "Restoring into volume" in str(page.inner_text("#toasts"))
    finally:
        b.close()
    with _member(cluster, "alpha") as api:
        (made,) = api.get("/v1/volumes", params={"name": "alpha-spare-copy"}).json()["items"]
        tasks = api.get("/v1/tasks", params={"resource_id": made["id"]}).json()["items"]
        assert [t["kind"] for t in tasks] == ["backup.restore_volume"], tasks
        assert wait_task(api, tasks[0]["id"], 120)["state"] == "succeeded"
        assert api.get(f"/v1/volumes/{made['id']}").json()["status"] == "available"

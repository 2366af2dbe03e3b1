"""The Volumes page's depth in Chromium, against a real node: a volume made with an IOPS limit shows
it, its limits change in a dialog, a snapshot is taken from its row and listed, and a new volume is
made from that snapshot; each step arrives over the event stream (no reload). The same server
carries issue 17's list checks: times, sorting, copy and search; the VM list's API order, row
menus and bulk actions; keyboard shortcuts and a boot volume in the VM create form."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from tests.e2e.browser import Browser, page_problems
from tests.e2e.conftest import DESKTOP, PASSWORD, VIEWS, Cluster


def test_limits_and_snapshots_in_the_browser(cluster: Cluster, browser: Any) -> None:
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
        b.go("/volumes")
        page.fill("#vol-name", "web-limited")
        page.fill("#vol-size", "1")
        page.fill("#vol-iops", "250")
        page.click("form[aria-label='New volume'] button[type=submit]")
        row = "tr[data-volume=web-limited]"
        page.wait_for_selector(f"{row} .badge[data-state=available]", timeout=30_000)
        assert page.inner_text(f"{row} [data-limits]") == "250 IOPS"

        # the limits dialog: a burst over the limit, and a refusal named by the API shown as a toast
        page.click(f"{row} button:text-is('Limits')")
        page.fill("dialog #lim-iops_total_max", "1000")
        page.fill("dialog #lim-iops_total_max_length", "10")
        page.fill("dialog #lim-bps_write", str(8 << 20))
        page.click("dialog button.primary")
        page.wait_for_selector(f"{row} [data-limits]:text('burst 1000 for 10 s')", timeout=30_000)
        assert "8 MiB/s write" in page.inner_text(f"{row} [data-limits]")

        page.click(f"{row} button:text-is('Snapshot')")
        page.fill("dialog #snap-name", "web-snap")
        page.click("dialog button.primary")
        snap = "[data-testid=volume-snapshots] tr[data-snapshot=web-snap]"
        page.wait_for_selector(f"{snap} .badge[data-state=available]", timeout=30_000)
        assert "web-limited" in page.inner_text(snap)

        page.click(f"{snap} button:text-is('New volume')")
        page.fill("dialog #from-snap-name", "web-restored")
        page.click("dialog button.primary")
        page.wait_for_selector("tr[data-volume=web-restored] .badge[data-state=available]", timeout=30_000)
        with cluster.server.client(
            cluster.server.token(cluster.tenants["alpha"][0], PASSWORD, "alpha")
        ) as api:
            made = api.get("/v1/volumes", params={"name": "web-restored"}).json()["items"][0]
            listed = api.get("/v1/volume-snapshots", params={"name": "web-snap"}).json()["items"]
            assert made["source_snapshot_id"] == listed[0]["id"]
        assert b.errors == [], b.errors
    finally:
        b.close()


def _reason(resp: Any, field: str) -> str:
    return str(next(e["reason"] for e in resp.json()["errors"] if e["field"] == field))


SCHEMA_READ = "performance.getEntriesByName(location.origin + '/openapi.json').length > 0"
#: (page, its form, the name control, the operation it submits to, the rest of a valid body)
NAME_FORMS: tuple[tuple[str, str, str, str, dict[str, Any]], ...] = (
    ("/vms/new", "form.card", "#f-name", "/v1/vms", {"image": "test-guest", "flavor": "tiny"}),
    ("/volumes", "form[aria-label='New volume']", "#vol-name", "/v1/volumes", {"size_gb": 1}),
    ("/networks", "form[aria-label='New network']", "#net-name", "/v1/networks", {}),
)


def test_forms_refuse_a_bad_name_before_sending_in_the_apis_words(cluster: Cluster, browser: Any) -> None:
    """Issue 17: the dashboard checks a form against the OpenAPI schema before sending, with the
    API's own sentence (the schema's x-errors); a form the check lets through gets the server's answer."""
    user = cluster.tenants["alpha"][0]
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    sent: list[str] = []
    page.on("request", lambda r: sent.append(f"{r.method} {r.url}"))
    bad = "Bad_Name!"
    try:
        b.login(user, PASSWORD, tenant="alpha")
        with cluster.server.client(cluster.server.token(user, PASSWORD, "alpha")) as api:
            for route, form, control, path, rest in NAME_FORMS:
                refused = api.post(path, json={"name": bad, **rest})
                assert refused.status_code == 422, refused.text
                reason = _reason(refused, "body.name")
                b.go(route)
                # the schema is read once, when the form is built: wait for it, then count requests
                page.wait_for_function(SCHEMA_READ)
                if route == "/vms/new":
                    page.select_option("#f-image", "test-guest")
                    page.select_option("#f-flavor", "tiny")
                page.fill(control, bad)
                sent.clear()
                page.click(f"{form} button[type=submit]")
                page.wait_for_selector(f"{control}[aria-invalid=true]")
                assert page.inner_text(f"{control}-error") == reason, route
                assert page.inner_text("main").count(reason) == 1  # under the field only
                assert [s for s in sent if not s.startswith("GET ") or path in s] == [], sent

            # the network form's subnet step is checked before the network is made: nothing is sent
            refused = api.post("/v1/subnets", json={"network": "x", "name": bad, "cidr": "10.9.9.0/24"})
            assert refused.status_code == 422, refused.text
            page.fill("#net-name", "web-checked")  # still on /networks, the last of NAME_FORMS
            page.fill("#sub-cidr", "10.9.9.0/24")
            page.fill("#sub-name", bad)
            sent.clear()
            page.click("form[aria-label='New network'] button[type=submit]")
            page.wait_for_selector("#sub-name[aria-invalid=true]")
            assert page.inner_text("#sub-name-error") == _reason(refused, "body.name")
            assert [s for s in sent if not s.startswith("GET ") or "/v1/networks" in s] == [], sent
            assert api.get("/v1/networks", params={"name": "web-checked"}).json()["items"] == []
            page.fill("#sub-name", "web-checked-sub")  # once right, both are made as before
            page.click("form[aria-label='New network'] button[type=submit]")
            page.wait_for_selector("tr[data-network=web-checked]:has-text('10.9.9.0/24')")

            # the server stays the authority: a name the schema allows but the project already has
            taken = api.post("/v1/volumes", json={"name": "web-taken", "size_gb": 1})
            assert taken.status_code in (201, 202), taken.text
            again = api.post("/v1/volumes", json={"name": "web-taken", "size_gb": 1})
            assert again.status_code == 409, again.text
            b.go("/volumes")
            page.fill("#vol-name", "web-taken")
            sent.clear()
            page.click("form[aria-label='New volume'] button[type=submit]")
            page.wait_for_selector("#vol-name[aria-invalid=true]")
            assert page.inner_text("#vol-name-error") == _reason(again, "body.name")
            assert any(s.startswith("POST ") and s.endswith("/v1/volumes") for s in sent), sent
        assert b.errors == [], b.errors
    finally:
        b.close()


def test_times_with_zone_sorting_copy_ids_and_search(cluster: Cluster, browser: Any) -> None:
    """Issue 17: in Tokyo a time reads "+09:00" with UTC in its tooltip, a column sorts both ways
    (by mouse and keyboard), the copy button puts a volume's id on the clipboard, and "/" focuses
    the search, which finds a VM by name and leads to its page."""
    username = cluster.tenants["alpha"][0]
    with cluster.server.client(cluster.server.token(username, PASSWORD, "alpha")) as api:
        vols = {
            n: api.post("/v1/volumes", json={"name": n, "size_gb": 1}).json()["volume"]
            for n in ("aa-sort", "zz-sort")
        }
        r = api.post("/v1/vms", json={"name": "findme", "image": "test-guest", "flavor": "tiny"})
        assert r.status_code == 202, r.text
        vm_id = r.json()["vm"]["id"]
    b = Browser(browser, cluster.server.url, DESKTOP, timezone="Asia/Tokyo")
    b.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=cluster.server.url)
    page = b.page
    try:
        b.login(username, PASSWORD, tenant="alpha")
        b.go("/volumes")
        row = "tr[data-volume=aa-sort]"
        page.wait_for_selector(row)
        created = datetime.fromisoformat(vols["aa-sort"]["created_at"])
        tokyo = created.astimezone(timezone(timedelta(hours=9)))
        shown = page.locator(f"{row} time").first
        assert shown.inner_text() == tokyo.strftime("%Y-%m-%d %H:%M +09:00")
        utc = created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert shown.get_attribute("title") == f"{utc} (UTC)"

        # sorting by name: ascending, then descending from the keyboard; aria-sort says which
        th = "table:has(tr[data-volume=aa-sort]) th:has(button:text-is('Name'))"
        order = "names => [...document.querySelectorAll('tr[data-volume]')].map(r => r.dataset.volume)"
        page.click(f"{th} button")
        assert page.get_attribute(th, "aria-sort") == "ascending"
        names = page.evaluate(order)
        assert names.index("aa-sort") < names.index("zz-sort") and names == sorted(names), names
        page.focus(f"{th} button")
        page.keyboard.press("Enter")
        assert page.get_attribute(th, "aria-sort") == "descending"
        assert page.evaluate(order) == sorted(names, reverse=True)

        page.click("tr[data-volume=zz-sort] button[aria-label='Copy id']")
        page.wait_for_selector(f".toast:text('Copied {vols['zz-sort']['id']}')")
        assert page.evaluate("navigator.clipboard.readText()") == vols["zz-sort"]["id"]

        # "/" focuses the search from anywhere outside a field; the VM is found and followed
        page.click("h1")
        page.keyboard.press("/")
        assert page.evaluate("document.activeElement.id") == "global-search"
        page.keyboard.type("findme")
        hit = "#global-search-results a[data-kind=vm]"
        page.wait_for_selector(hit)
        problems = page_problems(b, "/volumes", "search-open", "desktop", "light")
        b.follow(hit)
        assert page.url.endswith(f"#/vms/{vm_id}")
        assert "findme" in page.inner_text("h1")
        assert b.errors == [], b.errors
    finally:
        b.close()
    for size, viewport, scheme in VIEWS:
        v = Browser(browser, cluster.server.url, viewport, scheme)
        try:
            v.login(username, PASSWORD, tenant="alpha")
            for route in ("/volumes", "/vms"):
                v.go(route)
                problems += page_problems(v, route, f"lists{route.replace('/', '-')}", size, scheme)
        finally:
            v.close()
    assert problems == [], problems


BOOT_S = 240_000
ROWS = "names => [...document.querySelectorAll('tr[data-vm]')].map(r => r.dataset.vm)"


def _booted(api: Any, vm_id: str) -> None:
    """Wait for the guest's boot marker: a power button pressed before its acpid runs is lost, and
    the stop would wait out its 60 s before forcing."""
    deadline = time.monotonic() + BOOT_S / 1000
    while "NOVACRON-GUEST-UP" not in api.get(f"/v1/vms/{vm_id}/console-log").text:
        assert time.monotonic() < deadline, f"{vm_id} never booted"
        time.sleep(0.5)


def _menu(page: Any, vm: str) -> set[str]:
    """The actions a VM's row menu offers (opened, read, closed again)."""
    page.click(f"tr[data-vm={vm}] details.row-menu summary")
    offered = set(
        page.eval_on_selector_all(
            f"tr[data-vm={vm}] details.row-menu [data-action]", "bs => bs.map(b => b.dataset.action)"
        )
    )
    page.click(f"tr[data-vm={vm}] details.row-menu summary")
    return offered


def test_vm_list_api_order_row_menus_and_bulk_actions(cluster: Cluster, browser: Any) -> None:
    """Issue 17: a header orders the VM list by the API (one row a page, so what shows after a click
    was never loaded before), image and project read by name, a row menu offers only what the VM's
    state allows, and a bulk stop, start and reboot, then a bulk delete (one confirmation naming the
    count) change the rows, with each VM's outcome listed."""
    username = cluster.tenants["alpha"][0]
    with cluster.server.client(cluster.server.token(username, PASSWORD, "alpha")) as api:
        ids = {}
        for n in ("aaa-bulk", "zzz-bulk"):
            r = api.post("/v1/vms", json={"name": n, "image": "test-guest", "flavor": "tiny"})
            assert r.status_code == 202, r.text
            ids[n] = r.json()["vm"]["id"]

        def api_order(sort: str, limit: int) -> list[str]:
            return [
                v["name"] for v in api.get("/v1/vms", params={"sort": sort, "limit": limit}).json()["items"]
            ]

        b = Browser(browser, cluster.server.url, DESKTOP)
        page = b.page
        try:
            b.login(username, PASSWORD, tenant="alpha")
            b.go("/vms?limit=1")
            page.wait_for_selector("tr[data-vm]")
            assert page.evaluate(ROWS) == api_order("-created_at", 1) == ["zzz-bulk"]
            th = "th:has(button:text-is('Name'))"
            page.click(f"{th} button")
            page.wait_for_function(
                "n => document.querySelector('tr[data-vm]')?.dataset.vm === n", arg="aaa-bulk"
            )
            assert page.get_attribute(th, "aria-sort") == "ascending"
            assert page.evaluate(ROWS) == api_order("name", 1) == ["aaa-bulk"]
            page.click(f"{th} button")
            page.wait_for_selector(f"{th}[aria-sort=descending]")
            page.wait_for_function(
                "n => document.querySelector('tr[data-vm]')?.dataset.vm === n", arg=api_order("-name", 1)[0]
            )
            page.click("#vm-more")
            page.wait_for_function("() => document.querySelectorAll('tr[data-vm]').length === 2")
            assert page.evaluate(ROWS) == api_order("-name", 2)
            assert "sort=-name" in page.url and "limit=1" in page.url
            size = "th:has(button:text-is('Size'))"
            page.click(f"{size} button")
            page.wait_for_selector(f"{size}[aria-sort=ascending]")
            page.wait_for_function("() => document.querySelectorAll('tr[data-vm]').length === 1")
            assert page.evaluate(ROWS) == api_order("ram_mb", 1)

            b.go("/vms")
            row = "tr[data-vm=aaa-bulk]"
            assert page.inner_text(f"{row} td[data-label=Image]") == "test-guest"
            assert page.inner_text(f"{row} td[data-label=Project]") == "main"
            for n in ids:
                page.wait_for_selector(f"tr[data-vm={n}] .badge[data-state=running]", timeout=BOOT_S)
            page.wait_for_function(
                "() => !document.querySelector('tr[data-vm=aaa-bulk] .badge').textContent.includes('·')"
            )
            assert _menu(page, "aaa-bulk") == {"stop", "reboot", "console", "snapshot", "delete"}

            for n in ids:
                _booted(api, ids[n])
            # "select all" takes the rows shown: the search leaves only these two
            page.fill("#vm-search", "-bulk")
            page.wait_for_function("() => document.querySelectorAll('tr[data-vm]').length === 2")
            page.check("#vm-select-all")
            assert page.inner_text(".bulk-bar > span") == "2 selected"
            page.click(".bulk-bar button[data-bulk=stop]")
            for n in ids:
                page.wait_for_selector(f"tr[data-vm={n}] .badge[data-state=stopped]", timeout=120_000)
                page.wait_for_selector(
                    f"[data-testid=bulk-results] li[data-vm={n}] .status[data-state=succeeded]"
                )
            page.wait_for_function(
                "() => !document.querySelector('tr[data-vm=aaa-bulk] .badge').textContent.includes('·')"
            )
            assert _menu(page, "aaa-bulk") == {"start", "snapshot", "delete"}
            # a menu item does what it says: a snapshot of the stopped VM, named in its dialog
            page.click("tr[data-vm=aaa-bulk] details.row-menu summary")
            page.click("tr[data-vm=aaa-bulk] details.row-menu button[data-action=snapshot]")
            page.fill("dialog #row-snap-name", "from-the-menu")
            page.click("dialog button.primary")
            page.wait_for_selector(".toast:text('Taking snapshot from-the-menu of aaa-bulk…')")
            snaps = api.get(f"/v1/vms/{ids['aaa-bulk']}/snapshots").json()["items"]
            assert [x["name"] for x in snaps] == ["from-the-menu"], snaps
            deadline = time.monotonic() + 60  # its task done, so the delete below is not refused as busy
            while api.get(f"/v1/vms/{ids['aaa-bulk']}").json()["task_state"] is not None:
                assert time.monotonic() < deadline, "the snapshot never finished"
                time.sleep(0.3)

            # bulk start, then bulk reboot (a cold restart): each VM's task listed as succeeded
            assert page.inner_text(".bulk-bar > span") == "2 selected"
            for action, state in (("start", "running"), ("reboot", "running")):
                page.click(f".bulk-bar button[data-bulk={action}]")
                for n in ids:
                    done = f"[data-testid=bulk-results] li[data-vm={n}] .status[data-state=succeeded]"
                    page.wait_for_selector(f"{done}:has-text('{action}')", timeout=120_000)
                    page.wait_for_selector(f"tr[data-vm={n}] .badge[data-state={state}]", timeout=60_000)
            # the selection outlived the live redraws; one confirmation names the count
            assert page.inner_text(".bulk-bar > span") == "2 selected"
            page.click(".bulk-bar button[data-bulk=delete]")
            assert page.inner_text("dialog h2") == "Delete 2 VMs?"
            page.click("dialog button.danger")
            for n in ids:
                page.wait_for_selector(f"tr[data-vm={n}]", state="detached", timeout=90_000)
                assert api.get(f"/v1/vms/{ids[n]}").status_code == 404
            assert b.errors == [], b.errors
        finally:
            b.close()


def test_keyboard_shortcuts_and_boot_and_data_volumes_in_the_create_form(
    cluster: Cluster, browser: Any
) -> None:
    """Issue 17: "g v" / "g n" go to VMs / networks, "c" opens the VM list's create form, typing the
    same keys in a field does nothing, and "?" lists the shortcuts. In that form a blank volume
    picked to boot from without an image gets the API's reason under Image; with the image, the VM
    is made with the volume as its root disk."""
    username = cluster.tenants["alpha"][0]
    token = cluster.server.token(username, PASSWORD, "alpha")
    with cluster.server.client(token) as api:
        vol = api.post("/v1/volumes", json={"name": "boot-blank", "size_gb": 1}).json()["volume"]
        extra = api.post("/v1/volumes", json={"name": "data-blank", "size_gb": 1}).json()["volume"]
        deadline = time.monotonic() + 30
        for made in (vol, extra):
            while api.get(f"/v1/volumes/{made['id']}").json()["status"] != "available":
                assert time.monotonic() < deadline, "the volume never became available"
                time.sleep(0.2)
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login(username, PASSWORD, tenant="alpha")
        b.go("/volumes")
        b.follow(lambda: page.keyboard.type("gn"))
        assert page.url.endswith("#/networks")
        b.follow(lambda: page.keyboard.type("gv"))
        assert page.url.endswith("#/vms")
        b.follow(lambda: page.keyboard.press("c"))
        assert page.url.endswith("#/vms/new")
        page.click("#f-name")
        page.keyboard.type("gvc")
        assert page.input_value("#f-name") == "gvc" and page.url.endswith("#/vms/new")
        page.click("h1")
        page.keyboard.type("?")
        page.wait_for_selector("dialog#shortcut-help")
        assert "Go to Networks" in page.inner_text("dialog#shortcut-help")
        problems = page_problems(b, "/vms/new", "shortcut-help", "desktop", "light")
        assert problems == [], problems
        page.keyboard.press("Escape")
        page.wait_for_selector("dialog#shortcut-help", state="detached")

        page.fill("#f-name", "from-volume")
        page.select_option("#f-flavor", "tiny")
        page.select_option("#f-boot_volume", vol["id"])
        # the boot volume ticked as a data volume too: the API's reason under the data volumes
        page.check(f"#f-volume-{vol['id']}")
        page.click("form.card button[type=submit]")
        page.wait_for_selector("#f-volumes-error:has-text('named twice')")
        page.uncheck(f"#f-volume-{vol['id']}")
        page.check(f"#f-volume-{extra['id']}")
        page.click("form.card button[type=submit]")
        page.wait_for_selector("#f-image-error:has-text('was not made from an image')")
        page.select_option("#f-image", "test-guest")
        b.follow(lambda: page.click("form.card button[type=submit]"))
        vm_id = page.url.rsplit("/", 1)[1]
        assert vm_id.startswith("vm-"), page.url
        with cluster.server.client(token) as api:
            root = api.get(f"/v1/volumes/{vol['id']}").json()
            assert (root["vm_id"], root["boot"]) == (vm_id, True), root
            data = api.get(f"/v1/volumes/{extra['id']}").json()
            assert (data["vm_id"], data["boot"], data["status"]) == (vm_id, False, "in-use"), data
        # left building (a delete is refused until then): the module's server goes next
        assert b.errors == [], b.errors
    finally:
        b.close()

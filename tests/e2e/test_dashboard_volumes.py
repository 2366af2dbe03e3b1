"""The Volumes page's depth in Chromium, against a real node: a volume made with an IOPS limit shows
it, its limits change in a dialog, a snapshot is taken from its row and listed, and a new volume is
made from that snapshot; each step arrives over the event stream (no reload)."""

from __future__ import annotations

from typing import Any

from tests.e2e.browser import Browser
from tests.e2e.conftest import DESKTOP, PASSWORD, Cluster


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

"""Browser fixtures: one NovaCron server with the test guest, and Debian's Chromium via Playwright.

Playwright drives /usr/bin/chromium (never a downloaded browser). Under CI a missing Chromium,
Playwright or dashboard vendor files (scripts/setup.sh installs them) fail the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, Guest, Server, destroy_server, import_guest_image, make_server, require

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VENDOR = ROOT / "web" / "node_modules"
AXE = VENDOR / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts" / "web"
PASSWORD = "correct-horse-battery-9"
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1440, "height": 900}
#: (size, viewport, colour scheme) every page is checked in
VIEWS = (("phone", PHONE, "light"), ("desktop", DESKTOP, "light"), ("desktop", DESKTOP, "dark"))


@dataclass
class Cluster:
    server: Server
    admin: httpx.Client
    #: tenant name -> (username, project id)
    tenants: dict[str, tuple[str, str]]


def _tenant_user(admin: httpx.Client, name: str) -> tuple[str, str]:
    tenant = admin.post("/v1/tenants", json={"name": name}).json()
    project = admin.post("/v1/projects", json={"name": "main", "tenant_id": tenant["id"]}).json()
    username = f"{name}-user"
    r = admin.post(
        "/v1/users",
        json={"username": username, "password": PASSWORD, "role": "member", "tenant_id": tenant["id"]},
    )
    assert r.status_code == 201, r.text
    return username, project["id"]


@pytest.fixture(scope="module")
def cluster(guest: Guest) -> Iterator[Cluster]:
    srv = make_server()
    srv.start(60)  # a loaded 2-core machine: VictoriaMetrics and the first migrations take a while
    try:
        with srv.client() as admin:
            import_guest_image(admin, guest)
            tenants = {name: _tenant_user(admin, name) for name in ("alpha", "beta")}
            yield Cluster(srv, admin, tenants)
    finally:
        destroy_server(srv)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API keeps an event loop running in the main thread while it
    lives, and every later test that calls ``asyncio.run`` would fail on it."""
    require(Path(CHROMIUM).exists(), f"Debian's chromium is not installed at {CHROMIUM}")
    require(AXE.exists(), f"dashboard vendor files missing in {VENDOR}: run scripts/setup.sh")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed (pip install -e .[test])")
        raise
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()

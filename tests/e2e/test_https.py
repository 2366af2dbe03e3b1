"""The dashboard and the API docs in Chromium over HTTPS, as a fresh install serves them.

Chromium trusts exactly one certificate: the server's, by its public key's SHA-256
(``--ignore-certificate-errors-spki-list``), the way an operator who imported the platform CA
would. The docs pages must render from local assets under their CSP with no violation.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import Server, destroy_server, make_server, require
from tests.e2e.browser import Browser
from tests.e2e.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, DESKTOP, VENDOR


def spki_sha256(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture(scope="module")
def https_server() -> Iterator[Server]:
    srv = make_server(NOVACRON_COMPUTE_DRIVER="simulated", NOVACRON_NETWORK_BACKEND="none")
    del srv.env["NOVACRON_PLAIN_HTTP"]  # the default: HTTPS
    srv.start()
    try:
        yield srv
    finally:
        destroy_server(srv)


@pytest.fixture(scope="module")
def tls_browser(https_server: Server) -> Iterator[Any]:
    require(Path(CHROMIUM).exists(), f"Debian's chromium is not installed at {CHROMIUM}")
    require((VENDOR / "swagger-ui-dist").exists(), f"vendor files missing in {VENDOR}: run scripts/setup.sh")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed (pip install -e .[test])")
        raise
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pin = spki_sha256((https_server.state_dir / "pki" / "server.crt").read_bytes())
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"]
        )
        try:
            yield b
        finally:
            b.close()


def test_dashboard_logs_in_over_https(https_server: Server, tls_browser: Any) -> None:
    assert https_server.url.startswith("https://")
    b = Browser(tls_browser, https_server.url, DESKTOP)
    try:
        b.login("admin", https_server.admin_password)
        assert b.page.url.startswith("https://")
        assert "admin" in b.page.inner_text("[data-testid=who]")
        b.go("/vms")
        assert b.errors == [], b.errors
        assert not [m for m in b.console if "Content Security Policy" in m], b.console
    finally:
        b.close()


def _plain_page(browser: Any) -> tuple[Any, Any, list[str]]:
    """A page that runs under the app's own CSP (no bypass), collecting console messages."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(30_000)
    said: list[str] = []
    page.on("console", lambda m: said.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: said.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: said.append(f"request failed: {r.url}"))
    return context, page, said


def test_swagger_ui_and_redoc_render_from_local_assets(https_server: Server, tls_browser: Any) -> None:
    context, page, said = _plain_page(tls_browser)
    requested: list[str] = []
    page.on("requestfinished", lambda r: requested.append(r.url))
    try:
        page.goto(f"{https_server.url}/docs")
        page.wait_for_selector(".swagger-ui .info .title")
        assert "NovaCron API" in page.inner_text(".swagger-ui .info .title")
        page.wait_for_selector(".opblock-tag")  # the operations, from /openapi.json
        page.screenshot(path=str(ARTIFACTS / "api-docs-swagger.png"))
        page.goto(f"{https_server.url}/redoc")
        page.wait_for_selector("h1")
        assert "NovaCron API" in page.inner_text("h1")
        page.screenshot(path=str(ARTIFACTS / "api-docs-redoc.png"))
    finally:
        context.close()
    # everything came from this node: the pages work offline and no CDN script runs beside a token
    foreign = [u for u in requested if not u.startswith((https_server.url, "data:", "blob:"))]
    assert foreign == [], foreign
    # the one thing the CSP stops is Redoc's hard-wired "by Redocly" logo from its CDN (it hides
    # itself when it cannot load): anything else refused would be a part of the page missing
    problems = [
        m
        for m in said
        if ("Content Security Policy" in m or m.startswith(("pageerror", "request failed")))
        and "cdn.redoc.ly/redoc/logo-mini.svg" not in m
    ]
    assert problems == [], problems

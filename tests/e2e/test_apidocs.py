"""The API documentation pages, ``/docs`` (Swagger UI) and ``/redoc``, on a node with no internet
(issue 17 item 14): each lists every operation of ``/openapi.json``, under the page's own CSP (not
bypassed), and the browser asks nothing of any address but the node's.

Every request of the browser is seen twice: the context's route lets loopback through and aborts
anything else (so a page that needs the internet fails here as it would offline), and the request
log catches what never reaches the network, such as an image the CSP blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import Server, destroy_server, make_server
from tests.e2e.conftest import ARTIFACTS, DESKTOP

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
#: the page and the selector of one rendered operation
PAGES = (
    ("/docs", ".opblock"),
    ("/redoc", "[data-section-id^='operation/']"),
)
#: Swagger UI 5 renders the operations it scrolls to (a virtual list): its model holds them all,
#: and scrolling down (as a reader does) renders the last tag's
SWAGGER_OPERATIONS = (
    "() => window.ui.specSelectors.taggedOperations().toList().flatMap(t => t.get('operations')).size"
)
#: Swagger UI renders the sections near the viewport: scroll until the document's last operation
#: shows (its tag's header may already be out of the rendered window by then)
SCROLL_TO_LAST_OPERATION = """(path) => {
  window.scrollBy(0, 4000);
  return document.querySelector(`.opblock-summary-path[data-path="${path}"]`) !== null;
}"""


@pytest.fixture(scope="module")
def docs_server() -> Iterator[Server]:
    """A server with no guest: the pages only read ``/openapi.json``."""
    srv = make_server()
    srv.start(timeout_s=120)
    try:
        yield srv
    finally:
        destroy_server(srv)


def _outside(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme not in ("data", "blob") and parts.hostname not in LOOPBACK


def _listed(server: Server) -> tuple[list[str], str]:
    """The tag of each operation as both pages list them (once under each of its tags), and the
    path of the document's last operation."""
    with server.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    ops = [(path, op) for path, item in paths.items() for method, op in item.items() if method in METHODS]
    return [tag for _, op in ops for tag in op.get("tags") or ["default"]], ops[-1][0]


def _check_swagger(page: Any, listed: list[str], last_path: str) -> None:
    assert page.evaluate(SWAGGER_OPERATIONS) == len(listed)
    assert page.locator(".opblock-summary-path[data-path='/v1/tokens']").count() >= 1
    page.wait_for_function(SCROLL_TO_LAST_OPERATION, arg=last_path, polling=200)


def _check_redoc(page: Any, operation: str, expected: int) -> None:
    page.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel).length >= n", arg=[operation, expected]
    )
    assert page.locator(operation).count() == expected
    assert page.get_by_text("NovaCron API").first.is_visible()


# docs_server before browser: torn down after it, so its asyncio.run does not meet Playwright's loop
@pytest.mark.parametrize(("path", "operation"), PAGES)
def test_api_docs_render_offline(docs_server: Server, browser: Any, path: str, operation: str) -> None:
    listed, last_path = _listed(docs_server)
    context = browser.new_context(viewport=DESKTOP)  # the page's CSP applies
    requests: list[str] = []
    aborted: list[str] = []
    problems: list[str] = []

    def route(r: Any) -> None:
        if _outside(r.request.url):
            aborted.append(r.request.url)
            r.abort()
        else:
            r.continue_()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    try:
        page.goto(f"{docs_server.url}{path}")
        # every operation rendered, not a blank page or "Failed to load API definition"
        page.wait_for_selector(operation)
        if path == "/docs":
            _check_swagger(page, listed, last_path)
        else:
            _check_redoc(page, operation, len(listed))
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(ARTIFACTS / f"apidocs{path.replace('/', '-')}.png"))
    finally:
        context.close()
    assert not aborted and not [u for u in requests if _outside(u)], (aborted, requests)
    assert not problems, problems
    assert any(u.endswith("/openapi.json") for u in requests)

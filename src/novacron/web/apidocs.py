"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc``, from pinned local assets.

FastAPI's own pages load their scripts from a CDN, with no integrity check, on the origin where the
dashboard keeps its token. These load ``swagger-ui-dist`` and ``redoc`` from web/node_modules
(pinned by web/package-lock.json, served under /vendor like the dashboard's) under a CSP that
allows scripts from this origin only, and so also work on a node with no internet access.

Redoc's bundle shows Redocly's logo from their CDN in its sidebar, unconditionally (no option turns
it off): the CSP would block it, but the browser would still try and log a violation on every load.
So the bundle is served from ``/apidocs/redoc.standalone.js`` with that one address replaced by an
empty inline image: the page makes no request beyond this origin at all (tests/e2e/test_apidocs.py).
"""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from novacron.api.errors import Problem
from novacron.web.routes import STATIC_DIR, VENDOR_CACHE, VENDOR_FILES, vendor_dir

REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
EMPTY_IMAGE = b"data:image/svg+xml,%3Csvg xmlns=%27http://www.w3.org/2000/svg%27/%3E"

# Redoc's styled-components inject <style> elements, and its search runs in a blob: worker
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)
DOCS_HEADERS = {
    "Content-Security-Policy": DOCS_CSP,
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def swagger_ui() -> FileResponse:
    return FileResponse(STATIC_DIR / "apidocs" / "swagger.html", headers=DOCS_HEADERS)


@router.get("/redoc")
def redoc() -> FileResponse:
    return FileResponse(STATIC_DIR / "apidocs" / "redoc.html", headers=DOCS_HEADERS)


@functools.lru_cache(maxsize=2)
def _offline_redoc(path: Path, mtime_ns: int) -> bytes:
    """The pinned bundle with the CDN logo replaced; read once per file version (it is 1 MB)."""
    return path.read_bytes().replace(REDOC_LOGO, EMPTY_IMAGE)


@router.get("/apidocs/redoc.standalone.js")
def redoc_bundle(request: Request) -> Response:
    path = vendor_dir(request.app.state.ctx.settings) / VENDOR_FILES["redoc.standalone.js"]
    if not path.is_file():
        missing = f"Redoc is not installed in {path.parent}: run scripts/setup.sh."
        raise Problem(503, "Service Unavailable", missing)
    body = _offline_redoc(path, path.stat().st_mtime_ns)
    return Response(body, media_type="text/javascript", headers=VENDOR_CACHE)

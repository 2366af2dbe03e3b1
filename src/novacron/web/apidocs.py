"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc``, from pinned local assets.

FastAPI's own pages load their scripts from a CDN, with no integrity check, on the origin where the
dashboard keeps its token. These load ``swagger-ui-dist`` and ``redoc`` from web/node_modules
(pinned by web/package-lock.json, served under /vendor like the dashboard's) under a CSP that
allows scripts from this origin only, and so also work on a node with no internet access.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from novacron.web.routes import STATIC_DIR

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

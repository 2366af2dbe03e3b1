"""Serves the dashboard: one HTML shell at ``/``, our ES modules and CSS, and pinned vendor files.

The pages are a small single-page app that calls the REST API with the user's own access token, so
authentication and tenant scoping are the API's: nothing here reads the database or renders data.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from novacron.api.errors import Problem, not_found
from novacron.config import Settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: web/node_modules of the checkout (src/novacron/web/routes.py -> repository root)
DEFAULT_VENDOR_DIR = Path(__file__).resolve().parents[3] / "web" / "node_modules"

#: the only third-party files served, by public name: a whitelist, not node_modules as a whole
VENDOR_FILES: dict[str, str] = {
    "xterm.mjs": "@xterm/xterm/lib/xterm.mjs",
    "xterm.css": "@xterm/xterm/css/xterm.css",
    "addon-fit.mjs": "@xterm/addon-fit/lib/addon-fit.mjs",
    "addon-attach.mjs": "@xterm/addon-attach/lib/addon-attach.mjs",
    "uPlot.esm.js": "uplot/dist/uPlot.esm.js",
    "uPlot.min.css": "uplot/dist/uPlot.min.css",
    # the API documentation pages (web/apidocs.py)
    "swagger-ui-bundle.js": "swagger-ui-dist/swagger-ui-bundle.js",
    "swagger-ui.css": "swagger-ui-dist/swagger-ui.css",
    "swagger-favicon-32x32.png": "swagger-ui-dist/favicon-32x32.png",
    "redoc.standalone.js": "redoc/bundles/redoc.standalone.js",
}
#: noVNC (the graphical console) is ES modules importing each other by relative path: its ``core``
#: and ``vendor`` (pako) trees are served under /vendor/novnc/, JavaScript files only
NOVNC_PACKAGE = "@novnc/novnc"
NOVNC_TREES = ("core", "vendor")
MEDIA_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".css": "text/css", ".png": "image/png"}

# Scripts only from this origin; styles inline too (xterm.js and uPlot set element styles); the API,
# the event stream and the console WebSocket on this origin only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
VENDOR_CACHE = {"Cache-Control": "public, max-age=3600"}
SHELL_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def vendor_dir(settings: Settings) -> Path:
    return settings.web_vendor_dir or DEFAULT_VENDOR_DIR


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    vendor = vendor_dir(settings)

    @router.get("/")
    def shell() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=SHELL_HEADERS)

    @router.get("/vendor/novnc/{rel:path}")
    def novnc_file(rel: str) -> Response:
        root = (vendor / NOVNC_PACKAGE).resolve()
        path = (root / rel).resolve()
        inside = path.is_relative_to(root) and path.relative_to(root).parts[:1] in [(t,) for t in NOVNC_TREES]
        if not inside or path.suffix != ".js" or not path.is_file():
            raise not_found("vendor file", "novnc/" + rel)
        return FileResponse(path, media_type="text/javascript", headers=VENDOR_CACHE)

    @router.get("/vendor/{name}")
    def vendor_file(name: str) -> Response:
        rel = VENDOR_FILES.get(name)
        if rel is None:
            raise not_found("vendor file", name)
        path = vendor / rel
        if not path.is_file():
            raise Problem(
                503,
                "Service Unavailable",
                f"The dashboard's vendor files are not installed in {vendor}: run scripts/setup.sh.",
            )
        media = MEDIA_TYPES[path.suffix]
        return FileResponse(path, media_type=media, headers=VENDOR_CACHE)

    return router


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the dashboard on ``app``: ``/`` (the shell), ``/static`` (ours), ``/vendor`` (pinned)."""
    from novacron.web.apidocs import router as docs_router

    app.include_router(build_router(settings))
    app.include_router(docs_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="web-static")

"""The FastAPI application: routers, problem+json errors, audit, and the background loops."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp

from novacron import __version__, eventbus, eventbus_nats
from novacron.api.clientaddr import ClientAddressMiddleware
from novacron.api.errors import install_handlers
from novacron.api.metrics_middleware import RequestMetrics
from novacron.api.openapi import document
from novacron.api.routers import (
    agent_uploads,
    agents,
    clones,
    cluster,
    console,
    events,
    flavors,
    hosts,
    images,
    migration,
    platform_metrics,
    tasks,
    tickets,
    traces,
    vms,
)
from novacron.api.threats import ThreatMiddleware
from novacron.api.tracing import TraceRequests
from novacron.api.transport import BodyGuard, SecurityHeaders
from novacron.configsvc import live as configsvc_live
from novacron.context import Context
from novacron.workers import BackgroundWorkers, is_leader

log = logging.getLogger(__name__)


#: the areas' routers (``api/routers/<name>.py``), included in this order
AREA_ROUTERS = (
    "tokens",
    "api_keys",
    "mfa",
    "passkeys",
    "sso",
    "identity_providers",
    "roles",
    "role_assignments",
    "auth_explain",
    "tenants",
    "projects",
    "users",
    "audit",
    "security",
    "compliance",
    "encryption",
    "kms",
    "kms_secrets",
    "config",
    "aggregates",
    "server_groups",
    "volumes",
    "volume_snapshots",
    "vm_snapshots",
    "backups",
    "backup_policies",
    "dr",
    "quota",
    "usage",
    "cost",
    "capacity",
    "networks",
    "ports",
    "security_groups",
    "routers",
    "alerts",
    "silences",
    "metrics_query",
    "slo",
    "dashboards",
    "gslb",
    "lb_certificates",
    "loadbalancers",
    "loadbalancer_pools",
    "loadbalancer_l7",
    "scaling_groups",
    "scaling_policies",
    "webhooks",
)


def _include_optional(app: FastAPI) -> None:
    """Areas that live in their own packages plug in here."""
    from novacron.api.audit import install_audit

    for name in AREA_ROUTERS:
        app.include_router(importlib.import_module(f"novacron.api.routers.{name}").router)
    app.include_router(importlib.import_module("novacron.api.graphql.transport").router)
    install_audit(app)


def _include_web(app: FastAPI, ctx: Context) -> None:
    """The dashboard at ``/``: last, so no page route shadows an API route."""
    from novacron.web.routes import install

    install(app, ctx.settings)


class NovaCronAPI(FastAPI):
    def openapi(self) -> dict[str, Any]:
        """The document of every answer each operation can give (``api/openapi.py``), built once."""
        if not self.openapi_schema:
            self.openapi_schema = document(self)
        return self.openapi_schema

    def build_middleware_stack(self) -> ASGIApp:
        # outside Starlette's own error middleware too, so that a 500 page gets the headers
        return SecurityHeaders(super().build_middleware_stack())


def create_app(ctx: Context, *, background: bool = True) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        workers = BackgroundWorkers(ctx) if background else None
        # NATS JetStream when configured, else LISTEN/NOTIFY on PostgreSQL, else this process only
        listener = eventbus_nats.relay_for(ctx.settings.event_bus) or eventbus.listener_for(
            ctx.settings.database_url
        )
        if listener is not None:
            listener.start()
        live_config = await configsvc_live.start(ctx)
        if workers is not None:
            await asyncio.to_thread(workers.start)
        try:
            yield
        finally:
            if workers is not None:
                await asyncio.to_thread(workers.stop)
            live_config.cancel()
            if listener is not None:
                await asyncio.to_thread(listener.stop)

    app = NovaCronAPI(
        title="NovaCron API",
        version=__version__,
        description="Virtual machines, images, flavors, tasks, hosts, identity and events.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        # /docs and /redoc are the web package's: pinned local assets under a CSP, no CDN
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    install_handlers(app)
    # level 1 (nginx's default), not Starlette's 9: a 500-VM page (270 kB of JSON) compresses in
    # 2 ms instead of 13 ms, to 20 kB instead of 17 kB (docs/benchmarks.md, VM list)
    app.add_middleware(GZipMiddleware, minimum_size=2048, compresslevel=1)
    # inside the audit middleware (added later, so outer): refused bodies are audited too
    app.add_middleware(BodyGuard, api=app)
    for module in (
        agents,
        agent_uploads,
        migration,
        cluster,
        vms,
        clones,
        console,
        images,
        flavors,
        tasks,
        hosts,
        events,
        tickets,
        platform_metrics,
        traces,
    ):
        app.include_router(module.router)
    _include_optional(app)
    _include_web(app, ctx)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str | bool]:
        return {"status": "ok", "version": __version__, "leader": is_leader(ctx)}

    # outside audit and BodyGuard, so the requests they answer themselves are counted too
    app.add_middleware(RequestMetrics, api=app, metrics=ctx.platform_metrics)
    # outside the audit middleware and the routes: the request's span covers all of it
    app.add_middleware(TraceRequests)
    # just inside the client address: a blocked source is refused before anything else runs
    app.add_middleware(ThreatMiddleware)
    # added last, so outermost: audit and login throttling see the client a trusted proxy reports
    settings = ctx.settings
    app.add_middleware(
        ClientAddressMiddleware, proxies=settings.trusted_proxies, header=settings.proxy_header
    )
    return app

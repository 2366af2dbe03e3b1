"""``GET /metrics``: the platform's own metrics for an operator's Prometheus.

Served in the classic Prometheus text format (``text/plain; version=0.0.4``), never OpenMetrics,
which ``promtool check metrics`` refuses from prometheus_client. Readable with the node's scrape
token (``monitoring/scrape_token.py``) or a platform admin's token; never anonymously, never by a
tenant's users or a node agent: the series name hosts and show the whole platform's load.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse

from novacron.api.deps import CtxDep, authenticate_any, bearer_token, ctx_of, unauthenticated
from novacron.api.errors import Problem
from novacron.api.openapi import raises
from novacron.monitoring.platform import CONTENT_TYPE
from novacron.monitoring.scrape_token import is_scrape_token

router = APIRouter(tags=["meta"])


@raises(401, 403)
def scraper(request: Request) -> None:
    """Let through the node's scrape token or a platform admin's token: 401 without a valid token,
    403 for anybody else's."""
    ctx = ctx_of(request)
    token = bearer_token(request)
    if token is None:
        raise unauthenticated()
    if is_scrape_token(ctx.settings.state_dir, token):
        return
    principal = authenticate_any(ctx, token)
    if principal.kind != "user" or not principal.is_global:
        raise Problem(
            403,
            "Forbidden",
            "The platform's metrics are for platform administrators and the node's scrape token.",
        )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    openapi_extra={"security": [{"bearer": []}]},
)
def metrics(ctx: CtxDep, _: Annotated[None, Depends(scraper)]) -> Response:
    """The platform's own metrics in the Prometheus text format (version 0.0.4): API requests,
    tasks, queue depth, agent heartbeats, placement, backups, database pool, leadership."""
    return Response(ctx.platform_metrics.exposition(ctx), media_type=CONTENT_TYPE)

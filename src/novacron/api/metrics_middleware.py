"""Counts and times every HTTP request for the platform's metrics (``monitoring/platform.py``).

A request is labelled with the template of the route it went to (``/v1/vms/{vm_id}``), never its raw
path, so ids do not become series. Routing sets that route on the request; a request answered
before routing (BodyGuard's 401 or 413) or by a mount (static files) is matched here against the
app's route table, and a path no route takes is ``unmatched``. WebSockets are not requests here.
"""

from __future__ import annotations

import re
import time

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from novacron.monitoring.platform import UNMATCHED, PlatformMetrics


class RequestMetrics:
    """ASGI middleware: one count and one latency observation per HTTP request."""

    def __init__(self, app: ASGIApp, api: FastAPI, metrics: PlatformMetrics) -> None:
        self.app = app
        self.api = api
        self.metrics = metrics
        self._table: list[tuple[re.Pattern[str], str]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before it responds

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            self.metrics.observe_request(
                scope["method"], self._template(scope), status, time.perf_counter() - started
            )

    def _template(self, scope: Scope) -> str:
        template = getattr(scope.get("route"), "path_format", None)
        if isinstance(template, str):
            return template
        path = scope["path"]
        for pattern, route_template in self._routes():
            if pattern.match(path):
                return route_template
        return UNMATCHED

    def _routes(self) -> list[tuple[re.Pattern[str], str]]:
        """(path pattern, template) of every route and mount, in routing order; built on first use,
        when every router has been included."""
        if self._table is None:
            table = []
            for rc in iter_route_contexts(self.api.router.routes):
                template = rc.path_format
                if template is not None:
                    table.append((rc.path_regex, template))
            self._table = table
        return self._table

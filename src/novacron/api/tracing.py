"""The API request's span: the root of a trace, or the continuation of the caller's ``traceparent``.

Every ``/v1`` request gets a SERVER span named by its route template (``POST /v1/vms``), tagged
with the caller's tenant once the request is authenticated (what the trace API scopes by), and is
answered with an ``X-Trace-Id`` header naming its trace. Left out: the agents' own channel (reports
every second, long-polled claims: noise that would crowd out the traces users look for) and the
reading of traces itself.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from novacron.monitoring import tracing

UNTRACED_PREFIXES = ("/v1/agent/", "/v1/traces")


class TraceRequests:
    """ASGI middleware: one span per API request, continuing an incoming W3C ``traceparent``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/") or path.startswith(UNTRACED_PREFIXES):
            await self.app(scope, receive, send)
            return
        parent = _header(scope, b"traceparent")
        status = 500
        attributes = {"http.request.method": scope["method"], "url.path": path}
        name = f"{scope['method']} {path}"
        with tracing.continued(tracing.API, name, parent, attributes, SpanKind.SERVER) as span:
            ids = tracing.current_ids()

            async def send_with_trace_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    if ids is not None:
                        message["headers"] = [*message.get("headers", []), (b"x-trace-id", ids[0].encode())]
                await send(message)

            try:
                await self.app(scope, receive, send_with_trace_id)
            finally:
                _finish(span, scope, status)


def _finish(span: Any, scope: Scope, status: int) -> None:
    route = getattr(scope.get("route"), "path", None)
    if route:
        span.update_name(f"{scope['method']} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    principal = (scope.get("state") or {}).get("principal")
    if principal is not None:
        span.set_attribute("enduser.id", principal.user_id)
        if principal.tenant_id:
            span.set_attribute(tracing.TENANT, principal.tenant_id)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            return bytes(value).decode("latin-1")
    return None

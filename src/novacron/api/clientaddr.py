"""The client address of a request, as ``identity/clientaddr.py`` resolves it, applied at the edge.

``ClientAddressMiddleware`` resolves it once, for every HTTP request and WebSocket, and puts the
answer in the ASGI scope's ``client``; audit records, login throttling and everything else read it
from there (``client_address``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from novacron.identity.clientaddr import parse_networks, resolve_client


def client_address(scope: Scope | Any) -> str | None:
    """The address of the client behind ``scope`` (an ASGI scope or a Starlette request)."""
    client = getattr(scope, "scope", scope).get("client")
    return str(client[0]) if client else None


class ClientAddressMiddleware:
    """Replace the scope's ``client`` with the address a trusted proxy reports (HTTP and WebSocket)."""

    def __init__(self, app: ASGIApp, proxies: Sequence[str] = (), header: str = "x-forwarded-for") -> None:
        self.app = app
        self.proxies = parse_networks(proxies)
        self.header = header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.proxies and scope["type"] in ("http", "websocket") and scope.get("client"):
            host, port = scope["client"]
            client = resolve_client(host, scope.get("headers") or [], self.proxies, self.header)
            if client != host:
                scope = dict(scope, client=(client, 0))
        await self.app(scope, receive, send)

"""Threat detection at the edge: refuse blocked sources, feed the detector (``identity/threats.py``).

A pure ASGI middleware, inside ``ClientAddressMiddleware`` (so it sees the address a trusted proxy
reports) and outside everything else. Before a request reaches anything it checks the client's
block (from memory for ``_RECHECK_S``, else from the database in a worker thread) and answers a
blocked source 403 problem+json saying until when and that an administrator can lift it. It then
watches the answer: a refused login (401 on ``POST /v1/tokens``, whose small JSON body it keeps to
read the username) and a 404 on a route that names a resource by id are fed to the detector.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from novacron.api.clientaddr import client_address
from novacron.api.errors import PROBLEM_JSON
from novacron.identity.threats import Detection, Finding, ThreatDetector

log = logging.getLogger(__name__)

LOGIN_PATH = "/v1/tokens"
_LOGIN_BODY_MAX = 8192


def detector_of(scope: Scope) -> ThreatDetector | None:
    """The process's detector, made on first use and kept on the context (the lift clears its cache)."""
    ctx = getattr(getattr(scope.get("app"), "state", None), "ctx", None)
    if ctx is None:
        return None
    detector = getattr(ctx, "threats", None)
    if detector is None:
        detector = ThreatDetector(ctx.db, lambda: ctx.settings)
        ctx.threats = detector
    return detector if isinstance(detector, ThreatDetector) else None


def _username(body: bytes) -> str | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    name = payload.get("username") if isinstance(payload, dict) else None
    return name if isinstance(name, str) and name else None


async def _refuse(send: Send, until: datetime) -> None:
    retry = max(1, int((until - datetime.now(until.tzinfo)).total_seconds()))
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Blocked",
            "status": 403,
            "detail": f"This address is blocked by threat detection until {until.isoformat()}; "
            "an administrator can lift the block (DELETE /v1/security/blocks/{id}).",
            "blocked_until": until.isoformat(),
        }
    ).encode()
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"retry-after", str(retry).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ThreatMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        detector = detector_of(scope) if scope["type"] == "http" else None
        address = client_address(scope)
        if detector is None or address is None or detector.allowed(address):
            await self.app(scope, receive, send)
            return
        known, until = detector.cached_block(address)
        if not known:
            until = await anyio.to_thread.run_sync(detector.blocked, address)
        if until is not None:
            await _refuse(send, until)
            return
        await self._watch(detector, address, scope, receive, send)

    async def _watch(
        self, detector: ThreatDetector, address: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        login = scope["method"] == "POST" and scope["path"] == LOGIN_PATH
        body: list[bytes] = []
        status = 0

        async def keep() -> Message:  # the login's body: it names the account a refused login tried
            message = await receive()
            if message["type"] == "http.request" and sum(map(len, body)) < _LOGIN_BODY_MAX:
                body.append(message.get("body", b""))
            return message

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, keep if login else receive, watch)
        try:
            await _report(detector, address, scope, status)
            found: Detection | None = None
            if login and status == 401 and (name := _username(b"".join(body))):
                found = await anyio.to_thread.run_sync(detector.failed_login, address, name)
            elif status == 404 and scope["method"] == "GET" and scope.get("path_params"):
                found = await anyio.to_thread.run_sync(detector.not_found, address, scope["path"])
            if found is not None:
                _count(scope, found)
                log.warning("threat: %s from %s, blocked until %s", found.kind, found.source, found.until)
        except Exception:  # noqa: BLE001 - detection must never break the request
            log.exception("threat detection failed for %s %s", scope["method"], scope["path"])


async def _report(detector: ThreatDetector, address: str, scope: Scope, status: int) -> None:
    """Token misuse and bursts of deletions: reported (an event), never blocked."""
    principal = (scope.get("state") or {}).get("principal")
    if principal is None or status >= 400:
        return
    findings = [detector.token_used(address, principal.token_id) if principal.token_id else None]
    if scope["method"] == "DELETE":
        findings.append(detector.deleted(address, principal.username, scope["path"]))
    for finding in findings:
        if finding is not None:
            await anyio.to_thread.run_sync(detector.report, finding)
            _count(scope, finding)


def _count(scope: Scope, found: Detection | Finding) -> None:
    ctx: Any = getattr(getattr(scope.get("app"), "state", None), "ctx", None)
    metrics = getattr(ctx, "platform_metrics", None)
    if metrics is not None:
        metrics.security_detection(found.kind)

"""The audit log: one record for every mutating HTTP request (POST, PUT, PATCH, DELETE), and
for every request refused for a bad credential (401 on a request that presented a token).

A pure ASGI middleware watches the response go by (status and, for small JSON bodies, the
resource id), lets the whole request finish (so the handler's own transaction is closed),
then writes the record in a separate transaction in a worker thread. Auditing never breaks
a request: a failure to write is logged and the response is unaffected.

Who: ``request.state.principal`` when the request authenticated; handlers without a
principal (e.g. the password login) can name the actor with ``audit_hint``.
Action: ``<resource>.<verb>`` from the route template, e.g. ``POST /v1/projects`` ->
``project.create``, ``POST /v1/users/{user_id}/password`` -> ``user.password``,
``DELETE /v1/tokens/current`` -> ``token.delete``; unmatched paths keep ``METHOD path``.
Outcome: ``success`` (< 400), ``denied`` (401, 403, 404), ``failed`` (anything else).
The source IP is the client address (``clientaddr.py``: the peer, or what a trusted proxy
reports). Refusals (401, 429) are bounded (``audit_limit.py``) so an anonymous flood cannot fill
the log; their ``detail`` says why (the problem's ``detail``) and how many were not written.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from novacron.db.models import AuditRecord
from novacron.identity.audit_limit import RefusalLimiter
from novacron.identity.clientaddr import client_address

log = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REFUSED = frozenset({401, 429})
_BODY_CAPTURE_MAX = 64 * 1024
_VERB = {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}


def audit_hint(request: Request, **fields: str | None) -> None:
    """Tell the audit middleware about this request (``actor_id``, ``actor_name``, ``tenant_id``,
    ``resource_id``) when there is no authenticated principal or the response does not show it."""
    hints: dict[str, str | None] = getattr(request.state, "audit", None) or {}
    hints.update(fields)
    request.state.audit = hints


def audit_detail(request: Request, detail: Any) -> None:
    """Record ``detail`` (JSON-able; may still be filled in after this call, e.g. a list the handler
    appends decisions to) with this request's audit record, whatever its outcome."""
    request.state.audit_detail = detail


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def action_name(method: str, template: str | None, path: str) -> str:
    """``project.create`` from ``POST /v1/projects`` and friends; see the module docstring."""
    if not template:
        return f"{method} {path}"[:64]
    parts = [p for p in template.strip("/").split("/") if p]
    if parts and parts[0] in {"v1", "v2"}:
        parts = parts[1:]
    if parts and parts[0].startswith("."):  # /.well-known/...
        parts = parts[1:]
    if not parts:
        return f"{method} {path}"[:64]
    resource: str | None = None
    verb = _VERB.get(method, method.lower())
    prev_literal = False
    for i, part in enumerate(parts):
        is_param = part.startswith("{")
        last = i == len(parts) - 1
        if is_param:
            prev_literal = False
            if last and method == "POST":
                verb = "update"
            continue
        if last and resource is not None and (method == "POST" or prev_literal):
            # a sub-action: /vms/{id}/start, /tokens/refresh, /users/{id}/password
            if method == "POST":
                verb = part
            break
        resource = _singular(part)
        prev_literal = True
    return f"{resource or parts[0]}.{verb}"[:64]


def outcome_of(status: int) -> str:
    if status < 400:
        return "success"
    if status in (401, 403, 404):
        return "denied"
    return "failed"


def _presents_credential(scope: Scope) -> bool:
    """A request that showed a token: its 401 is a refused credential (forged, expired, revoked)."""
    if any(name.lower() == b"authorization" for name, _ in scope.get("headers") or []):
        return True
    query = scope.get("query_string") or b""
    return b"access_token=" in query or b"ticket=" in query


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.refusals = RefusalLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and _presents_credential(scope):
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        mutating = scope["method"] in MUTATING
        if not mutating and not _presents_credential(scope):
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        status = 500
        is_json = False
        chunks: list[bytes] = []
        size = 0

        async def watch(message: Message) -> None:
            nonlocal status, is_json, size
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type" and b"json" in value.lower():
                        is_json = mutating or status in REFUSED
            elif message["type"] == "http.response.body" and is_json and size <= _BODY_CAPTURE_MAX:
                body = message.get("body", b"")
                chunks.append(body)
                size += len(body)
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if mutating or status in REFUSED:
                await self._audit(
                    scope, status, b"".join(chunks) if is_json and size <= _BODY_CAPTURE_MAX else b""
                )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket whose credential is refused is closed with 4401 and a reason: audit that."""
        refused: list[str] = []

        async def watch(message: Message) -> None:
            if message["type"] == "websocket.close" and message.get("code") == 4000 + 401:
                refused.append(str(message.get("reason") or ""))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if refused:
                body = json.dumps({"detail": refused[0] or "refused credential"}).encode()
                await self._audit(dict(scope, method="WS"), 401, body)

    async def _audit(self, scope: Scope, status: int, body: bytes) -> None:
        try:
            record = self._record(scope, status, body)
            if status in REFUSED and not self._admit(record):
                return
            await anyio.to_thread.run_sync(self._write, scope, record)
        except Exception:  # noqa: BLE001 - auditing must never break the request
            log.exception("could not write the audit record for %s %s", scope["method"], scope["path"])

    def _admit(self, record: AuditRecord) -> bool:
        """Apply the refusal limits; a written record reports the refusals that were not."""
        key = record.actor_id or f"source:{record.source_ip}"
        suppressed = self.refusals.admit(key, anonymous=record.actor_id is None)
        if suppressed is None:
            return False
        if suppressed:
            detail = json.loads(record.detail) if record.detail else {}
            record.detail = json.dumps(dict(detail if isinstance(detail, dict) else {"detail": detail},
                                            suppressed=suppressed))  # fmt: skip
        return True

    def _record(self, scope: Scope, status: int, body: bytes) -> AuditRecord:
        state: dict[str, Any] = scope.get("state") or {}
        principal = state.get("principal")
        hints: dict[str, str | None] = state.get("audit") or {}
        route = scope.get("route")
        template = getattr(route, "path", None)
        payload: Any = None
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
        resource_id = hints.get("resource_id")
        if resource_id is None and status < 400 and isinstance(payload, dict) and "id" in payload:
            resource_id = str(payload["id"])
        if resource_id is None:
            params = scope.get("path_params") or {}
            if params:
                resource_id = str(list(params.values())[-1])
        tenant_id = principal.tenant_id if principal is not None else hints.get("tenant_id")
        if tenant_id is None and isinstance(payload, dict) and isinstance(payload.get("tenant_id"), str):
            tenant_id = payload["tenant_id"]  # an admin acting inside a tenant: the tenant sees it
        detail = state.get("audit_detail")
        if detail is None and status in REFUSED and isinstance(payload, dict) and payload.get("detail"):
            detail = {"reason": str(payload["detail"])[:512]}
        return AuditRecord(
            detail=json.dumps(detail, default=str)[:16384] if detail else None,
            actor_id=principal.user_id if principal is not None else hints.get("actor_id"),
            actor_name=principal.username if principal is not None else hints.get("actor_name"),
            tenant_id=tenant_id,
            action=action_name(scope["method"], template, scope["path"]),
            method=scope["method"],
            path=scope["path"][:512],
            resource_id=resource_id[:40] if resource_id else None,
            source_ip=client_address(scope),
            status_code=status,
            outcome=outcome_of(status),
        )

    @staticmethod
    def _write(scope: Scope, record: AuditRecord) -> None:
        app = scope.get("app")
        ctx = getattr(getattr(app, "state", None), "ctx", None)
        if ctx is None:
            log.warning("no context on the app: audit record not written: %s %s", record.method, record.path)
            return
        with ctx.db.session() as session:
            session.add(record)


def install_audit(app: FastAPI) -> None:
    """Record every mutating request of ``app`` in the audit log (reads ``app.state.ctx.db``)."""
    app.add_middleware(AuditMiddleware)

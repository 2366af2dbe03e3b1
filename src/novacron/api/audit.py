"""The audit log's HTTP side: a middleware that records each request before its answer is complete.

What a record says, and why, is ``identity/audit.py``'s. A pure ASGI middleware watches the response
go by (status and, for small JSON bodies, the resource id) and holds back the response's last body
message until the record is written, in a separate transaction in a worker thread: the handler's own
transaction has committed by then (``SessionDep`` closes before the response starts), and a client
that has its answer can already read the record. A request that ends without a last body message
(the handler raised, the client left) is recorded when it is over. Auditing never breaks a request:
a failure to write is logged and the response is unaffected.

A handler, or a service it hands the note to, tells the record what it cannot see for itself with
``audit_note(request)`` (``audit_hint``/``audit_detail`` for short).
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from novacron.api.clientaddr import client_address
from novacron.db.models import AuditRecord
from novacron.identity.audit import AuditNote, action_name, outcome_of, write_record
from novacron.identity.audit_limit import RefusalLimiter
from novacron.identity.grants import Origin

log = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REFUSED = frozenset({401, 429})
_BODY_CAPTURE_MAX = 64 * 1024
#: where a request's ``AuditNote`` is kept in its ASGI scope's state
NOTE_KEY = "audit_note"
#: set in a request's ASGI scope state by a handler that found the POST only reads (a GraphQL query)
READ_ONLY_KEY = "audit_read_only"


def audit_note(request: Request) -> AuditNote:
    """The note this request's audit record will read (made on first use)."""
    note: AuditNote | None = getattr(request.state, NOTE_KEY, None)
    if note is None:
        note = AuditNote()
        setattr(request.state, NOTE_KEY, note)
    return note


def audit_hint(request: Request, **fields: str | None) -> None:
    """Tell the audit record about this request (``actor_id``, ``actor_name``, ``tenant_id``,
    ``resource_id``, ``action``) when there is no authenticated principal or the response does not
    show it (``action``: a GraphQL operation names its mutations)."""
    audit_note(request).hint(**fields)


def audit_detail(request: Request, detail: Any) -> None:
    """Record ``detail`` (JSON-able; may still be filled in after this call, e.g. a list the handler
    appends decisions to) with this request's audit record, whatever its outcome."""
    audit_note(request).detail = detail


async def request_origin(request: Request) -> Origin:
    """Where a login or password check comes from, and the note its audit record reads."""
    # async on purpose: FastAPI runs sync dependencies in the thread pool, a hop per request
    return Origin(client_address(request), audit_note(request))


OriginDep = Annotated[Origin, Depends(request_origin)]


def _presents_credential(scope: Scope) -> bool:
    """A request that showed a token: its 401 is a refused credential (forged, expired, revoked)."""
    if any(name.lower() == b"authorization" for name, _ in scope.get("headers") or []):
        return True
    query = scope.get("query_string") or b""
    return b"access_token=" in query or b"ticket=" in query


class AuditMiddleware:
    """Audit every mutating request, and every refused credential, of the app it wraps."""

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
        await self._http(scope, receive, send, mutating)

    async def _http(self, scope: Scope, receive: Receive, send: Send, mutating: bool) -> None:
        scope.setdefault("state", {})
        status = 500
        is_json = False
        chunks: list[bytes] = []
        size = 0
        audited = False

        async def audit() -> None:
            nonlocal audited
            if scope["state"].get(READ_ONLY_KEY) and status not in REFUSED:
                audited = True  # a read sent as a POST (a GraphQL query): not a change
            if not audited and (mutating or status in REFUSED):
                audited = True
                await self._audit(
                    scope, status, b"".join(chunks) if is_json and size <= _BODY_CAPTURE_MAX else b""
                )

        async def watch(message: Message) -> None:
            nonlocal status, is_json, size
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type" and b"json" in value.lower():
                        is_json = mutating or status in REFUSED
            elif message["type"] == "http.response.body":
                if is_json and size <= _BODY_CAPTURE_MAX:
                    body = message.get("body", b"")
                    chunks.append(body)
                    size += len(body)
                if not message.get("more_body", False):
                    # the last byte waits for the record: a client that saw its answer finds it audited
                    await audit()
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            await audit()

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
        note: AuditNote = state.get(NOTE_KEY) or AuditNote()
        hints = note.hints
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
        detail = note.detail
        if detail is None and status in REFUSED and isinstance(payload, dict) and payload.get("detail"):
            detail = {"reason": str(payload["detail"])[:512]}
        return AuditRecord(
            detail=json.dumps(detail, default=str)[:16384] if detail else None,
            actor_id=principal.user_id if principal is not None else hints.get("actor_id"),
            actor_name=principal.username if principal is not None else hints.get("actor_name"),
            tenant_id=tenant_id,
            action=hints.get("action") or action_name(scope["method"], template, scope["path"]),
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
        write_record(ctx.db, record, ctx.tokens.keys)


def install_audit(app: FastAPI) -> None:
    """Record every mutating request of ``app`` in the audit log (reads ``app.state.ctx.db``)."""
    app.add_middleware(AuditMiddleware)

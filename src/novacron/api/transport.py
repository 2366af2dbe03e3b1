"""The API's HTTP edge: headers on every response, and no request body read before it may be.

``SecurityHeaders`` wraps the whole application (error pages included): ``nosniff`` on every
response, and ``Strict-Transport-Security`` when it wraps a TLS listener (``hsts=True``; never on
plain HTTP, where the header means nothing and a proxy could forge the scheme).

``BodyGuard`` runs before routing, because FastAPI reads and parses a JSON body before it runs the
dependencies that authenticate the caller: an anonymous client could make every replica buffer and
parse megabytes. For a request that carries a body it finds the route, and

- when the route needs a caller (it depends on ``current_principal``), authenticates the bearer
  token first and answers 401 without reading a byte of the body (the principal is kept for the
  route, so the token is not checked twice);
- limits the body: ``DEFAULT_BODY_LIMIT`` for an authenticated JSON body, ``ANONYMOUS_BODY_LIMIT``
  for the few anonymous routes (login, refresh, join), or the route's own (``body_limit``); none
  for routes marked ``streamed_body`` (uploads enforce a larger limit while they stream to disk). A declared
  ``Content-Length`` over the limit is answered 413 at once; a chunked body is counted as it is read.
  Any answer sent before its request's body was read whole closes the connection.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from novacron.api.clientaddr import client_address
from novacron.api.errors import PROBLEM_JSON, Problem, from_domain
from novacron.errors import DomainError

#: a JSON document of an authenticated caller (the largest the API takes is far below this)
DEFAULT_BODY_LIMIT = 1 << 20
#: login, token refresh, agent join: a few hundred bytes each
ANONYMOUS_BODY_LIMIT = 64 << 10
#: one year; browsers honour it only over a certificate they trust
HSTS = "max-age=31536000"
#: where BodyGuard leaves the caller it authenticated: (token, principal)
PREAUTH_KEY = "novacron.preauthenticated"

F = TypeVar("F", bound=Callable[..., Any])


def body_limit(limit: int | None) -> Callable[[F], F]:
    """Give an endpoint its own body limit (None: it enforces one itself while it streams)."""

    def mark(endpoint: F) -> F:
        endpoint.__novacron_body_limit__ = limit  # type: ignore[attr-defined]
        return endpoint

    return mark


#: an upload streamed to disk under its own, larger limit
streamed_body = body_limit(None)


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if self.hsts:
                    headers["Strict-Transport-Security"] = HSTS
                message["headers"] = headers.raw
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _depends_on(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return any(d.call is call or _depends_on(d, call) for d in dependant.dependencies)


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """(declared Content-Length or None, whether a body may follow at all)."""
    headers = Headers(scope=scope)
    if "transfer-encoding" in headers:
        return None, True
    length = headers.get("content-length")
    if length is None:
        return None, False
    try:
        n = int(length)
    except ValueError:
        return None, True
    return n, n > 0


async def _answer(problem: Problem, scope: Scope, send: Send) -> None:
    body = json.dumps(problem.body(scope["path"])).encode()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        # the client is still sending a body nobody will read
        (b"connection", b"close"),
        *((k.lower().encode(), v.encode()) for k, v in problem.headers.items()),
    ]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def too_large(limit: int, declared: int | None = None) -> Problem:
    got = f"{declared} bytes" if declared is not None else "more than that"
    reason = f"at most {limit} bytes are accepted here; got {got}"
    return Problem(413, "Content Too Large", f"body: {reason}", errors=[{"field": "body", "reason": reason}])


Policy = tuple[bool, int | None]


class BodyGuard:
    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self._table: list[tuple[re.Pattern[str], frozenset[str], Policy]] | None = None

    def _routes(self) -> list[tuple[re.Pattern[str], frozenset[str], Policy]]:
        """(path pattern, methods, policy) of every API route, in routing order; built on first use,
        when every router has been included."""
        if self._table is None:
            table = []
            for rc in iter_route_contexts(self.api.router.routes):
                route, path = rc.original_route, rc.path
                if isinstance(route, APIRoute) and path:
                    table.append((compile_path(path)[0], frozenset(rc.methods or ()), self._policy_of(route)))
            self._table = table
        return self._table

    def _policy(self, scope: Scope) -> Policy:
        """(needs an authenticated caller, body limit or None) of the route ``scope`` goes to."""
        for pattern, methods, policy in self._routes():
            if scope["method"] in methods and pattern.match(scope["path"]):
                return policy
        return False, DEFAULT_BODY_LIMIT  # 404/405, static files: nothing will read it anyway

    @staticmethod
    def _policy_of(route: APIRoute) -> Policy:
        from novacron.api.deps import current_principal

        needs_caller = _depends_on(route.dependant, current_principal)
        if hasattr(route.endpoint, "__novacron_body_limit__"):
            return needs_caller, route.endpoint.__novacron_body_limit__
        return needs_caller, DEFAULT_BODY_LIMIT if needs_caller else ANONYMOUS_BODY_LIMIT

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, has_body = _framing(scope)
        if not has_body:
            await self.app(scope, receive, send)
            return
        needs_caller, limit = self._policy(scope)
        if needs_caller:
            refused = await self._authenticate(scope)
            if refused is not None:
                await _answer(refused, scope, send)
                return
        if limit is not None:
            if declared is not None and declared > limit:
                await _answer(too_large(limit, declared), scope, send)
                return
            receive = _counting(receive, limit)
            if _is_json(scope):
                receive = _finite_only(receive)
        receive, send = _closing_if_unread(receive, send)
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope) -> Problem | None:
        from starlette.requests import HTTPConnection

        from novacron.api.deps import authenticate_any, bearer_token, unauthenticated

        conn = HTTPConnection(scope)
        token = bearer_token(conn)
        if not token:
            return unauthenticated()
        try:
            principal = await anyio.to_thread.run_sync(
                authenticate_any, self.api.state.ctx, token, client_address(scope)
            )
        except Problem as exc:
            return exc
        except DomainError as exc:  # a refused user token (identity/tokens.py)
            return from_domain(exc)
        scope.setdefault("state", {})[PREAUTH_KEY] = (token, principal)
        return None


def _closing_if_unread(receive: Receive, send: Send) -> tuple[Receive, Send]:
    """Answers sent before the whole body arrived (a 404/409 before an upload is read, an upload's
    413 past its size limit) say ``Connection: close``: kept open, the server reads and drops
    whatever the client goes on streaming (gigabytes of an image upload) before the next request."""
    complete = False

    async def tracked() -> Message:
        nonlocal complete
        message = await receive()
        if message["type"] == "http.disconnect" or (
            message["type"] == "http.request" and not message.get("more_body", False)
        ):
            complete = True
        return message

    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start" and not complete:
            headers = MutableHeaders(raw=list(message.get("headers", [])))
            headers["Connection"] = "close"
            message["headers"] = headers.raw
        await send(message)

    return tracked, closing


class NonFiniteNumber(HTTPException):
    """A JSON body with NaN or Infinity: a 422 naming where (``errors.py`` answers it)."""

    def __init__(self, field: str) -> None:
        self.reason = "must be a finite number (JSON has no NaN or Infinity)"
        super().__init__(422, f"{field}: {self.reason}")
        self.errors = [{"field": field, "reason": self.reason}]


class _NonFinite:
    pass


_NON_FINITE = _NonFinite()


def _non_finite_at(value: Any, path: tuple[str, ...] = ("body",)) -> str | None:
    """Where the first NaN/Infinity sits in a decoded document (``body.hints.weight``), or None."""
    if value is _NON_FINITE:
        return ".".join(path)
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if (found := _non_finite_at(item, (*path, str(key)))) is not None:
            return found
    return None


def _is_json(scope: Scope) -> bool:
    kind = Headers(scope=scope).get("content-type", "application/json").split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _finite_only(receive: Receive) -> Receive:
    """Python's JSON parser (FastAPI's) takes ``NaN``, ``Infinity`` and ``-Infinity``: a VM's
    placement hints or a quota stored with one made its every later answer a 500 (no JSON can
    carry it back out). Checked here, once the (size-limited) body is complete, for every route;
    the rare body that has those words at all is decoded once more to find where."""
    chunks: list[bytes] = []

    async def checked() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                body = b"".join(chunks)
                chunks.clear()
                if b"NaN" in body or b"Infinity" in body:
                    try:
                        doc = json.loads(body, parse_constant=lambda _: _NON_FINITE)
                    except ValueError:
                        return message  # not JSON at all: FastAPI says so
                    if (field := _non_finite_at(doc)) is not None:
                        raise NonFiniteNumber(field)
        return message

    return checked


def _counting(receive: Receive, limit: int) -> Receive:
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                # FastAPI passes an HTTPException out of its body reading: the handlers make it a 413.
                # Closing the connection: kept open, the server would read and drop whatever the
                # client streams after the answer, without end (200 MB in 0.1 s here)
                raise HTTPException(413, too_large(limit).detail, headers={"Connection": "close"})
        return message

    return counted

"""``/v1/graphql``: queries and mutations over POST, subscriptions over WebSocket.

POST takes ``{"query", "variables", "operationName"}`` from a caller authenticated as for every REST
route (``Authorization: Bearer``: a user's token or an API key). The operation runs in a worker thread
with an event loop of its own: resolvers call the (blocking) services directly, and the batch loaders
still gather their keys. A query reads in a read-only session and is not audited; a mutation writes
in one transaction and its audit record names the mutations it ran (``graphql.createVm``, ...).

The WebSocket at ``/v1/graphql/ws`` speaks ``graphql-transport-ws`` (the protocol of the
``graphql-ws`` library). The caller authenticates at the handshake as on ``/v1/events/ws`` (a bearer
header, or a browser's ``?ticket=`` for this path); a refused one is closed with 4000 + the REST
status (4401, 4403), and audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from graphql import GraphQLError, OperationType, get_operation_ast, parse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from strawberry.types import ExecutionResult

from novacron.api.audit import READ_ONLY_KEY, audit_note
from novacron.api.deps import PrincipalDep, ctx_of, handshake_principal
from novacron.api.errors import Problem, from_domain
from novacron.api.graphql.context import GraphContext
from novacron.api.graphql.loaders import Loaders
from novacron.api.graphql.schema import client_error, schema
from novacron.context import Context
from novacron.errors import DomainError
from novacron.identity.principal import Principal

router = APIRouter(tags=["graphql"])
PROTOCOL = "graphql-transport-ws"
#: how long a WebSocket may stay open without ``connection_init`` (the protocol's 4408)
INIT_TIMEOUT_S = 10
#: subscriptions one connection may run at once (each is a follower of the event log)
MAX_SUBSCRIPTIONS = 32


class GraphQLRequest(BaseModel):
    """A GraphQL request (GraphQL over HTTP, ``application/json``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    query: str = Field(min_length=1, max_length=100_000)
    variables: dict[str, Any] | None = None
    operation_name: str | None = Field(default=None, alias="operationName", max_length=256)


def _operation(body: GraphQLRequest) -> OperationType | None:
    """The kind of operation ``body`` runs (None: executing it answers why there is none)."""
    try:
        operation = get_operation_ast(parse(body.query), body.operation_name)
    except GraphQLError:
        return None
    return operation.operation if operation is not None else None


def _answer(result: ExecutionResult) -> dict[str, Any]:
    out: dict[str, Any] = {"data": result.data}
    if result.errors:
        out["errors"] = [client_error(e) for e in result.errors]
    return out


@router.post("/v1/graphql", response_model=dict[str, Any])
async def graphql_http(request: Request, body: GraphQLRequest, principal: PrincipalDep) -> JSONResponse:
    """Run a GraphQL query or mutation (the schema: ``docs/schema.graphql``, or introspection)."""
    ctx = ctx_of(request)
    kind = _operation(body)
    mutation = kind == OperationType.MUTATION
    if kind == OperationType.SUBSCRIPTION:
        request.scope["state"][READ_ONLY_KEY] = True
        message = "Subscriptions go over the WebSocket at /v1/graphql/ws (graphql-transport-ws)"
        return JSONResponse({"data": None, "errors": [{"message": message}]})
    if not mutation:
        request.scope["state"][READ_ONLY_KEY] = True  # a read: the audit middleware lets it by
    audited: list[Any] = []

    def run() -> ExecutionResult:
        opened = ctx.db.session() if mutation else ctx.db.read_session()
        with opened as session:
            context = GraphContext(ctx, principal, session, Loaders(session, principal), audited)
            return asyncio.run(
                schema.execute(
                    body.query,
                    variable_values=body.variables,
                    context_value=context,
                    operation_name=body.operation_name,
                )
            )

    result = await run_in_threadpool(run)
    if audited:
        names = [a.mutation for a in audited]
        audit_note(request).hint(
            action=("graphql." + ",".join(names))[:64], resource_id=audited[0].resource_id
        )
        audit_note(request).detail = {"graphql": names, "operation": body.operation_name}
    elif mutation:
        audit_note(request).hint(action="graphql.mutation")
    return JSONResponse(_answer(result))


async def _handshake(websocket: WebSocket) -> Principal | None:
    ctx: Context = websocket.app.state.ctx
    try:
        return await run_in_threadpool(handshake_principal, ctx, websocket)
    except (Problem, DomainError) as exc:
        problem = from_domain(exc) if isinstance(exc, DomainError) else exc
        await websocket.accept(subprotocol=PROTOCOL)
        await websocket.close(code=4000 + problem.status, reason=problem.detail[:120])
        return None


@router.websocket("/v1/graphql/ws")
async def graphql_ws(websocket: WebSocket) -> None:
    """Subscriptions over ``graphql-transport-ws``."""
    if PROTOCOL not in websocket.scope.get("subprotocols", []):
        await websocket.accept()
        await websocket.close(code=4406, reason=f"Subprotocol not acceptable: use {PROTOCOL}")
        return
    principal = await _handshake(websocket)
    if principal is None:
        return
    await websocket.accept(subprotocol=PROTOCOL)
    await Connection(websocket, GraphContext(websocket.app.state.ctx, principal, None)).serve()


class Connection:
    """One ``graphql-transport-ws`` connection: its subscriptions, each a task of its own."""

    def __init__(self, websocket: WebSocket, context: GraphContext) -> None:
        self.ws = websocket
        self.context = context
        self.running: dict[str, asyncio.Task[None]] = {}
        self.acked = False

    async def serve(self) -> None:
        try:
            async with asyncio.timeout(INIT_TIMEOUT_S):
                first = await self._receive()
            if first is None or first.get("type") != "connection_init":
                await self.ws.close(code=4408, reason="Connection initialisation timeout")
                return
            self.acked = True
            await self.ws.send_json({"type": "connection_ack"})
            while (message := await self._receive()) is not None:
                if not await self._handle(message):
                    return
        except TimeoutError:
            await self.ws.close(code=4408, reason="Connection initialisation timeout")
        except WebSocketDisconnect:
            pass
        finally:
            for task in self.running.values():
                task.cancel()

    async def _receive(self) -> dict[str, Any] | None:
        try:
            message = json.loads(await self.ws.receive_text())
        except (ValueError, KeyError):
            await self.ws.close(code=4400, reason="Invalid message received")
            return None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.ws.close(code=4400, reason="Invalid message received")
            return None
        return message

    async def _handle(self, message: dict[str, Any]) -> bool:
        kind = message["type"]
        if kind == "ping":
            await self.ws.send_json({"type": "pong"})
        elif kind == "connection_init":
            await self.ws.close(code=4429, reason="Too many initialisation requests")
            return False
        elif kind == "complete":
            task = self.running.pop(str(message.get("id")), None)
            if task is not None:
                task.cancel()
        elif kind == "subscribe":
            ident, payload = message.get("id"), message.get("payload")
            if not isinstance(ident, str) or not isinstance(payload, dict):
                await self.ws.close(code=4400, reason="Invalid message received")
                return False
            if len(self.running) >= MAX_SUBSCRIPTIONS:
                error = [{"message": f"At most {MAX_SUBSCRIPTIONS} subscriptions per connection"}]
                await self.ws.send_json({"type": "error", "id": ident, "payload": error})
                return True
            if ident in self.running:
                await self.ws.close(code=4409, reason=f"Subscriber for {ident[:64]} already exists")
                return False
            self.running[ident] = asyncio.create_task(self._subscription(ident, payload))
        return True

    async def _subscription(self, ident: str, payload: dict[str, Any]) -> None:
        try:
            body = GraphQLRequest.model_validate(payload)
        except ValueError:
            error = [{"message": "Invalid subscribe payload: query (string) is required"}]
            await self._send({"type": "error", "id": ident, "payload": error})
            return
        try:
            async for result in self._results(body):
                if result.errors and result.data is None:  # refused: no (more) results will come
                    await self._send({"type": "error", "id": ident, "payload": _answer(result)["errors"]})
                    return
                await self._send({"type": "next", "id": ident, "payload": _answer(result)})
            await self._send({"type": "complete", "id": ident})
        finally:
            self.running.pop(ident, None)

    async def _results(self, body: GraphQLRequest) -> AsyncIterator[ExecutionResult]:
        kind = _operation(body)
        if kind is not None and kind != OperationType.SUBSCRIPTION:
            error = GraphQLError("Only subscriptions go over the WebSocket: POST queries and mutations")
            yield ExecutionResult(data=None, errors=[error])
            return
        source = await schema.subscribe(
            body.query,
            variable_values=body.variables,
            context_value=self.context,
            operation_name=body.operation_name,
        )
        if isinstance(source, ExecutionResult):  # refused before it started (validation, limits)
            yield source
            return
        try:
            async for result in source:
                yield result
        except Exception as exc:  # noqa: BLE001 - a resolver's refusal (or failure) ends it, told as an error
            yield ExecutionResult(data=None, errors=[GraphQLError(str(exc), original_error=exc)])
        finally:
            with contextlib.suppress(Exception):
                await source.aclose()

    async def _send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self.ws.send_json(message)

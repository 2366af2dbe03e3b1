"""/v1/events: the event log, as a page, as server-sent events, or over WebSocket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from novacron import events
from novacron.api.deps import CtxDep, handshake_principal, require_handshake, service
from novacron.api.errors import Problem, from_domain
from novacron.context import Context
from novacron.errors import DomainError
from novacron.events import EventService
from novacron.identity.principal import Principal

router = APIRouter(tags=["events"])

EventReader = Annotated[EventService, Depends(service(EventService, "event:read", write=False))]
#: the stream may be opened by a browser's EventSource, with a ticket instead of a header
CanFollowEvents = Annotated[Principal, Depends(require_handshake("event:read"))]
#: sequence numbers are 64-bit integers in the database: a larger ``after`` is a 422, not an overflow
MAX_SEQ = 2**63 - 1


class EventOut(BaseModel):
    seq: int
    time: str
    type: str
    resource_type: str
    resource_id: str
    tenant_id: str | None
    project_id: str | None
    data: dict[str, Any]


class EventPage(BaseModel):
    items: list[EventOut]
    last_seq: int


def _types(types: str | None) -> list[str]:
    return [t for t in (types or "").split(",") if t]


@router.get("/v1/events", response_model=EventPage)
def list_events(
    log: EventReader,
    after: int = Query(0, ge=0, le=MAX_SEQ, description="only events with a larger seq"),
    limit: int = Query(100, ge=1, le=1000),
    types: str | None = Query(None, description="e.g. vm.*,task.failed"),
    tail: bool = Query(False, description="the newest `limit` events instead of those after `after`"),
) -> EventPage:
    items = [EventOut(**events.as_dict(e)) for e in log.page(after, limit, _types(types), tail=tail)]
    return EventPage(items=items, last_seq=items[-1].seq if items else after)


@router.get("/v1/events/stream", responses={200: {"content": {"text/event-stream": {}}}})
async def stream_events(
    request: Request,
    ctx: CtxDep,
    principal: CanFollowEvents,
    after: int | None = Query(
        None, ge=0, le=MAX_SEQ, description="replay from here; default: only new events"
    ),
    types: str | None = None,
) -> StreamingResponse:
    """Server-sent events; ``Last-Event-ID`` resumes where a dropped connection stopped."""
    last_id = request.headers.get("last-event-id")
    if last_id is not None and last_id.isascii() and last_id.isdigit() and int(last_id) <= MAX_SEQ:
        after = int(last_id)

    async def body() -> AsyncIterator[str]:
        yield ": following events\n\n"
        async for batch in events.follow(ctx.db, principal, after, _types(types)):
            if await request.is_disconnected():
                return
            for e in batch:
                yield f"id: {e['seq']}\nevent: {e['type']}\ndata: {json.dumps(e)}\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.websocket("/v1/events/ws")
async def events_ws(websocket: WebSocket, after: int | None = None, types: str | None = None) -> None:
    ctx: Context = websocket.app.state.ctx
    try:
        principal = await run_in_threadpool(handshake_principal, ctx, websocket)
        if not principal.can("event:read"):
            raise Problem(403, "Forbidden", "missing event:read")
    except (Problem, DomainError) as exc:
        problem = from_domain(exc) if isinstance(exc, DomainError) else exc
        await websocket.accept()
        await websocket.close(code=4000 + problem.status, reason=problem.detail[:120])
        return
    start = await events.start_seq(ctx.db, after)
    await websocket.accept()
    async for batch in events.follow(ctx.db, principal, start, _types(types)):
        for e in batch:
            await websocket.send_json(e)

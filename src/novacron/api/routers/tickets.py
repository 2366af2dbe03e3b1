"""/v1/tickets: single-use, 30-second tickets for WebSocket and event-stream handshakes."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from novacron.api.deps import CtxDep, PrincipalDep
from novacron.identity import tickets

router = APIRouter(tags=["identity"])


class TicketRequest(BaseModel):
    path: str = Field(
        ...,
        max_length=512,
        description="the one path it opens, e.g. /v1/vms/{id}/console",
        examples=["/v1/events/ws"],
    )


class TicketOut(BaseModel):
    ticket: str
    path: str
    expires_in: int = Field(description="seconds; a ticket is good for one handshake")


@router.post("/v1/tickets", response_model=TicketOut, status_code=201)
async def create_ticket(body: TicketRequest, ctx: CtxDep, principal: PrincipalDep) -> TicketOut:
    """Trade the caller's access token for a ticket that opens ``path`` once (``?ticket=``), for
    clients that cannot send an Authorization header there (browsers' WebSocket, EventSource)."""
    ticket = await run_in_threadpool(tickets.issue, ctx.db, principal, body.path)
    return TicketOut(ticket=ticket, path=body.path, expires_in=tickets.TTL_S)

"""The consoles over WebSocket: bytes in both directions, bridged to the guest's serial port
(``/v1/vms/{id}/console``) or to QEMU's VNC server of its screen (``/v1/vms/{id}/vnc``, binary RFB
for noVNC; QEMU serves it on a unix socket only, so this authenticated relay is its one way in).

A VM of this process's embedded agent is bridged straight to QEMU's unix socket. A VM on another
host is relayed: the server opens a console session, asks the host's agent (a ``console_attach``
operation) to dial back to ``/v1/agent/console/{session}`` with its node credential, and joins the
two WebSockets. Sessions live in this process only; the agent is told which replica to dial.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from novacron.api.deps import bearer_token, handshake_principal
from novacron.api.errors import Problem, from_domain
from novacron.compute import consoles, nodes
from novacron.errors import DomainError
from novacron.tasks.runner import StepFailed

if TYPE_CHECKING:
    from novacron.context import Context

router = APIRouter(tags=["vms"])

Receive = Callable[[], Awaitable[bytes | None]]
Send = Callable[[bytes], Awaitable[None]]


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    # accept, then close with a reason: browsers never see the reason of a refused handshake
    await websocket.accept()
    await websocket.close(code=code, reason=reason[:120])


def _ws_receiver(websocket: WebSocket) -> Receive:
    async def receive() -> bytes | None:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        return message.get("bytes") or (message.get("text") or "").encode()

    return receive


async def _bridge(a: tuple[Receive, Send], b: tuple[Receive, Send]) -> None:
    """Copy bytes both ways until either side ends."""

    async def pump(receive: Receive, send: Send) -> None:
        while (data := await receive()) is not None and data != b"":
            await send(data)

    pumps = [asyncio.create_task(pump(a[0], b[1])), asyncio.create_task(pump(b[0], a[1]))]
    try:
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    except WebSocketDisconnect:
        pass
    finally:
        for p in pumps:
            p.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


@router.websocket("/v1/vms/{vm_id}/console")
async def console(websocket: WebSocket, vm_id: str) -> None:
    await _open(websocket, vm_id, "serial")


@router.websocket("/v1/vms/{vm_id}/vnc")
async def vnc(websocket: WebSocket, vm_id: str) -> None:
    """The graphical console: the VM's screen as RFB (VNC) in binary WebSocket messages."""
    await _open(websocket, vm_id, "vnc")


async def _open(websocket: WebSocket, vm_id: str, kind: str) -> None:
    ctx = websocket.app.state.ctx

    def authorize() -> tuple[str, str | None]:
        return consoles.target(ctx, handshake_principal(ctx, websocket), vm_id)

    try:
        vm_id, host_id = await run_in_threadpool(authorize)
    except (Problem, DomainError) as exc:
        problem = from_domain(exc) if isinstance(exc, DomainError) else exc
        # close with 4000 + HTTP status: the same answer whether or not the VM exists
        await _refuse(websocket, 4000 + problem.status, problem.detail)
        return
    if host_id is None:
        await _refuse(websocket, 4409, "The VM is not placed on a host; start it first.")
        return
    agent = ctx.agent
    if agent is not None and host_id == agent.host_id:
        socket_of = agent.driver.vnc_socket if kind == "vnc" else agent.driver.console_socket
        await _local_console(websocket, socket_of(vm_id))
    else:
        await _relayed_console(websocket, ctx, vm_id, host_id, kind)


async def _local_console(websocket: WebSocket, socket_path: Any) -> None:
    try:
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
    except OSError:
        await _refuse(websocket, 4409, "VM console is not available (is the VM running?)")
        return
    await websocket.accept()

    async def to_guest(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    try:
        await _bridge((_ws_receiver(websocket), websocket.send_bytes), (lambda: reader.read(65536), to_guest))
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await websocket.close()


async def _relayed_console(websocket: WebSocket, ctx: Context, vm_id: str, host_id: str, kind: str) -> None:
    session, relay = consoles.open_relay(ctx, host_id)
    try:
        try:
            await run_in_threadpool(consoles.request_attach, ctx, host_id, vm_id, session, kind)
            async with asyncio.timeout(consoles.ATTACH_TIMEOUT_S):
                agent_ws: WebSocket = await relay.agent_side
        except (StepFailed, TimeoutError) as exc:
            reason = str(exc) if isinstance(exc, StepFailed) else "the host's agent did not connect"
            await _refuse(websocket, 4409, f"VM console is not available: {reason}")
            return
        await websocket.accept()
        try:
            await _bridge(
                (_ws_receiver(websocket), websocket.send_bytes), (_ws_receiver(agent_ws), agent_ws.send_bytes)
            )
        finally:
            with contextlib.suppress(Exception):
                await websocket.close()
    finally:
        consoles.close_relay(ctx, session)


@router.websocket("/v1/agent/console/{session}")
async def agent_console(websocket: WebSocket, session: str) -> None:
    """The agent's end of a relayed console: held open until the user's end closes."""
    ctx = websocket.app.state.ctx
    token = bearer_token(websocket) or ""
    if not token.startswith(nodes.NODE_PREFIX):
        await _refuse(websocket, 4401, "a node credential is required")
        return
    try:
        principal = await run_in_threadpool(nodes.authenticate, ctx.db, token)
    except DomainError as exc:
        problem = from_domain(exc)
        await _refuse(websocket, 4000 + problem.status, problem.detail)
        return
    relay = consoles.waiting_relay(ctx, session, principal.user_id)
    if relay is None:
        await _refuse(websocket, 4404, "no such console session")
        return
    await websocket.accept()
    relay.agent_side.set_result(websocket)
    await relay.finished.wait()
    with contextlib.suppress(Exception):
        await websocket.close()

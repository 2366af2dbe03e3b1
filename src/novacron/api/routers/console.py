"""The serial console over WebSocket: bytes in both directions, bridged to QEMU's unix socket."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from novacron.api.errors import Problem
from novacron.compute.scope import get_visible
from novacron.db.models import VM

router = APIRouter(tags=["vms"])


@router.websocket("/v1/vms/{vm_id}/console")
async def console(websocket: WebSocket, vm_id: str) -> None:
    ctx = websocket.app.state.ctx
    header = websocket.headers.get("authorization", "")
    token = header.partition(" ")[2] or websocket.query_params.get("access_token", "")

    def authorize() -> tuple[str, str | None]:
        principal = ctx.tokens.authenticate(token)
        if not principal.can("vm:console"):
            raise Problem(403, "Forbidden", "missing vm:console")
        with ctx.db.session() as s:
            vm = get_visible(s, VM, vm_id, principal, "vm")
            return vm.id, vm.host_id

    try:
        vm_id, host_id = await run_in_threadpool(authorize)
    except Problem as exc:
        # accept, then close with 4000 + HTTP status: the same answer whether or not the VM exists
        await websocket.accept()
        await websocket.close(code=4000 + exc.status, reason=exc.detail[:120])
        return
    agent = ctx.agent
    if agent is None or host_id != agent.host_id:
        await websocket.accept()
        await websocket.close(code=4409, reason="VM is not running on a reachable host")
        return
    try:
        reader, writer = await asyncio.open_unix_connection(str(agent.driver.console_socket(vm_id)))
    except OSError:
        await websocket.accept()
        await websocket.close(code=4409, reason="VM console is not available (is the VM running?)")
        return
    await websocket.accept()

    async def guest_to_client() -> None:
        while data := await reader.read(4096):
            await websocket.send_bytes(data)

    async def client_to_guest() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes") or (message.get("text") or "").encode()
            writer.write(data)
            await writer.drain()

    tasks = [asyncio.create_task(guest_to_client()), asyncio.create_task(client_to_guest())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except WebSocketDisconnect:
        pass
    finally:
        for t in tasks:
            t.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await websocket.close()

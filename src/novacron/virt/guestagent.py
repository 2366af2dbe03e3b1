"""qemu-guest-agent over the VM's virtio-serial channel ``org.qemu.guest_agent.0``.

Only what a backup needs: freeze the guest's filesystems just before the point in time and
thaw them right after. A guest without the agent never answers on the channel; after a short
wait the backup goes on crash-consistent (and says so) instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
#: how long a guest has to answer before it is taken to have no agent
SYNC_TIMEOUT_S = 2.0
#: fsfreeze flushes the guest's dirty pages first: give it time
FREEZE_TIMEOUT_S = 30.0


async def _command(socket: Path, command: str, timeout_s: float) -> Any:
    """Run one agent command after a guest-sync handshake (which discards stale replies)."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(socket)), timeout_s)
    try:
        token = random.randrange(1, 2**31)
        writer.write(json.dumps({"execute": "guest-sync", "arguments": {"id": token}}).encode() + b"\n")
        writer.write(json.dumps({"execute": command}).encode() + b"\n")
        await writer.drain()
        synced = False
        async with asyncio.timeout(timeout_s):
            while True:
                line = await reader.readline()
                if not line:
                    raise ConnectionError("the guest agent channel closed")
                with contextlib.suppress(ValueError):
                    reply = json.loads(line.strip(b"\xff").decode())
                    if not synced:
                        synced = reply.get("return") == token
                        continue
                    if "error" in reply:
                        raise RuntimeError(reply["error"].get("desc", "guest agent error"))
                    return reply.get("return")
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def freeze(socket: Path) -> bool:
    """Freeze the guest's filesystems; False when there is no agent to ask (crash-consistent)."""
    if not socket.exists():
        return False
    try:
        await _command(socket, "guest-ping", SYNC_TIMEOUT_S)
    except (OSError, TimeoutError, ConnectionError, RuntimeError):
        return False
    try:
        frozen = await _command(socket, "guest-fsfreeze-freeze", FREEZE_TIMEOUT_S)
    except (OSError, TimeoutError, ConnectionError, RuntimeError) as exc:
        log.warning("guest agent answered but could not freeze: %s", exc)
        await thaw(socket)
        return False
    return isinstance(frozen, int)


async def thaw(socket: Path) -> None:
    try:
        await _command(socket, "guest-fsfreeze-thaw", FREEZE_TIMEOUT_S)
    except (OSError, TimeoutError, ConnectionError, RuntimeError) as exc:
        log.error("could not thaw the guest's filesystems: %s", exc)

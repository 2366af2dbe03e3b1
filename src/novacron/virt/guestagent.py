"""qemu-guest-agent over the VM's virtio-serial channel ``org.qemu.guest_agent.0``.

A backup freezes the guest's filesystems just before the point in time and thaws them right
after. A guest without the agent never answers on the channel; after a short wait the backup goes
on crash-consistent (and says so) instead of failing. The node agent also reads what the guest
says about itself (``info``: addresses per NIC, hostname, OS, filesystems), shown with the VM.
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
    return (await _commands(socket, [command], timeout_s))[0]


async def _commands(socket: Path, commands: list[str], timeout_s: float) -> list[Any]:
    """Run agent commands in order on one connection, after one guest-sync handshake; a command
    the guest's agent refuses answers None (an old agent lacks some), a dead channel raises."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(socket)), timeout_s)
    try:
        token = random.randrange(1, 2**31)
        writer.write(json.dumps({"execute": "guest-sync", "arguments": {"id": token}}).encode() + b"\n")
        for command in commands:
            writer.write(json.dumps({"execute": command}).encode() + b"\n")
        await writer.drain()
        synced = False
        answers: list[Any] = []
        async with asyncio.timeout(timeout_s):
            while len(answers) < len(commands):
                line = await reader.readline()
                if not line:
                    raise ConnectionError("the guest agent channel closed")
                with contextlib.suppress(ValueError):
                    reply = json.loads(line.strip(b"\xff").decode())
                    if not synced:
                        synced = reply.get("return") == token
                        continue
                    if "error" in reply and len(commands) == 1:
                        raise RuntimeError(reply["error"].get("desc", "guest agent error"))
                    answers.append(reply.get("return"))
        return answers
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


#: what the node agent asks a guest about itself, in one connection
INFO_COMMANDS = [
    "guest-network-get-interfaces",
    "guest-get-host-name",
    "guest-get-osinfo",
    "guest-get-fsinfo",
]
OS_FIELDS = ("pretty-name", "name", "version", "kernel-release", "machine")
#: a guest whose agent holds the channel but does not answer within this is skipped this time
INFO_TIMEOUT_S = 1.5


async def info(socket: Path) -> dict[str, Any] | None:
    """Addresses per NIC, hostname, OS and filesystems as the guest's agent tells them, in the
    shape ``compute/guestinfo.py`` stores; None when nothing answers."""
    try:
        nics, host, osinfo, fss = await _commands(socket, INFO_COMMANDS, INFO_TIMEOUT_S)
    except (OSError, TimeoutError, ConnectionError, RuntimeError):
        return None
    interfaces = [
        {
            "name": str(n.get("name", ""))[:64],
            "mac": str(n.get("hardware-address", ""))[:17],
            "ips": [
                f"{a['ip-address']}/{a.get('prefix', 0)}"
                for a in n.get("ip-addresses") or []
                if "ip-address" in a
            ],
        }
        for n in nics or []
        if n.get("name") != "lo"
    ]
    osinfo = osinfo or {}
    filesystems = [
        {
            "mountpoint": str(f.get("mountpoint", ""))[:256],
            "type": str(f.get("type", ""))[:32],
            "total_bytes": f.get("total-bytes"),
            "used_bytes": f.get("used-bytes"),
        }
        for f in fss or []
    ]
    return {
        "hostname": str((host or {}).get("host-name", ""))[:255],
        "os": {k: str(osinfo[k])[:255] for k in OS_FIELDS if k in osinfo},
        "interfaces": interfaces[:32],
        "filesystems": filesystems[:64],
    }

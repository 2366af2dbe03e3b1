"""When an incoming migration's guest really ran: QEMU's own ``RESUME`` event on the destination.

The destination QEMU starts without ``-S``, so it runs the guest by itself as soon as the last of
the state has arrived, with no control-plane round trip; the pause the guest saw then ends at a
moment no later call can observe. A second QMP monitor, on a socket of its own (the first one
serves one client at a time and this process's other calls queue on it), is opened by a
background task for the length of the migration and keeps the timestamp QEMU puts on ``RESUME``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from novacron.virt.qemu import QemuDriver

#: the longest a destination waits for its state: the source's own transfer timeout
WATCH_S = 4 * 3600.0
_watchers: dict[str, asyncio.Task[float | None]] = {}


def events_socket(drv: QemuDriver, instance_id: str) -> Path:
    """The destination's second monitor, beside the first one (short path: sun_path is 108 bytes)."""
    qmp = drv.qmp_socket(instance_id)
    return qmp.with_name(qmp.stem + "-in.qmp")


def monitor_args(drv: QemuDriver, instance_id: str) -> list[str]:
    """QEMU arguments for the second monitor (a control monitor nobody else talks to)."""
    path = events_socket(drv, instance_id)
    return [
        "-chardev",
        f"socket,id=mig-events,path={path},server=on,wait=off",
        "-mon",
        "chardev=mig-events,mode=control",
    ]


def watch(drv: QemuDriver, instance_id: str) -> None:
    """Start listening for the guest's ``RESUME`` on the destination (call before ``migrate-incoming``)."""
    stop(drv, instance_id)
    path = events_socket(drv, instance_id)
    _watchers[str(path)] = asyncio.create_task(_resumed(path), name=f"resume-watch:{instance_id}")


def stop(drv: QemuDriver, instance_id: str) -> None:
    """Stop watching (the guest is resumed by a ``cont``, whose time the caller knows)."""
    if (task := _watchers.pop(str(events_socket(drv, instance_id)), None)) is not None:
        task.cancel()


async def resumed_at(drv: QemuDriver, instance_id: str, wait_s: float = 2.0) -> float | None:
    """When QEMU says the incoming guest ran (seconds since the epoch); None when it was not
    watched here (another process or event loop started it) or said nothing in ``wait_s``."""
    task = _watchers.pop(str(events_socket(drv, instance_id)), None)
    if task is None or task.get_loop() is not asyncio.get_running_loop():
        return None
    try:
        return await asyncio.wait_for(asyncio.shield(task), wait_s)
    except (TimeoutError, asyncio.CancelledError):
        task.cancel()
        return None


async def _resumed(path: Path) -> float | None:
    with contextlib.suppress(OSError, ValueError, TimeoutError):
        async with asyncio.timeout(WATCH_S):
            for _ in range(100):  # QEMU makes the socket as it starts
                if path.exists():
                    break
                await asyncio.sleep(0.02)
            reader, writer = await asyncio.open_unix_connection(str(path))
            try:
                await reader.readline()  # the greeting
                writer.write(b'{"execute": "qmp_capabilities"}\n')
                await writer.drain()
                while line := await reader.readline():
                    message = json.loads(line)
                    if message.get("event") == "RESUME":
                        stamp = message["timestamp"]
                        return float(stamp["seconds"]) + float(stamp["microseconds"]) / 1e6
                    if message.get("event") == "SHUTDOWN":
                        return None
            finally:
                writer.close()
    return None

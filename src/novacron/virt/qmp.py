"""One QMP command over a QEMU monitor socket, with the ``qemu.qmp`` library.

The driver connects per operation instead of holding a connection: QEMU's QMP socket
serves one client at a time, so a held connection would lock out every other user
(backup, migration, an operator's ``socat``), and a per-call connection survives
driver restarts and event-loop changes with nothing to re-establish. A call costs a
few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from pathlib import Path
from typing import Any

from qemu.qmp import ExecuteError, QMPClient, QMPError

from novacron.monitoring import tracing
from novacron.virt.base import DriverError

# qemu.qmp logs every failed connect and disconnect at ERROR/WARNING; we report errors ourselves.
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)


class QmpUnavailable(DriverError):
    """The monitor socket did not answer (no process, or another client holds it)."""


_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _lock(socket_path: Path) -> asyncio.Lock:
    """One lock per socket and event loop: our own calls queue here instead of in QEMU's backlog."""
    per_loop = _locks.setdefault(asyncio.get_running_loop(), {})
    return per_loop.setdefault(str(socket_path), asyncio.Lock())


async def _connect(client: QMPClient, socket_path: Path, deadline: float) -> None:
    """Connect, retrying while the socket refuses (another client holds it, or QEMU is starting)."""
    delay = 0.02
    while True:
        remaining = deadline - time.monotonic()
        try:
            await asyncio.wait_for(client.connect(str(socket_path)), max(0.1, remaining))
            return
        except (QMPError, OSError, TimeoutError) as e:
            if time.monotonic() + delay >= deadline or not socket_path.exists():
                raise QmpUnavailable(
                    f"QMP socket {socket_path} does not answer: {e or type(e).__name__}"
                ) from e
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


async def qmp_call(
    socket_path: Path, command: str, arguments: dict[str, Any] | None = None, timeout_s: float = 10.0
) -> Any:
    """Run ``command`` on the QMP socket and return its ``return`` value."""
    deadline = time.monotonic() + timeout_s
    # a span only within an operation's trace: the agent's per-second polling makes none
    with tracing.child(tracing.AGENT, f"qmp {command}", {"qmp.command": command}):
        return await _call(socket_path, command, arguments, timeout_s, deadline)


async def _call(
    socket_path: Path, command: str, arguments: dict[str, Any] | None, timeout_s: float, deadline: float
) -> Any:
    async with _lock(socket_path):
        client = QMPClient("novacron")
        try:
            await _connect(client, socket_path, deadline)
            try:
                return await asyncio.wait_for(client.execute(command, arguments), timeout_s)
            except ExecuteError as e:
                raise DriverError(f"QMP {command} failed: {e.error.error.desc}") from e
            except (QMPError, OSError, TimeoutError) as e:
                if command == "quit":
                    return {}
                raise QmpUnavailable(f"QMP {command} on {socket_path} got no answer: {e!r}") from e
        finally:
            # closing a dead connection cannot fail usefully
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 5.0)

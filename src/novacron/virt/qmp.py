"""One QMP command over a QEMU monitor socket, with the ``qemu.qmp`` library.

The driver connects per operation instead of holding a connection: QEMU's QMP socket
serves one client at a time, so a held connection would lock out every other user
(backup, migration, an operator's ``socat``), and a per-call connection survives
driver restarts and event-loop changes with nothing to re-establish. A call costs a
few milliseconds; ``qmp_session`` runs several commands on one connection (a metrics sample).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from qemu.qmp import ExecuteError, QMPClient, QMPError

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


class QmpSession:
    """One connection to a QEMU monitor: several commands for the price of one connect."""

    def __init__(self, client: QMPClient, socket_path: Path, timeout_s: float) -> None:
        self._client = client
        self._socket_path = socket_path
        self._timeout_s = timeout_s

    async def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run ``command`` and return its ``return`` value (``DriverError`` when QEMU refuses it)."""
        try:
            return await asyncio.wait_for(self._client.execute(command, arguments), self._timeout_s)
        except ExecuteError as e:
            raise DriverError(f"QMP {command} failed: {e.error.error.desc}") from e
        except (QMPError, OSError, TimeoutError) as e:
            if command == "quit":
                return {}
            raise QmpUnavailable(f"QMP {command} on {self._socket_path} got no answer: {e!r}") from e


@contextlib.asynccontextmanager
async def qmp_session(socket_path: Path, timeout_s: float = 10.0) -> AsyncIterator[QmpSession]:
    """A connection to the QMP socket for the body of the ``async with`` (our other calls queue)."""
    deadline = time.monotonic() + timeout_s
    async with _lock(socket_path):
        client = QMPClient("novacron")
        try:
            await _connect(client, socket_path, deadline)
            yield QmpSession(client, socket_path, timeout_s)
        finally:
            # closing a dead connection cannot fail usefully
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 5.0)


async def qmp_call(
    socket_path: Path, command: str, arguments: dict[str, Any] | None = None, timeout_s: float = 10.0
) -> Any:
    """Run ``command`` on the QMP socket and return its ``return`` value."""
    async with qmp_session(socket_path, timeout_s) as session:
        return await session.execute(command, arguments)

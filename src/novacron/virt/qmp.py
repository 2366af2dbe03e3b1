"""QMP over a QEMU monitor socket: one command with the ``qemu.qmp`` library, or a lean session.

The driver connects per operation instead of holding a connection: QEMU's QMP socket
serves one client at a time, so a held connection would lock out every other user
(backup, migration, an operator's ``socat``), and a per-call connection survives
driver restarts and event-loop changes with nothing to re-establish. A call costs a
few milliseconds.

``qmp_session`` runs several commands on one connection and speaks QMP's line protocol itself:
every running VM is sampled every second, and the library's per-connection cost (1.3 ms of CPU
here) was most of a sample's; the session's is 0.4 ms for two commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import EventListener, ExecuteError, QMPClient, QMPError

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


T = TypeVar("T")
#: the longest QMP message a session reads (answers grow with a VM's block graph)
MAX_MESSAGE = 16 << 20


async def _connect(open_: Callable[[], Awaitable[T]], socket_path: Path, deadline: float) -> T:
    """Connect, retrying while the socket refuses (another client holds it, or QEMU is starting)."""
    delay = 0.02
    while True:
        remaining = deadline - time.monotonic()
        try:
            return await asyncio.wait_for(open_(), max(0.1, remaining))
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
            await _connect(lambda: client.connect(str(socket_path)), socket_path, deadline)
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


class QmpSession:
    """Commands on one monitor connection, as QMP's JSON lines (events in between are skipped)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, socket_path: Path, timeout_s: float
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._socket_path = socket_path
        self._timeout_s = timeout_s

    @classmethod
    async def open(cls, socket_path: Path, timeout_s: float) -> QmpSession:
        """Connect, read QEMU's greeting and enter command mode."""
        reader, writer = await asyncio.open_unix_connection(str(socket_path), limit=MAX_MESSAGE)
        session = cls(reader, writer, socket_path, timeout_s)
        try:
            # QEMU greets a client once it serves it (one at a time): the wait is the caller's timeout
            if "QMP" not in await session._answer():
                raise ConnectionError(f"{socket_path} is not a QMP monitor")
            await session.execute("qmp_capabilities")
        except BaseException:
            session.close()
            raise
        return session

    def close(self) -> None:
        """End the connection (QEMU then serves its next client)."""
        self._writer.close()

    async def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run ``command`` and return its ``return`` value (``DriverError`` when QEMU refuses it)."""
        request: dict[str, Any] = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        # as qmp_call: a span only within an operation's trace, none for the per-second sample
        with tracing.child(tracing.AGENT, f"qmp {command}", {"qmp.command": command}):
            try:
                async with asyncio.timeout(self._timeout_s):
                    self._writer.write(json.dumps(request).encode() + b"\n")
                    await self._writer.drain()
                    answer = await self._answer()
            except (OSError, ValueError, TimeoutError) as e:  # ValueError: a line over MAX_MESSAGE
                raise QmpUnavailable(f"QMP {command} on {self._socket_path} got no answer: {e!r}") from e
            if "error" in answer:
                raise DriverError(f"QMP {command} failed: {answer['error'].get('desc', answer['error'])}")
            return answer.get("return")

    async def _answer(self) -> dict[str, Any]:
        while True:
            line = await self._reader.readline()
            if not line:
                raise ConnectionResetError("QEMU closed the monitor connection")
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            if not isinstance(message, dict):
                raise ConnectionError(f"not a QMP message: {line[:200]!r}")
            if "event" not in message:
                return message


@contextlib.asynccontextmanager
async def qmp_session(socket_path: Path, timeout_s: float = 10.0) -> AsyncIterator[QmpSession]:
    """A monitor connection for the body of the ``async with``; this process's other calls queue."""
    deadline = time.monotonic() + timeout_s
    async with _lock(socket_path):
        session = await _connect(lambda: QmpSession.open(socket_path, timeout_s), socket_path, deadline)
        try:
            yield session
        finally:
            session.close()


async def qmp_call_until_event(  # noqa: PLR0913 (a command, the event it causes and how long to wait)
    socket_path: Path,
    command: str,
    arguments: dict[str, Any],
    event: str,
    match: Callable[[dict[str, Any]], bool],
    timeout_s: float,
) -> None:
    """Run ``command`` and wait, on the same connection, for the ``event`` it causes (``match``
    tells it by its data): ``device_del`` only asks the guest, and ``DEVICE_DELETED`` says it let go."""
    deadline = time.monotonic() + timeout_s
    async with _lock(socket_path):
        client = QMPClient("novacron")
        try:
            await _connect(lambda: client.connect(str(socket_path)), socket_path, deadline)
            listener = EventListener(event)
            with client.listen(listener):
                try:
                    await asyncio.wait_for(client.execute(command, arguments), 10.0)
                except ExecuteError as e:
                    raise DriverError(f"QMP {command} failed: {e.error.error.desc}") from e
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise DriverError(f"QMP {command}: no {event} within {timeout_s:.0f} s")
                    try:
                        message = await asyncio.wait_for(listener.get(), remaining)
                    except TimeoutError:
                        continue
                    data: Any = message.get("data")
                    if isinstance(data, dict) and match(data):
                        return
        except (QMPError, OSError) as e:
            raise QmpUnavailable(f"QMP {command} on {socket_path} got no answer: {e!r}") from e
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 5.0)

"""``novacron vm console``: the VM's serial console over the API's WebSocket.

On a terminal: raw mode, every key goes to the guest, Ctrl-] detaches and restores the terminal.
Without a terminal: stdin is piped to the guest and the guest's output to stdout; after stdin ends,
the connection closes once the guest has been quiet for ``--linger`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import sys
from collections.abc import Iterator
from typing import Any

import typer

from novacron.cli.client import CliError
from novacron.cli.common import client_of, resolve_vm
from novacron.cli.output import info

DETACH = b"\x1d"  # Ctrl-]


def ws_url(server: str, vm_id: str) -> str:
    base = server.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return f"{base}/v1/vms/{vm_id}/console"


def split_detach(data: bytes) -> tuple[bytes, bool]:
    """The bytes to send before a detach key, and whether the detach key was pressed."""
    head, sep, _ = data.partition(DETACH)
    return head, bool(sep)


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def _connect(url: str, token: str, tls: ssl.SSLContext | None) -> tuple[Any, Any]:
    """Open the console's WebSocket: (its context manager, to leave at the end; the connection)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        # the header, never a token in the URL; wss: verified like the REST calls
        ws_cm = connect(url, additional_headers=headers, max_size=None, open_timeout=15, ssl=tls)
        ws = await ws_cm.__aenter__()
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise CliError(
            f"the server refused the console (HTTP {status})",
            hint="The VM must run on a reachable host; your token needs vm:console.",
        ) from exc
    except (OSError, TimeoutError) as exc:
        raise CliError(f"cannot open the console WebSocket at {url}: {exc}", exit_code=2) from exc
    return ws_cm, ws


def _feed_stdin(
    loop: asyncio.AbstractEventLoop, stdin_fd: int, keys: asyncio.Queue[bytes]
) -> list[asyncio.Task[None]]:
    """Put what stdin gives into ``keys`` (``b""`` when it ends): watched by the event loop, or
    read in a thread (returned, to cancel) when the loop cannot watch it."""

    def on_stdin() -> None:
        try:
            data = os.read(stdin_fd, 4096)
        except OSError:
            data = b""
        keys.put_nowait(data)
        if not data:
            loop.remove_reader(stdin_fd)

    async def pump_blocking() -> None:
        # regular files cannot be watched by the event loop: read them in a thread
        while True:
            data = await loop.run_in_executor(None, os.read, stdin_fd, 65536)
            keys.put_nowait(data)
            if not data:
                return

    try:
        loop.add_reader(stdin_fd, on_stdin)
    except (OSError, ValueError):
        return [asyncio.create_task(pump_blocking())]
    return []


async def _bridge(
    url: str, token: str, interactive: bool, linger: float, tls: ssl.SSLContext | None = None
) -> str:
    """Run the session; returns why it ended."""
    from websockets.exceptions import ConnectionClosed

    loop = asyncio.get_running_loop()
    stdin_fd = sys.stdin.fileno()
    out = sys.stdout.buffer
    last_output = loop.time()
    ws_cm, ws = await _connect(url, token, tls)
    keys: asyncio.Queue[bytes] = asyncio.Queue()

    async def guest_to_user() -> str:
        nonlocal last_output
        try:
            async for message in ws:
                data = message if isinstance(message, bytes) else message.encode()
                out.write(data)
                out.flush()
                last_output = loop.time()
        except ConnectionClosed:
            pass
        code = ws.close_code
        reason = ws.close_reason or ""
        if code is not None and code >= 4000:
            raise CliError(f"console closed by the server ({code - 4000}): {reason}")
        return "the console was closed"

    async def user_to_guest() -> str:
        while True:
            data = await keys.get()
            if not data:
                break
            head, detach = split_detach(data) if interactive else (data, False)
            if head:
                await ws.send(head)
            if detach:
                return "detached"
        # stdin ended: let the guest answer, then close once it has been quiet for a while
        while loop.time() - last_output < linger:
            await asyncio.sleep(0.1)
        return "input ended"

    tasks = [asyncio.create_task(guest_to_user()), asyncio.create_task(user_to_guest())]
    helpers = _feed_stdin(loop, stdin_fd, keys)
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).result()
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(stdin_fd)
        for t in (*tasks, *helpers):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await ws_cm.__aexit__(None, None, None)


def console(
    ctx: typer.Context,
    vm: str = typer.Argument(..., help="VM name or id"),
    linger: float = typer.Option(
        2.0,
        "--linger",
        min=0,
        help="without a terminal: seconds of guest silence to wait for after stdin ends",
    ),
) -> None:
    """Attach to the VM's serial console (detach with Ctrl-])."""
    client = client_of(ctx)
    found: dict[str, Any] = resolve_vm(ctx, vm)  # also refreshes an expired access token
    if found.get("state") not in ("running", "paused"):
        raise CliError(
            f"VM {found['name']} is {found.get('state')}; its console exists only while it runs",
            hint=f"Start it with: novacron vm start {found['name']}",
        )
    url = ws_url(client.server, str(found["id"]))
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        info(f"Connected to the console of {found['name']}. Press Ctrl-] to detach.")
        with raw_terminal(sys.stdin.fileno()):
            why = asyncio.run(_bridge(url, client.token, True, linger, client.ssl_context))
        info(f"\r\n[dim]{why} from {found['name']}; terminal restored.[/]")
    else:
        asyncio.run(_bridge(url, client.token, False, linger, client.ssl_context))

"""A minimal RFB (VNC) client for the tests and the console benchmark: handshake, raw updates, keys.

It speaks RFB 3.8 with security type None (QEMU's VNC on a unix socket has no password: the
socket's mode and NovaCron's ticketed relay are its access control) and asks for the Raw encoding
only, so updates are simple to take apart. The transport is a pair of coroutines, so the same
client reads QEMU's unix socket directly or the platform's WebSocket relay.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Recv = Callable[[], Awaitable[bytes]]
Send = Callable[[bytes], Awaitable[None]]

#: X11 keysyms of the keys the tests press
KEY_CONTROL_L = 0xFFE3
KEY_ALT_L = 0xFFE9
KEY_DELETE = 0xFFFF


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int
    #: raw pixels, ``bytes_per_pixel`` each, row by row
    pixels: bytes

    def covers(self, x: int, y: int) -> bool:
        return self.x <= x < self.x + self.w and self.y <= y < self.y + self.h


@dataclass(frozen=True)
class Update:
    """One FramebufferUpdate and when its last byte arrived (``time.perf_counter``)."""

    rects: list[Rect]
    at: float


class RFBClient:
    """An RFB client over ``recv``/``send``; ``handshake`` first."""

    def __init__(self, recv: Recv, send: Send) -> None:
        self._recv = recv
        self._send = send
        self._buf = bytearray()
        self.width = 0
        self.height = 0
        self.bytes_per_pixel = 4
        self.name = ""

    async def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = await self._recv()
            if not chunk:
                raise ConnectionError("the RFB server closed the connection")
            self._buf += chunk
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def handshake(self) -> None:
        version = await self._read(12)
        if not version.startswith(b"RFB 003."):
            raise ConnectionError(f"not an RFB server: {version!r}")
        await self._send(b"RFB 003.008\n")
        (count,) = struct.unpack("!B", await self._read(1))
        types = await self._read(count)
        if 1 not in types:
            raise ConnectionError(f"the server wants authentication (security types {list(types)})")
        await self._send(b"\x01")
        (result,) = struct.unpack("!I", await self._read(4))
        if result != 0:
            raise ConnectionError("the RFB security handshake failed")
        await self._send(b"\x01")  # ClientInit: shared, other viewers stay connected
        self.width, self.height = struct.unpack("!HH", await self._read(4))
        pixel_format = await self._read(16)
        self.bytes_per_pixel = pixel_format[0] // 8
        (name_len,) = struct.unpack("!I", await self._read(4))
        self.name = (await self._read(name_len)).decode(errors="replace")
        # SetEncodings: Raw only
        await self._send(struct.pack("!BBHi", 2, 0, 1, 0))

    async def request(self, incremental: bool = True) -> None:
        await self._send(struct.pack("!BBHHHH", 3, int(incremental), 0, 0, self.width, self.height))

    async def key(self, keysym: int, down: bool) -> None:
        await self._send(struct.pack("!BBxxI", 4, int(down), keysym))

    async def next_update(self) -> Update:
        """The next FramebufferUpdate (other server messages are read and dropped)."""
        while True:
            (kind,) = struct.unpack("!B", await self._read(1))
            if kind == 0:
                (count,) = struct.unpack("!xH", await self._read(3))
                rects = []
                for _ in range(count):
                    x, y, w, h, encoding = struct.unpack("!HHHHi", await self._read(12))
                    if encoding != 0:
                        raise ConnectionError(f"unexpected encoding {encoding} (asked for Raw only)")
                    rects.append(Rect(x, y, w, h, await self._read(w * h * self.bytes_per_pixel)))
                return Update(rects, time.perf_counter())
            if kind == 1:  # SetColourMapEntries
                _, _first, entries = struct.unpack("!BHH", await self._read(5))
                await self._read(entries * 6)
            elif kind == 2:  # Bell
                continue
            elif kind == 3:  # ServerCutText
                (length,) = struct.unpack("!xxxI", await self._read(7))
                await self._read(length)
            else:
                raise ConnectionError(f"unknown RFB server message {kind}")

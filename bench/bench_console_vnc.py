"""Graphical console frame latency: a change on the guest's screen to the RFB update at a client.

Platform: a real ``novacron-server`` (QEMU driver) and a running test guest. A client opens the
graphical console as the dashboard does: ``POST /v1/tickets``, then the WebSocket
``/v1/vms/{id}/vnc?ticket=`` (the server relays it to QEMU's VNC unix socket), and speaks RFB
(Raw encoding, incremental update requests, one outstanding at a time, as noVNC does).

Peer (raw VNC): in the same run, at the same time, a second RFB client on QEMU's VNC unix socket
itself (``<state_dir>/run/<key>.vnc``, shared session), so both see the very same screen change.

Each sample: over the serial console the guest is told to write one character, white on red, at a
cell of its screen (the kernel's framebuffer console on the VGA, bochs-drm: an escape sequence to
``/dev/tty0``, its cursor hidden so only the cell changes); the clock starts when that command is sent
and stops, for each client, when an update covering that cell has arrived. Both figures include
the guest running the command (TCG here) and QEMU's display refresh; their difference is what the
relay (ticket, WebSocket, server process) adds.

Run: .venv/bin/python bench/bench_console_vnc.py [--samples N]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import time
from pathlib import Path

import websockets
from common import (
    GUEST_OUT,
    Guest,
    Server,
    default_project,
    import_guest_image,
    load,
    machine,
    pct,
    running_server,
)

from tests.conftest import wait_console, wait_task
from tests.rfb import RFBClient, Update

COLS = 80
CELL_W, CELL_H = 8, 16  # fbcon's 8x16 font
FIRST_ROW = 12
TIMEOUT_S = 30.0


class Watcher:
    """Reads one client's updates forever (asking for the next at once) and wakes waiters."""

    def __init__(self, rfb: RFBClient) -> None:
        self.rfb = rfb
        self.updates: list[Update] = []
        self.changed = asyncio.Event()

    async def run(self) -> None:
        await self.rfb.request(incremental=True)
        while True:
            update = await self.rfb.next_update()
            await self.rfb.request(incremental=True)
            self.updates.append(update)
            self.changed.set()

    async def wait_cell(self, x: int, y: int, since: int) -> float:
        """When the first update after index ``since`` covering pixel (x, y) arrived."""
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                for update in self.updates[since:]:
                    if any(r.covers(x, y) for r in update.rects):
                        return update.at
                since = len(self.updates)
                self.changed.clear()
                await self.changed.wait()


async def wait_serial(ws: websockets.ClientConnection, needle: bytes) -> None:
    seen = b""
    async with asyncio.timeout(180):
        while needle not in seen:
            message = await ws.recv()
            seen = (seen + (message if isinstance(message, bytes) else message.encode()))[-4096:]


async def drain(ws: websockets.ClientConnection) -> None:
    async for _ in ws:
        pass


async def platform_rfb(srv: Server, token: str, vm_id: str) -> RFBClient:
    path = f"/v1/vms/{vm_id}/vnc"
    with srv.client(token) as c:
        ticket = c.post("/v1/tickets", json={"path": path}).json()["ticket"]
    ws = await websockets.connect(f"ws://127.0.0.1:{srv.port}{path}?ticket={ticket}", max_size=None)

    async def recv() -> bytes:
        message = await ws.recv()
        return message if isinstance(message, bytes) else message.encode()

    return RFBClient(recv, ws.send)


async def raw_rfb(socket_path: Path) -> RFBClient:
    reader, writer = await asyncio.open_unix_connection(str(socket_path))

    async def send(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    return RFBClient(lambda: reader.read(65536), send)


async def measure(srv: Server, token: str, vm_id: str, samples: int) -> tuple[list[float], list[float]]:
    serial_url = f"ws://127.0.0.1:{srv.port}/v1/vms/{vm_id}/console"
    auth = {"Authorization": f"Bearer {token}"}
    async with websockets.connect(serial_url, additional_headers=auth) as serial:
        await serial.send(
            b"\necho 0 > /sys/class/graphics/fbcon/cursor_blink; printf '\\033[?25l' > /dev/tty0; "
            b"echo READY-$((40+2))\n"
        )
        await wait_serial(serial, b"READY-42")
        key = hashlib.sha256(vm_id.encode()).hexdigest()[:16]
        clients = [await platform_rfb(srv, token, vm_id), await raw_rfb(srv.state_dir / "run" / f"{key}.vnc")]
        for rfb in clients:
            await rfb.handshake()
        watchers = [Watcher(rfb) for rfb in clients]
        tasks = [asyncio.create_task(w.run()) for w in watchers]
        # the guest's echo of each command: read and dropped, or the socket's queue fills and
        # its keepalive pongs go unread
        tasks.append(asyncio.create_task(drain(serial)))
        plat: list[float] = []
        raw: list[float] = []
        try:
            for i in range(samples + 5):  # the first 5 are a warm-up
                cell = FIRST_ROW * COLS + i % (COLS * 10)
                x, y = (cell % COLS) * CELL_W + CELL_W // 2, (cell // COLS) * CELL_H + CELL_H // 2
                marks = [len(w.updates) for w in watchers]
                t0 = time.perf_counter()
                row, col, char = cell // COLS + 1, cell % COLS + 1, chr(65 + i % 26)
                await serial.send(
                    f"printf '\\033[{row};{col}H\\033[1;37;41m{char}\\033[0m' > /dev/tty0\n".encode()
                )
                at = [await w.wait_cell(x, y, m) for w, m in zip(watchers, marks, strict=True)]
                if i >= 5:
                    plat.append(at[0] - t0)
                    raw.append(at[1] - t0)
                await asyncio.sleep(0.05)
        finally:
            for t in tasks:
                t.cancel()
    return plat, raw


def ms(samples: list[float]) -> str:
    return (
        f"p50={pct(samples, 0.5) * 1000:7.1f} ms  p99={pct(samples, 0.99) * 1000:7.1f} ms  "
        f"mean={statistics.mean(samples) * 1000:7.1f} ms  n={len(samples)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="measured screen changes (default 200)")
    args = parser.parse_args()
    guest = Guest(
        kernel=GUEST_OUT / "vmlinux",
        initrd=GUEST_OUT / "initrd.img",
        disk=GUEST_OUT / "disk.qcow2",
        cmdline=(GUEST_OUT / "cmdline").read_text().strip(),
    )
    print(f"bench_console_vnc: {machine()}")
    print(f"start: {load()}")
    with running_server() as srv:
        token = srv.token()
        with srv.client(token) as c:
            image_id = import_guest_image(c, guest, name="bench-guest")
            vm = {"name": "vnc-bench", "image": image_id, "flavor": "tiny", "project_id": default_project(c)}
            r = c.post("/v1/vms", json=vm)
            r.raise_for_status()
            vm_id = str(r.json()["vm"]["id"])
            assert wait_task(c, r.json()["task_id"], 180)["state"] == "succeeded"
            wait_console(c, vm_id, "NOVACRON-GUEST-READY", 180)
            host = c.get("/v1/hosts").json()["items"][0]
        print(f"host: driver={host['driver']} accelerator={host['accelerator']} cpus={host['cpus']}")
        plat, raw = asyncio.run(measure(srv, token, vm_id, args.samples))
    extra = [p - r for p, r in zip(plat, raw, strict=True)]
    print()
    print(f"platform (ticket + WebSocket relay) : {ms(plat)}")
    print(f"raw VNC on the unix socket          : {ms(raw)}")
    print(f"relay adds (paired, same change)    : {ms(extra)}")
    print(f"end: {load()}")


if __name__ == "__main__":
    main()

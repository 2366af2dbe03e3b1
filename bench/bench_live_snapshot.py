"""The pause a running guest sees while it is snapshotted: the platform's snapshot step against raw QMP.

REAL PARTS: QEMU (TCG on machines without KVM) and the test guest of guest/ (Debian kernel,
busybox initramfs) with a 256 MiB RAM, printing a line every ~10 ms on its serial console:
``TS <uptime>`` (the guest's own clock, /proc/uptime, 10 ms resolution).

The bench reads the console socket and stamps every line with the host's monotonic clock on
arrival. Around each operation (from 0.3 s before it to 0.5 s after it) it takes the largest gap
between consecutive lines, in the guest's clock and in the host's; an idle window of the same
length, with no operation, gives the noise of the loop on this machine (TCG, other load).

Operations, each ``--runs`` times (the snapshot is deleted after each run, online):
  disk      platform: QemuDriver.create_snapshot(memory=False, quiesce=False), the step the agent
            runs for ``POST /v1/vms/{id}/snapshots`` (a ``transaction`` of
            ``blockdev-snapshot-internal-sync``); raw: the same ``transaction`` sent by hand
  memory    platform: create_snapshot(memory=True) (the ``snapshot-save`` job, polled every 0.1 s);
            raw: ``snapshot-save`` by hand, ``query-jobs`` polled every 10 ms
  delete    platform: QemuDriver.delete_snapshot (``blockdev-snapshot-delete-internal-sync``)

Printed: per operation and side, the largest guest-clock gap and host-arrival gap (median/max over
the runs), and the wall time of the call. The platform's API and task overhead (queueing the host
operation) is not in the guest's pause: it happens before the QMP command.

Run: .venv/bin/python bench/bench_live_snapshot.py [--runs 5] [--ram-mb 256]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import GUEST_OUT, load, machine

from novacron.virt.base import InstanceSpec
from novacron.virt.qemu import QemuDriver
from novacron.virt.qmp import qmp_call

VM = "snapbench"
USER_DATA = """#!/bin/sh
(while :; do read u r < /proc/uptime; echo "TS $u"; usleep 10000; done) &
"""
BEFORE_S, AFTER_S = 0.3, 0.5


@dataclass
class Console:
    """Lines ``TS <uptime>`` as they arrive: (host monotonic, guest uptime)."""

    stamps: list[tuple[float, float]] = field(default_factory=list)

    async def follow(self, sock: Path) -> None:
        reader, _writer = await asyncio.open_unix_connection(str(sock))
        while line := await reader.readline():
            now = time.monotonic()
            parts = line.decode(errors="replace").split()
            if len(parts) == 2 and parts[0] == "TS":
                try:
                    self.stamps.append((now, float(parts[1])))
                except ValueError:
                    continue

    def gaps(self, start: float, end: float) -> tuple[float, float]:
        """Largest (guest-clock, host-arrival) gap between consecutive lines in [start, end]."""
        window = [s for s in self.stamps if start <= s[0] <= end]
        if len(window) < 2:
            return float("nan"), float("nan")
        guest = max(b[1] - a[1] for a, b in zip(window, window[1:], strict=False))
        host = max(b[0] - a[0] for a, b in zip(window, window[1:], strict=False))
        return guest, host


async def _raw_disk(d: QemuDriver, tag: str) -> None:
    action = {"type": "blockdev-snapshot-internal-sync", "data": {"device": "vda", "name": tag}}
    await qmp_call(d.qmp_socket(VM), "transaction", {"actions": [action]})


async def _raw_memory(d: QemuDriver, tag: str) -> None:
    sock = d.qmp_socket(VM)
    args = {"job-id": "raw", "tag": tag, "vmstate": "vda-disk", "devices": ["vda-disk"]}
    await qmp_call(sock, "snapshot-save", args)
    while True:
        job = next(j for j in await qmp_call(sock, "query-jobs") if j["id"] == "raw")
        if job["status"] == "concluded":
            await qmp_call(sock, "job-dismiss", {"id": "raw"})
            assert not job.get("error"), job
            return
        await asyncio.sleep(0.01)


async def _measure(con: Console, op: Any) -> tuple[float, float, float]:
    await asyncio.sleep(BEFORE_S)
    t0 = time.monotonic()
    await op()
    t1 = time.monotonic()
    await asyncio.sleep(AFTER_S)
    guest, host = con.gaps(t0 - BEFORE_S, t1 + AFTER_S)
    return guest, host, t1 - t0


def _line(name: str, rows: list[tuple[float, float, float]]) -> str:
    g, h, w = ([r[i] * 1000 for r in rows] for i in range(3))
    return (
        f"  {name:<18} guest gap median {statistics.median(g):7.1f} ms max {max(g):7.1f} ms | "
        f"host gap median {statistics.median(h):7.1f} ms max {max(h):7.1f} ms | "
        f"call median {statistics.median(w):7.1f} ms"
    )


def _op(d: QemuDriver, side: str, kind: str, tag: str) -> Callable[[], Awaitable[Any]]:
    """The snapshot call of one side: the platform's driver step, or the same QMP sent by hand."""
    if side == "platform":
        return lambda: d.create_snapshot(VM, tag, memory=kind == "memory", quiesce=False)
    if kind == "disk":
        return lambda: _raw_disk(d, tag)
    return lambda: _raw_memory(d, tag)


SIDES = (("platform", "disk"), ("raw QMP", "disk"), ("platform", "memory"), ("raw QMP", "memory"))


async def _runs(d: QemuDriver, con: Console, runs: int) -> dict[str, list[tuple[float, float, float]]]:
    out: dict[str, list[tuple[float, float, float]]] = {}
    for i in range(runs):
        out.setdefault("idle (noise)", []).append(await _measure(con, lambda: asyncio.sleep(0)))
        for side, kind in SIDES:
            tag = f"{side[0]}{kind[0]}{i}"
            out.setdefault(f"{kind} {side}", []).append(await _measure(con, _op(d, side, kind, tag)))
            delete = await _measure(con, lambda t=tag: d.delete_snapshot(VM, t))
            out.setdefault("delete platform", []).append(delete)
    return out


async def main(runs: int, ram_mb: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="ncsb", dir="/tmp"))
    d = QemuDriver(work / "inst", work / "run", accelerator="auto", bridge=None)
    spec = InstanceSpec(
        id=VM, name=VM, vcpus=1, ram_mb=ram_mb, disk_gb=1, image_path=GUEST_OUT / "disk.qcow2",
        image_format="qcow2", mac="52:54:00:12:34:99", kernel_path=GUEST_OUT / "vmlinux",
        initrd_path=GUEST_OUT / "initrd.img", kernel_cmdline=(GUEST_OUT / "cmdline").read_text().strip(),
        user_data=USER_DATA,
    )  # fmt: skip
    con = Console()
    try:
        await d.launch(spec)
        follower = asyncio.create_task(con.follow(d.console_socket(VM)))
        deadline = time.monotonic() + 180
        while len(con.stamps) < 100:
            assert time.monotonic() < deadline, "the guest's timestamp loop did not start"
            await asyncio.sleep(0.2)
        print(f"{machine()}, accelerator {d.accelerator}, guest {ram_mb} MiB, {load()}")
        results = await _runs(d, con, runs)
        follower.cancel()
        print(f"largest gap in the guest's ~10 ms timestamp loop around each operation ({runs} runs):")
        for name, rows in results.items():
            print(_line(name, rows))
        print(f"after: {load()}")
    finally:
        await d.destroy(VM)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ram-mb", type=int, default=256)
    a = parser.parse_args()
    asyncio.run(main(a.runs, a.ram_mb))

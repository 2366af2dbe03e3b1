"""VM backup: full vs incremental (change-block tracking) of a running QEMU guest, against restic and borg.

Platform path measured: ``novacron.backup.agentops.backup_disk`` (what a host's agent runs for a
``backup.create`` task): point in time by a QMP transaction (new persistent dirty bitmap, frozen
copy of the parent's bitmap, ``blockdev-backup sync=none`` into a fleecing overlay), exported by QEMU
over NBD on a unix socket; the agent reads only the dirty chunks with libnbd straight into
``ChunkStore.write_snapshot`` on a local target (4 MiB chunks, SHA-256-keyed names, zstd,
AES-256-GCM). No server: the driver and store are called directly.

Data: an ext4 filesystem holding a copy of ``/usr/share`` (``mkfs.ext4 -d``), in a disk of
``--disk-gib`` GiB, as the base image of the guest's qcow2 overlay. The test guest (guest/out)
runs on it under TCG. Between backups, a share of the disk is rewritten through the guest's block
device while it runs (QMP ``qemu-io`` on the device, so the dirty bitmap sees guest writes), in
runs of 1 MiB or as scattered 64 KiB clusters at random places.

Peers, on the same states of the disk: ``restic backup`` and ``borg create`` of the disk as a raw
image file (the way one backs up a VM disk without change tracking: every run reads it all). The
raw images are exported with ``qemu-img convert`` outside the timings, a new file per state; each
peer backs up a state right after novacron did (the guest still running), so all three see the
same load.

Run: .venv/bin/python bench/bench_backup_vm.py [--disk-gib 4] [--pcts 1,3,10] [--chunk-kib 4096]

First two full backups of the same state: one as before issue 22 (dirty bitmap at the chunk
size, into another tenant so nothing deduplicates), one as now (64 KiB bitmap). Then one
incremental per cell of the matrix, each from the previous one: for each of ``--pcts`` % (1, 3 and
10 by default), that share rewritten as 1 MiB runs, then as scattered 64 KiB clusters. It prints
the matrix as a Markdown table (novacron incremental vs each peer's re-run, speed-ups).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from common import GUEST_OUT, backup_settings, machine

from novacron.agent.protocol import BackupDisk
from novacron.backup import agentops, vmstore
from novacron.virt import cbt
from novacron.virt.base import InstanceSpec
from novacron.virt.qemu import QemuDriver

MiB = 1 << 20
CLUSTER = 64 << 10


def sh(*argv: str, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {res.stderr[-2000:]}")
    return res.stdout


def timed_sh(*argv: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    sh(*argv, env=env)
    return time.perf_counter() - t0


def make_base(work: Path, gib: int) -> Path:
    raw = work / "base.raw"
    sh("mkfs.ext4", "-q", "-F", "-d", "/usr/share", str(raw), f"{gib}G")
    base = work / "base.qcow2"
    sh("qemu-img", "convert", "-O", "qcow2", str(raw), str(base))
    raw.unlink()
    return base


async def change(d: QemuDriver, iid: str, size: int, pct: float, run: int, rng: random.Random) -> int:
    """Rewrite ``pct`` % of the disk through the guest's device, in runs of ``run`` bytes at random places."""
    n = int(size * pct / 100 // run)
    for i in rng.sample(range(size // run), n):
        cmd = f'qemu-io vda "write -P {i % 251 + 1} {i * run} {run}"'
        await d.qmp(iid, "human-monitor-command", {"command-line": cmd})
    return n * run


class Peers:
    """restic and borg repositories, each backed up right after novacron at the same disk state, so
    both see the same machine load (the 1-minute load average varies a lot on a shared machine)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.times: dict[str, list[float]] = {}
        self.restic = {"RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(work / "restic")}
        self.borg = {"BORG_PASSPHRASE": "bench", "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"}
        if shutil.which("restic"):
            sh("restic", "init", "-q", env=self.restic)
            self.times["restic"] = []
        if shutil.which("borg"):
            sh("borg", "init", "-e", "repokey", str(work / "borg"), env=self.borg)
            self.times["borg"] = []

    def backup(self, n: int, raw: Path) -> None:
        link = self.work / "disk.raw"
        link.unlink(missing_ok=True)
        os.link(raw, link)
        if "restic" in self.times:
            self.times["restic"].append(timed_sh("restic", "backup", "-q", str(link), env=self.restic))
        if "borg" in self.times:
            borg = ("borg", "create", f"{self.work / 'borg'}::s{n}", str(link))
            self.times["borg"].append(timed_sh(*borg, env=self.borg))


PATTERNS = ((MiB, "1 MiB runs"), (CLUSTER, "scattered 64 KiB"))
ROUNDS = [(pct, run, label) for pct in (1.0, 3.0, 10.0) for run, label in PATTERNS]


def print_table(rows: list[dict[str, Any]], peers: list[str]) -> None:
    """The matrix as a Markdown table (one row per line), speed-ups against each peer's re-run."""
    head = "| changed | write pattern | chunks touched | novacron incremental | " + " | ".join(
        f"{p} re-run" for p in peers
    )
    print(head + " | speed-up |")
    print("|" + "---|" * (5 + len(peers)))
    for r in rows:
        ups = ", ".join(f"{r[p] / r['t']:.1f}x {p}" for p in peers)
        cells = " | ".join(f"{r[p]:.2f} s" for p in peers)
        print(
            f"| {r['pct']:g} % | {r['label']} | {r['chunks']} of {r['total']} | "
            f"{r['t']:.2f} s, {r['read'] / MiB:,.0f} MiB read, {r['patched']} patched, "
            f"{r['rebuilt']} compacted | {cells} | {ups} |"
        )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--disk-gib", type=int, default=4)
    ap.add_argument("--chunk-kib", type=int, default=4096, help="the target's chunk size (a power of two)")
    ap.add_argument("--pcts", default="1,3,10", help="the changed percentages to run, comma-separated")
    args = ap.parse_args()
    chunk = args.chunk_kib << 10
    pcts = {float(p) for p in args.pcts.split(",")}
    rng = random.Random(42)
    work = Path(tempfile.mkdtemp(prefix="ncbk", dir="/tmp"))
    d = QemuDriver(work / "inst", work / "run", bridge=None)
    iid = "bench-vm"
    try:
        base = make_base(work, args.disk_gib)
        spec = InstanceSpec(
            id=iid, name="bench", vcpus=1, ram_mb=256, disk_gb=args.disk_gib, image_path=base,
            image_format="qcow2", mac="52:54:00:12:34:56", kernel_path=GUEST_OUT / "vmlinux",
            initrd_path=GUEST_OUT / "initrd.img", kernel_cmdline=(GUEST_OUT / "cmdline").read_text().strip(),
        )  # fmt: skip
        await d.launch(spec)
        settings = backup_settings(work, "bench", "bench-old")
        row = SimpleNamespace(
            id="bkt-bench", type="local", config={"path": str(work / "target")}, chunk_size=chunk
        )
        secrets = vmstore.agent_payload(settings, row, "bench")  # type: ignore[arg-type]
        # the old-style full backup goes to another tenant: its chunks are named apart (no dedup)
        old_secrets = vmstore.agent_payload(settings, row, "bench-old")  # type: ignore[arg-type]
        assert base64.b64decode(secrets["key"])
        size = args.disk_gib << 30

        async def backup(
            snap: str, parent: str | None, full: bool = False, old: bool = False
        ) -> tuple[dict[str, Any], float]:
            t0 = time.perf_counter()
            keys = old_secrets if old else secrets
            request = BackupDisk(snapshot_id=snap, parent_id=parent, secrets=keys, full=full)
            result = await agentops.backup_disk(d, iid, request, None)
            return result, time.perf_counter() - t0

        raw = work / "state0.raw"
        sh("qemu-img", "convert", "-U", "-O", "raw", str(d.disk_path(iid)), str(raw))
        peer = Peers(work)
        # the full backup as before this change (the bitmap at the chunk size), then as now (64 KiB):
        # the same data, the page cache equally warm (the raw export above read the whole disk)
        grain = cbt.GRANULARITY
        cbt.GRANULARITY = chunk
        _, t_old = await backup("s-old", None, full=True, old=True)
        cbt.GRANULARITY = grain
        full, t_full = await backup("s0", None, full=True)
        peer.backup(0, raw)
        rows: list[dict[str, Any]] = []
        loads = [os.getloadavg()[0]]
        parent = "s0"
        for n, (pct, run, label) in enumerate(ROUNDS, start=1):
            if pct not in pcts:
                continue
            await change(d, iid, size, pct, run, rng)
            raw.unlink()  # a new file per state: the peers' file caches must not skip it
            raw = work / f"state{n}.raw"
            sh("qemu-img", "convert", "-U", "-O", "raw", str(d.disk_path(iid)), str(raw))
            loads.append(os.getloadavg()[0])
            inc, t_inc = await backup(f"s{n}", parent)
            assert inc["mode"] == "incremental", inc
            parent = f"s{n}"
            peer.backup(n, raw)
            rows.append(
                {
                    "pct": pct, "label": label, "t": t_inc, "read": inc["bytes_read"],
                    "chunks": inc["chunks_changed"], "total": size // chunk,
                    "patched": inc["store"].get("chunks_patched", 0),
                    "rebuilt": inc["store"].get("chunks_rebuilt", 0),
                    **{p: times[-1] for p, times in peer.times.items()},
                }
            )  # fmt: skip
        status = (await d.qmp(iid, "query-status"))["status"]
        stored = sum(p.stat().st_size for p in (work / "target").rglob("*") if p.is_file())
        used = int(sh("du", "-sb", "/usr/share").split()[0])
        print(json.dumps({"machine": machine(), "disk_gib": args.disk_gib, "fs_data_bytes": used}, indent=1))
        print(f"1-minute load average before each novacron backup: {', '.join(f'{x:.1f}' for x in loads)}")
        print(f"guest status after the backups: {status}; novacron target after all: {stored / MiB:.0f} MiB")
        fulls = ", ".join(f"{p} {t[0]:.2f} s" for p, t in peer.times.items())
        print(
            f"full backup: {t_full:.2f} s with 64 KiB bitmaps, {t_old:.2f} s with the old chunk-sized "
            f"bitmap, reading {int(full['bytes_read']) / MiB:.0f} MiB; {fulls}; {args.chunk_kib} KiB chunks"
        )
        print_table(rows, list(peer.times))
    finally:
        await d.destroy(iid)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())

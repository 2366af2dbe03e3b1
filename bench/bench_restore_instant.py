"""Restore time to a working VM: instant restore (boot from the backup, copy behind) vs a full restore.

Platform paths measured: ``novacron.backup.agentops.restore_disk`` (the chunk store written out as
the VM's disk, then booted) and ``novacron.backup.instant`` (nbdkit serving the snapshot from the
chunk store, a qcow2 overlay backed by it, boot at once, then QEMU's ``block-stream`` copying the
rest in). What an agent runs for ``backup.restore_new`` / ``backup.restore_instant`` tasks; no server.

Data: an ext4 filesystem holding a copy of ``/usr/share`` in a ``--disk-gib`` GiB disk, backed up
once (full) from a running test guest into a local target (4 MiB chunks, zstd, AES-256-GCM).
"Working" means the restored guest has read ``--read-mib`` MiB of its disk (``dd`` from its block
device in its user-data, then a console marker): what a service does when it starts.

Peers: ``restic restore`` and ``borg extract`` of the same disk as a raw image (from repositories
made outside the timings): the time before a VM could be started from their copy.

Run: .venv/bin/python bench/bench_restore_instant.py [--disk-gib 4] [--read-mib 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from bench_backup_vm import make_base, sh
from common import GUEST_OUT, backup_settings, machine

from novacron.agent.protocol import BackupDisk, InstantRestoreDisk, RestoreDisk, StreamDisk
from novacron.backup import agentops, instant, vmstore
from novacron.virt.base import InstanceSpec
from novacron.virt.qemu import QemuDriver

MiB = 1 << 20
MARKER = "BENCH-READ-DONE"


def spec(iid: str, base: Path, gib: int, read_mib: int) -> InstanceSpec:
    user_data = f"#!/bin/sh\ndd if=/dev/vda of=/dev/null bs=1M count={read_mib} 2>/dev/null; echo {MARKER}\n"
    return InstanceSpec(
        id=iid, name=iid, vcpus=1, ram_mb=256, disk_gb=gib, image_path=base, image_format="qcow2",
        mac="52:54:00:12:34:57", kernel_path=GUEST_OUT / "vmlinux", initrd_path=GUEST_OUT / "initrd.img",
        kernel_cmdline=(GUEST_OUT / "cmdline").read_text().strip(), user_data=user_data,
    )  # fmt: skip


async def until_marker(d: QemuDriver, iid: str, t0: float) -> float:
    log = d.console_log(iid)
    while not (log.exists() and MARKER.encode() in log.read_bytes()):
        await asyncio.sleep(0.05)
    return time.perf_counter() - t0


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--disk-gib", type=int, default=4)
    ap.add_argument("--read-mib", type=int, default=64)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ncri", dir="/tmp"))
    d = QemuDriver(work / "inst", work / "run", bridge=None)
    size = args.disk_gib << 30
    try:
        base = make_base(work, args.disk_gib)
        await d.launch(spec("src", base, args.disk_gib, args.read_mib))
        settings = backup_settings(work, "bench")
        row = SimpleNamespace(
            id="bkt-bench", type="local", config={"path": str(work / "target")}, chunk_size=4 * MiB
        )
        secrets = vmstore.agent_payload(settings, row, "bench")  # type: ignore[arg-type]
        await agentops.backup_disk(d, "src", BackupDisk(snapshot_id="s0", secrets=secrets), None)
        raw = work / "disk.raw"
        sh("qemu-img", "convert", "-U", "-O", "raw", str(d.disk_path("src")), str(raw))
        await d.destroy("src")
        figures: dict[str, dict[str, float]] = {}

        # full restore: the whole disk written out, then boot
        await d.prepare(spec("full", base, args.disk_gib, args.read_mib))
        t0 = time.perf_counter()
        await agentops.restore_disk(d, "full", RestoreDisk("s0", size, secrets), None)
        restored = time.perf_counter() - t0
        await d.launch(spec("full", base, args.disk_gib, args.read_mib))
        figures["full restore"] = {"disk_ready_s": restored, "working_s": await until_marker(d, "full", t0)}
        await d.destroy("full")

        # instant restore: boot from the backup, then copy the rest in
        await d.prepare(spec("inst", base, args.disk_gib, args.read_mib))
        t0 = time.perf_counter()
        await instant.instant_restore_disk(d, "inst", InstantRestoreDisk("s0", size, secrets), None)
        ready = time.perf_counter() - t0
        await d.launch(spec("inst", base, args.disk_gib, args.read_mib))
        working = await until_marker(d, "inst", t0)
        await instant.stream_disk(d, "inst", StreamDisk("s0", size, secrets), None)
        copied = time.perf_counter() - t0
        figures["instant restore"] = {"disk_ready_s": ready, "working_s": working, "copied_s": copied}
        await d.power_off("inst")
        same = subprocess.run(
            ["qemu-img", "compare", str(raw), str(d.disk_path("inst"))], capture_output=True
        )
        await d.destroy("inst")

        # peers: the same disk as a raw image restored by restic and borg
        peers: dict[str, float] = {}
        out = work / "out"
        if shutil.which("restic"):
            env = {"RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(work / "restic")}
            sh("restic", "init", "-q", env=env)
            sh("restic", "backup", "-q", str(raw), env=env)
            t0 = time.perf_counter()
            sh("restic", "restore", "-q", "latest", "--target", str(out), env=env)
            peers["restic restore"] = time.perf_counter() - t0
            shutil.rmtree(out)
        if shutil.which("borg"):
            env = {"BORG_PASSPHRASE": "bench", "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"}
            sh("borg", "init", "-e", "repokey", str(work / "borg"), env=env)
            sh("borg", "create", f"{work / 'borg'}::s0", str(raw), env=env)
            out.mkdir()
            t0 = time.perf_counter()
            subprocess.run(
                ["borg", "extract", f"{work / 'borg'}::s0"], cwd=out, env={**os.environ, **env}, check=True
            )
            peers["borg extract"] = time.perf_counter() - t0
        print(
            json.dumps({"machine": machine(), "disk_gib": args.disk_gib, "read_mib": args.read_mib}, indent=1)
        )
        print(f"{'':20}{'disk ready':>12}{f'guest read {args.read_mib} MiB':>22}{'all data local':>16}")
        for name, f in figures.items():
            copied_s = f.get("copied_s", f["disk_ready_s"])
            print(f"{name:20}{f['disk_ready_s']:>11.2f}s{f['working_s']:>21.2f}s{copied_s:>15.2f}s")
        for name, t in peers.items():
            print(f"{name:20}{t:>11.2f}s{'(then boot)':>22}{t:>15.2f}s")
        full, inst = figures["full restore"], figures["instant restore"]
        print(f"time to a working guest: {full['working_s'] / inst['working_s']:.1f}x sooner when instant")
        print(f"instant-restored disk identical to the source: {same.returncode == 0}")
    finally:
        for iid in ("src", "full", "inst"):
            await d.destroy(iid)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())

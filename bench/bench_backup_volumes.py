"""VM backup with attached volumes: what each disk of one backup reads, full and incremental.

Platform path measured: ``novacron.backup.agentops.backup_disk`` with ``BackupDisk.volumes`` (what
a host's agent runs for a ``backup.create`` task of a VM with volumes): one QMP transaction takes
a dirty bitmap and a fleecing point in time of the root disk and of every volume, QEMU exports
each over NBD, the agent reads each (only the dirty spans of an incremental) into one snapshot of
a local 4 MiB-chunk target. No server: the driver and store are called directly.

Data: the test guest (guest/out) runs under TCG; ``--volumes`` qcow2 volumes of ``--vol-gib`` GiB,
each holding ``--fill-mib`` MiB of random data, hot-plugged into it. Between backups ``--pct`` %
of each volume (and 1 MiB of ``vda``) is rewritten through the guest's devices (QMP ``qemu-io``),
as 1 MiB runs at random places. The same writes are then made again and backed up by a backup
that leaves the volumes out (``vda`` alone), for the cost of the extra disks in one backup.

Run: .venv/bin/python bench/bench_backup_volumes.py [--volumes 2] [--vol-gib 2] [--fill-mib 256] [--pct 1]
"""

from __future__ import annotations

import argparse
import asyncio
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
from novacron.virt import volumes as vols
from novacron.virt.base import InstanceSpec, VolumeAttachment
from novacron.virt.qemu import QemuDriver

MiB = 1 << 20


async def io(d: QemuDriver, iid: str, device: str, cmd: str) -> None:
    """A write through the guest's device (above the backup's copy-before-write filter)."""
    line = f'qemu-io {"-d " + device + "/virtio-backend" if device != "vda" else "vda"} "{cmd}"'
    out = await d.qmp(iid, "human-monitor-command", {"command-line": line})
    assert "error" not in str(out).lower(), out


async def rewrite(
    d: QemuDriver, iid: str, attached: list[VolumeAttachment], gib: int, pct: float, rng: random.Random
) -> int:  # noqa: PLR0913
    """``pct`` % of each volume and 1 MiB of vda rewritten as 1 MiB runs; the bytes written."""
    written = MiB
    await io(d, iid, "vda", f"write -P {rng.randrange(1, 255)} {rng.randrange(64, 512) * MiB} {MiB}")
    for v in attached:
        runs = max(1, int((gib << 30) * pct / 100) // MiB)
        for off in rng.sample(range(gib << 10), runs):
            await io(
                d, iid, vols.device_id(v.volume_id), f"write -P {rng.randrange(1, 255)} {off * MiB} {MiB}"
            )
        written += runs * MiB
    return written


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--volumes", type=int, default=2)
    ap.add_argument("--vol-gib", type=int, default=2)
    ap.add_argument("--fill-mib", type=int, default=256)
    ap.add_argument("--pct", type=float, default=1.0)
    args = ap.parse_args()
    rng = random.Random(7)
    work = Path(tempfile.mkdtemp(prefix="ncbv", dir="/tmp"))
    d = QemuDriver(work / "inst", work / "run", bridge=None)
    iid = "bench-vols"
    try:
        spec = InstanceSpec(
            id=iid, name="bench", vcpus=1, ram_mb=256, disk_gb=2, image_path=GUEST_OUT / "disk.qcow2",
            image_format="qcow2", mac="52:54:00:12:34:57", kernel_path=GUEST_OUT / "vmlinux",
            initrd_path=GUEST_OUT / "initrd.img", kernel_cmdline=(GUEST_OUT / "cmdline").read_text().strip(),
        )  # fmt: skip
        await d.launch(spec)
        raw = work / "fill.raw"
        with raw.open("wb") as f:
            f.write(os.urandom(args.fill_mib * MiB))
        attached = []
        for n in range(args.volumes):
            path = work / f"vol{n}.qcow2"
            subprocess.run(
                ["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(path)], check=True
            )
            subprocess.run(["qemu-img", "resize", "-q", str(path), f"{args.vol_gib}G"], check=True)
            v = VolumeAttachment(f"vol-bench{n:011d}", "file", str(path), f"vol-bench{n}")
            await d.attach_volume(iid, v)
            attached.append(v)
        settings = backup_settings(work, "bench")
        row = SimpleNamespace(
            id="bkt-bench", type="local", config={"path": str(work / "target")}, chunk_size=4 * MiB
        )
        secrets = vmstore.agent_payload(settings, row, "bench")  # type: ignore[arg-type]

        async def backup(snap: str, parent: str | None, with_volumes: bool) -> tuple[dict[str, Any], float]:
            t0 = time.perf_counter()
            volumes = tuple(attached) if with_volumes else ()
            request = BackupDisk(snapshot_id=snap, parent_id=parent, secrets=secrets, volumes=volumes)
            return await agentops.backup_disk(d, iid, request, None), time.perf_counter() - t0

        full, t_full = await backup("f0", None, True)
        written = await rewrite(d, iid, attached, args.vol_gib, args.pct, rng)
        inc, t_inc = await backup("i1", "f0", True)
        assert inc["mode"] == "incremental" and all(x["mode"] == "incremental" for x in inc["disks"]), inc
        await rewrite(d, iid, attached, args.vol_gib, args.pct, rng)
        alone, t_alone = await backup("i2", "i1", False)  # the same kind of writes, vda alone backed up
        print(json.dumps({"machine": machine(), "load": os.getloadavg()[0], **vars(args)}, indent=1))
        print(
            f"full: {t_full:.2f} s reading {full['bytes_read'] / MiB:.0f} MiB over {len(full['disks'])} disks"
        )
        read = inc["bytes_read"] / MiB
        print(f"incremental ({written / MiB:.0f} MiB rewritten): {t_inc:.2f} s reading {read:.1f} MiB")
        for x in inc["disks"]:
            size, got = x["size"] / MiB, x["bytes_read"] / MiB
            print(f"  {x['name']:<24} {size:>6.0f} MiB  read {got:>6.1f} MiB  {x['chunks_changed']} chunks")
        print(f"vda alone, same writes on vda: {t_alone:.2f} s reading {alone['bytes_read'] / MiB:.1f} MiB")
    finally:
        await d.destroy(iid)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())

"""The agent's collection cost per VM per second: ``observe()`` + ``sample()`` of running guests.

Every second the agent observes each VM (QMP ``query-status``) and samples it: one QMP session
(``query-blockstats`` and the balloon's ``qom-get guest-stats``; ``query-cpus-fast`` and the
statistics timer only once per QEMU process), one pass over ``/proc/<pid>/task`` (process and vCPU
CPU time), the RSS and the taps' counters. Booted guests (the test guest of guest/out, 256 MiB,
user networking) are observed and sampled round after round as the agent does; the figure is the
agent process's CPU time (and wall time) per VM per round.

Peer: the same QMP commands through the ``qemu.qmp`` library (one connection per command, as the
driver's ``qmp_call`` does), plus the same /proc reads: what the cost would be without the lean
session.

Run: .venv/bin/python bench/bench_vm_sample.py [--vms 2] [--rounds 100]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from common import GUEST_OUT, load, machine

from novacron.virt import procs
from novacron.virt.base import InstanceSpec
from novacron.virt.qemu import QemuDriver
from novacron.virt.qmp import qmp_call
from novacron.virt.sampling import BALLOON_PATH


def spec(n: int) -> InstanceSpec:
    return InstanceSpec(
        id=f"bench-{n}-{secrets.token_hex(3)}",
        name=f"sampled-{n}",
        vcpus=1,
        ram_mb=256,
        disk_gb=1,
        image_path=GUEST_OUT / "disk.qcow2",
        image_format="qcow2",
        mac="52:54:00:" + ":".join(secrets.token_hex(1) for _ in range(3)),
        kernel_path=GUEST_OUT / "vmlinux",
        initrd_path=GUEST_OUT / "initrd.img",
        kernel_cmdline=(GUEST_OUT / "cmdline").read_text().strip(),
    )


async def timed(label: str, vms: int, rounds: int, one_round: Callable[[], Awaitable[None]]) -> None:
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        await one_round()
    per = vms * rounds
    print(
        f"{label:<44} CPU {(time.process_time() - cpu) / per * 1e3:6.2f} ms   "
        f"wall {(time.perf_counter() - wall) / per * 1e3:6.2f} ms   per VM per round"
    )


async def run(vms: int, rounds: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="ncbs", dir="/tmp"))
    driver = QemuDriver(base / "i", base / "r", bridge=None)
    specs = [spec(n) for n in range(vms)]
    try:
        for s in specs:
            await driver.launch(s)
        deadline = time.monotonic() + 120
        for s in specs:  # booted far enough that the guest reports its memory
            while (sample := await driver.sample(s.id)) is None or sample.guest_mem_total_bytes is None:
                assert time.monotonic() < deadline, f"{s.id} reported no guest memory"
                await asyncio.sleep(0.2)
        print(f"{vms} guest(s) reporting; {machine()}; {load()}")

        async def agent_round() -> None:
            for s in specs:
                await driver.observe(s.id)
                await driver.sample(s.id)

        async def sample_round() -> None:
            for s in specs:
                await driver.sample(s.id)

        async def library_round() -> None:
            for s in specs:
                sock, pid = driver.qmp_socket(s.id), driver.pid(s.id)
                assert pid is not None
                await qmp_call(sock, "query-status")
                await qmp_call(sock, "query-blockstats")
                await qmp_call(sock, "qom-get", {"path": BALLOON_PATH, "property": "guest-stats"})
                procs.cpu_times(pid, {pid})
                procs.rss_bytes(pid)

        for attempt in (1, 2):  # alternated, twice, to spread the shared machine's load
            await timed(f"[{attempt}] observe + sample (lean QMP session)", vms, rounds, agent_round)
            await timed(f"[{attempt}] sample only", vms, rounds, sample_round)
            await timed(f"[{attempt}] peer: same commands via qemu.qmp", vms, rounds, library_round)
        print(load())
    finally:
        for s in specs:
            await driver.destroy(s.id)
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vms", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=100)
    args = ap.parse_args()
    asyncio.run(run(args.vms, args.rounds))


if __name__ == "__main__":
    main()

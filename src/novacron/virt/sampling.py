"""What the QEMU driver samples of a running VM every second, and how it keeps that cheap.

One QMP connection per sample runs:

- ``query-blockstats``: the VM disk's byte and request counters;
- ``qom-get guest-stats`` on the virtio-balloon device: memory as the guest itself counts it
  (its ``MemTotal``, ``MemAvailable``, ``MemFree``), which the guest's balloon driver reports
  every ``GUEST_STATS_INTERVAL_S`` once armed by ``qom-set guest-stats-polling-interval``. It is
  armed once per QEMU process, whatever that process inherited: the first sample after a launch,
  a restart or an incoming migration (the destination's process; setting it is idempotent, and
  works while the destination still waits for the incoming state);
- ``query-cpus-fast``: the ids of the vCPU threads, only when they are not known for this process.

Then one pass over ``/proc/<pid>/task`` gives the CPU time of the whole process and of its vCPU
threads (the guest's own CPU), ``/proc/<pid>/status`` its RSS, and the taps their traffic.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from novacron.virt import netdev, procs
from novacron.virt.base import DriverError, MetricsSample
from novacron.virt.qmp import QmpSession, QmpUnavailable, qmp_session

BALLOON_ID = "balloon0"
BALLOON_PATH = f"/machine/peripheral/{BALLOON_ID}"
#: the balloon device every VM gets: its statistics queue is how the guest reports its memory
BALLOON_ARGS = ["-device", f"virtio-balloon-pci,id={BALLOON_ID}"]
#: seconds between two memory reports of the guest (QEMU asks on a timer of the guest's clock)
GUEST_STATS_INTERVAL_S = 1
#: balloon statistic -> the MetricsSample field it fills
GUEST_MEMORY_STATS = {
    "stat-total-memory": "guest_mem_total_bytes",
    "stat-available-memory": "guest_mem_available_bytes",
    "stat-free-memory": "guest_mem_free_bytes",
}


def guest_memory(answer: Any) -> dict[str, int | None]:
    """The guest memory fields of a sample from a ``guest-stats`` answer; None for a figure the
    guest has not reported (QEMU shows it as -1, or as 2**64 - 1 in its unsigned form)."""
    stats = answer.get("stats", {}) if isinstance(answer, dict) else {}
    figures: dict[str, int | None] = {}
    for stat, name in GUEST_MEMORY_STATS.items():
        value = stats.get(stat)
        figures[name] = value if isinstance(value, int) and 0 <= value < 1 << 63 else None
    return figures


def disk_counters(blockstats: Any) -> tuple[int, int, int, int]:
    """(read bytes, written bytes, reads, writes) of the VM disk ``vda`` in a ``query-blockstats``."""
    for dev in blockstats or []:
        if dev.get("device") == "vda" or dev.get("qdev", "").startswith("vda"):
            st = dev.get("stats", {})
            return (
                int(st.get("rd_bytes", 0)),
                int(st.get("wr_bytes", 0)),
                int(st.get("rd_operations", 0)),
                int(st.get("wr_operations", 0)),
            )
    return 0, 0, 0, 0


async def nic_counters(taps: list[str]) -> tuple[int, int]:
    """Bytes received and sent by the host side of ``taps`` (the guest's tx and rx)."""
    rx = tx = 0
    for tap in taps:
        if netdev.sys_has(tap):  # the cheap way, when /sys shows this namespace's devices
            tap_rx, tap_tx = netdev.nic_counters(tap)
        else:
            tap_rx, tap_tx = await asyncio.to_thread(netdev.nic_counters_netlink, tap)
        rx, tx = rx + tap_rx, tx + tap_tx
    return rx, tx


@dataclass
class _Process:
    """What the sampler learned of one QEMU process (a restart or a migration makes a new one)."""

    pid: int
    vcpu_threads: frozenset[int] = frozenset()
    stats_armed: bool = False
    #: False when this process has no balloon device (started before every VM got one)
    has_balloon: bool = True


@dataclass
class _QemuCounters:
    disk: tuple[int, int, int, int] = (0, 0, 0, 0)
    guest_memory: dict[str, int | None] = field(default_factory=dict)


class Sampler:
    """Samples the QEMU driver's instances, remembering per instance what its process needs once."""

    def __init__(self) -> None:
        self._processes: dict[str, _Process] = {}

    def forget(self, instance_id: str) -> None:
        """The instance left this host: drop what was learned of its process."""
        self._processes.pop(instance_id, None)

    async def sample(self, qmp_socket: Path, instance_id: str, pid: int, taps: list[str]) -> MetricsSample:
        """One sample of the running instance whose QEMU process is ``pid``."""
        process = self._process(instance_id, pid)
        counters = _QemuCounters()
        try:
            async with qmp_session(qmp_socket) as qmp:
                await self._ask_qemu(qmp, process, counters)
        except QmpUnavailable:
            pass  # the monitor is busy or gone: the counters read so far, the rest from /proc
        cpu_s, vcpu_s = procs.cpu_times(pid, process.vcpu_threads)
        rx, tx = await nic_counters(taps)
        rd, wr, rd_ops, wr_ops = counters.disk
        return MetricsSample(
            time=time.time(),
            cpu_time_s=cpu_s,
            rss_bytes=procs.rss_bytes(pid),
            disk_read_bytes=rd,
            disk_write_bytes=wr,
            disk_read_ops=rd_ops,
            disk_write_ops=wr_ops,
            net_rx_bytes=rx,
            net_tx_bytes=tx,
            vcpu_time_s=vcpu_s,
            **counters.guest_memory,
        )

    def _process(self, instance_id: str, pid: int) -> _Process:
        """The instance's process as known, or a fresh record when it is new or its vCPU threads
        changed (a known thread id that is gone)."""
        process = self._processes.get(instance_id)
        if (
            process is None
            or process.pid != pid
            or not all(Path(f"/proc/{pid}/task/{tid}").exists() for tid in process.vcpu_threads)
        ):
            process = self._processes[instance_id] = _Process(pid)
        return process

    @staticmethod
    async def _ask_qemu(qmp: QmpSession, process: _Process, counters: _QemuCounters) -> None:
        counters.disk = disk_counters(await qmp.execute("query-blockstats"))
        if not process.vcpu_threads:
            answer = await qmp.execute("query-cpus-fast")
            process.vcpu_threads = frozenset(int(cpu["thread-id"]) for cpu in answer if "thread-id" in cpu)
        if not process.has_balloon:
            return
        try:
            if not process.stats_armed:
                await qmp.execute(
                    "qom-set",
                    {
                        "path": BALLOON_PATH,
                        "property": "guest-stats-polling-interval",
                        "value": GUEST_STATS_INTERVAL_S,
                    },
                )
                process.stats_armed = True
            answer = await qmp.execute("qom-get", {"path": BALLOON_PATH, "property": "guest-stats"})
        except QmpUnavailable:
            raise
        except DriverError:
            process.has_balloon = False
            return
        counters.guest_memory = guest_memory(answer)

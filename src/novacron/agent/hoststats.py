"""The host's own sample, taken by its agent every report (psutil): CPU time by mode, memory, load,
disk and NIC counters, the state directory's filesystem, and how many QEMU processes this host's
driver runs. The control plane turns it into the ``novacron_host_*`` series (monitoring/series.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no stubs among the dev dependencies

from novacron.virt.procs import live_pid


class HostSampler:
    """Samples this host; ``state_dir`` is where the node keeps its files (its filesystem is the one
    reported), ``run_dir`` where the QEMU driver keeps its pidfiles (one per live QEMU)."""

    def __init__(self, state_dir: Path, run_dir: Path) -> None:
        self.state_dir = state_dir
        self.run_dir = run_dir
        self.cpus = psutil.cpu_count() or 1

    def sample(self) -> dict[str, float | int]:
        """One sample as plain JSON numbers (keys as ``series.HOST_SERIES`` names them)."""
        cpu = psutil.cpu_times()
        memory = psutil.virtual_memory()
        load1, load5, load15 = os.getloadavg()
        disk = psutil.disk_io_counters(nowrap=True)
        net = psutil.net_io_counters(nowrap=True)
        fs = psutil.disk_usage(str(self.state_dir))
        return {
            "time": time.time(),
            "cpus": self.cpus,
            "cpu_user_s": cpu.user + getattr(cpu, "nice", 0.0),
            "cpu_system_s": cpu.system + getattr(cpu, "irq", 0.0) + getattr(cpu, "softirq", 0.0),
            "cpu_idle_s": cpu.idle,
            "cpu_iowait_s": getattr(cpu, "iowait", 0.0),
            "cpu_steal_s": getattr(cpu, "steal", 0.0),
            "memory_total_bytes": memory.total,
            "memory_available_bytes": memory.available,
            "load1": load1,
            "load5": load5,
            "load15": load15,
            "disk_read_bytes": disk.read_bytes if disk is not None else 0,
            "disk_write_bytes": disk.write_bytes if disk is not None else 0,
            "net_rx_bytes": net.bytes_recv,
            "net_tx_bytes": net.bytes_sent,
            "fs_size_bytes": fs.total,
            "fs_avail_bytes": fs.free,
            "qemu_processes": self.qemu_processes(),
        }

    def qemu_processes(self) -> int:
        """QEMU processes of this host's driver: pidfiles whose process still runs with that pidfile
        (a QEMU of another node on the same machine does not count)."""
        try:
            pidfiles = list(self.run_dir.glob("*.pid"))
        except OSError:
            return 0
        return sum(1 for pidfile in pidfiles if _is_qemu(live_pid(pidfile)))


def _is_qemu(pid: int | None) -> bool:
    # the watchdog keeps its pidfile there too; QEMU renames its process (``-name ...,process=``),
    # so the program, not the process name, tells
    if pid is None:
        return False
    try:
        program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\x00", 1)[0]
    except OSError:
        return False
    return Path(program.decode(errors="replace")).name.startswith("qemu")

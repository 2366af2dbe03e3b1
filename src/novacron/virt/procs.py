"""Facts read from /proc: QEMU process liveness and counters, host CPU, memory and disk."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Collection
from pathlib import Path

from novacron.virt.accel import cpu_flags, read_cpuinfo
from novacron.virt.base import HostFacts

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def read_pidfile(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat_fields(stat_text: str) -> list[str]:
    """Fields after the ``(comm)`` of a /proc stat line (comm may hold spaces and parens)."""
    return stat_text[stat_text.rfind(")") + 2 :].split()


def process_matches(pid: int, marker: str) -> bool:
    """True when ``pid`` is alive (not a zombie) and its command line contains ``marker``.

    The marker (our pidfile path) guards against a recycled pid belonging to another program.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = _stat_fields(stat)
    if fields and fields[0] in ("Z", "X"):
        return False
    return marker.encode() in cmdline.split(b"\x00")


def live_pid(pidfile: Path) -> int | None:
    """The pid recorded in ``pidfile`` when that process still runs with that pidfile, else None."""
    pid = read_pidfile(pidfile)
    if pid is None or not process_matches(pid, str(pidfile)):
        return None
    return pid


def cpu_times(pid: int, threads: Collection[int] = ()) -> tuple[float, float]:
    """utime + stime in seconds of every live thread of ``pid``, and of those among ``threads``
    (the vCPU threads), from one pass over ``/proc/<pid>/task``."""
    total = chosen = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0, 0.0
    for task in tasks:
        try:
            fields = _stat_fields((task / "stat").read_text())
        except OSError:
            continue
        # fields[0] is state (field 3); utime and stime are fields 14 and 15
        ticks = int(fields[11]) + int(fields[12])
        total += ticks
        if int(task.name) in threads:
            chosen += ticks
    return total / CLK_TCK, chosen / CLK_TCK


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def host_facts(instances_dir: Path, accelerator: str) -> HostFacts:
    text = read_cpuinfo()
    model = "unknown"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
            break
    ram_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_kb = int(line.split()[1])
                break
    except (OSError, ValueError):
        pass
    probe = Path(instances_dir)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)
    return HostFacts(
        cpus=os.cpu_count() or 1,
        cpu_model=model,
        cpu_flags=cpu_flags(text),
        ram_mb=ram_kb // 1024,
        disk_gb=(st.f_blocks * st.f_frsize) // (1 << 30),
        accelerator=accelerator,
    )


def shared_storage_id(shared_dir: Path) -> str:
    """The id of the shared storage at ``shared_dir``, written there by the first host to use it.

    Hosts that read the same id really reach the same files, whatever path each mounts them at.
    """
    shared_dir.mkdir(parents=True, exist_ok=True)
    marker = shared_dir / ".novacron-storage-id"
    try:
        with open(marker, "x") as f:  # exclusive: concurrent first starts agree on one id
            f.write(secrets.token_hex(8))
    except FileExistsError:
        pass
    for _ in range(50):  # the winner may not have written its id yet
        text = marker.read_text().strip()
        if text:
            return text
        time.sleep(0.02)
    raise OSError(f"{marker} stays empty")

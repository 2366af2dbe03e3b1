"""Self-fencing with a lease, as Proxmox's watchdog does for HA nodes.

Every report the control plane accepts renews the host's lease for ``lease_s`` seconds, counted
on this host's monotonic clock from the moment the report was *sent* (never later than the server
recorded the heartbeat). When the lease runs out, every VM process of the host is killed (SIGKILL,
disks kept), and VMs stay stopped until a report is accepted again. The control plane restarts a
host's HA VMs elsewhere only after ``last heartbeat + lease + margin``, so by then nothing of them
runs here any more.

The lease is armed only while the host holds HA VMs (the report answer says ``lease_s > 0``), as
Proxmox arms its watchdog only on nodes with HA resources: other hosts keep the rule that VMs
outlive their agent. While armed, a separate watchdog process (own session, so a killed agent does
not take it along) reads the lease file and does the killing: it fences the host whether the agent
lost the network or died.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from novacron.virt import procs

log = logging.getLogger(__name__)
LEASE_FILE = "lease.json"
WATCHDOG_PIDFILE = "watchdog.pid"
POLL_S = 0.2


class Lease:
    """The agent's side: the deadline it must renew before, mirrored into ``run_dir/lease.json``."""

    def __init__(self, run_dir: Path | None) -> None:
        self.run_dir = run_dir
        #: on this host's monotonic clock; None while not armed
        self.deadline: float | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    def renew(self, sent_at: float, lease_s: float) -> None:
        if lease_s <= 0:
            self.disarm()
            return
        self.deadline = sent_at + lease_s
        if self.run_dir is not None:
            _write_deadline(self.run_dir / LEASE_FILE, self.deadline)
            self._ensure_watchdog()

    def expired(self, now: float | None = None) -> bool:
        return self.deadline is not None and (time.monotonic() if now is None else now) >= self.deadline

    def disarm(self) -> None:
        self.deadline = None
        if self.run_dir is not None:
            (self.run_dir / LEASE_FILE).unlink(missing_ok=True)

    def _ensure_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.poll() is None:
            return
        assert self.run_dir is not None
        self._watchdog = subprocess.Popen(
            [sys.executable, "-m", "novacron.agent.watchdog", str(self.run_dir), str(os.getpid())],
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives a kill of the agent's process group
        )

    def stop(self) -> None:
        """A clean agent stop: disarm (VMs outlive the agent) and end the watchdog."""
        self.disarm()
        if self._watchdog is not None and self._watchdog.poll() is None:
            self._watchdog.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watchdog.wait(5)


def _write_deadline(path: Path, deadline: float) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"deadline": deadline}))
    tmp.replace(path)


def read_deadline(path: Path) -> float | None:
    try:
        return float(json.loads(path.read_text())["deadline"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def kill_vm_processes(run_dir: Path) -> list[int]:
    """SIGKILL every live QEMU whose pidfile is in ``run_dir`` (pid checked against its command line)."""
    killed = []
    for pidfile in run_dir.glob("*.pid"):
        if pidfile.name == WATCHDOG_PIDFILE:
            continue
        pid = procs.live_pid(pidfile)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch(run_dir: Path, agent_pid: int) -> None:
    """Kill the VMs whenever the lease is out; end once the agent is gone and nothing is armed or
    left running (or another watchdog took over)."""
    me = str(os.getpid())
    (run_dir / WATCHDOG_PIDFILE).write_text(me)
    while True:
        try:
            if (run_dir / WATCHDOG_PIDFILE).read_text().strip() != me:
                return
        except OSError:
            return
        deadline = read_deadline(run_dir / LEASE_FILE)
        expired = deadline is not None and time.monotonic() >= deadline
        if expired and (killed := kill_vm_processes(run_dir)):
            log.warning("lease expired: fenced this host, killed QEMU pids %s", killed)
        if not _alive(agent_pid) and (deadline is None or expired):
            return
        time.sleep(POLL_S)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="watchdog %(levelname)s %(message)s")
    watch(Path(sys.argv[1]), int(sys.argv[2]))

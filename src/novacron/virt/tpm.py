"""A VM's virtual TPM 2.0: one ``swtpm`` process per VM (Debian's ``swtpm``), QEMU's TPM emulator.

swtpm keeps the TPM's state (its seeds, NV indices, PCR policy) in ``<instance dir>/tpm``, mode
0600. It is started before QEMU and with ``--terminate``, so it ends when QEMU closes its control
channel: the two live and die together (``stop`` also ends a swtpm left by a QEMU that failed to
start). A live migration carries the TPM's state in QEMU's stream to the destination's own swtpm
(the emulator backend saves and loads the state blobs); a cold move copies the state file with
the disk (``coldmove``). The state stays on the host of the VM's
instance directory, not on shared storage: two swtpm processes cannot share one state directory
while a migration runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from novacron.private import mkdir_private
from novacron.virt import procs
from novacron.virt.base import DriverError, InstanceSpec

SWTPM = "swtpm"
TPMDEV = "-tpmdev"
#: swtpm's whole TPM 2.0 state, in its state directory (what a cold move copies)
STATE_FILE = "tpm2-00.permall"


def tpm_argv(spec: InstanceSpec, ctrl: Path) -> list[str]:
    """QEMU's side: the control socket, the emulator backend and the TPM device (CRB on q35)."""
    if not spec.tpm:
        return []
    device = "tpm-crb" if spec.machine == "q35" else "tpm-tis"
    return [
        "-chardev",
        f"socket,id=chrtpm,path={str(ctrl).replace(',', ',,')}",
        TPMDEV,
        "emulator,id=tpm0,chardev=chrtpm",
        "-device",
        f"{device},tpmdev=tpm0",
    ]


async def start_swtpm(state: Path, ctrl: Path, pidfile: Path, log: Path) -> None:
    """Start the VM's swtpm (a no-op when it runs), ready for QEMU to connect."""
    if procs.live_pid(pidfile) is not None:
        return
    mkdir_private(state)
    ctrl.unlink(missing_ok=True)
    pidfile.unlink(missing_ok=True)
    try:
        proc = await asyncio.create_subprocess_exec(
            SWTPM,
            "socket",
            "--tpm2",
            "--tpmstate",
            f"dir={state},mode=0600",
            "--ctrl",
            f"type=unixio,path={ctrl},mode=0600",
            "--pid",
            f"file={pidfile}",
            "--log",
            f"file={log}",
            "--terminate",
            "--daemon",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise DriverError("swtpm is not installed on this host: install Debian's 'swtpm' package") from exc
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    if proc.returncode != 0 or not ctrl.exists():
        raise DriverError(
            f"swtpm failed to start (exit {proc.returncode}): {err.decode(errors='replace')[-300:]}"
        )


def stop_swtpm(pidfile: Path) -> None:
    """End a swtpm that outlived its QEMU (one that never connected does not end by itself)."""
    pid = procs.live_pid(pidfile)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    pidfile.unlink(missing_ok=True)

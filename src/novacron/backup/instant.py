"""Instant restore, on the VM's host: boot from the backup at once, copy the data in behind it.

``instant_restore_disk`` starts nbdkit serving the snapshot straight from the chunk store
(``nbdsource.py``) on a unix socket and makes the VM's disk a qcow2 overlay backed by that
export; the VM then boots as usual, reading what it needs from the backup. ``stream_disk``
has the driver copy every block the overlay lacks into it (``stream_backing``: QEMU's
``block-stream`` job, at a rate the operator may cap) and drop the backing file: the disk is
then standalone, as after a plain restore. Writes of the guest land in the overlay from the
first second.

nbdkit runs with the ``exitlast`` filter, so it ends by itself when its last client (QEMU, or
``qemu-img`` streaming a stopped VM) disconnects: after the stream, or when the VM is
destroyed. It is started on its own (not as the agent's child), so an agent restart does not
cut a running VM off its disk; the stream is then resumed by the task's next attempt.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sysconfig
from pathlib import Path
from typing import Any

from novacron.agent.protocol import InstantRestoreDisk, StreamDisk
from novacron.backup import nbdsource
from novacron.backup.agentops import DISK, backer
from novacron.backup.vmstore import agent_store
from novacron.virt.base import ComputeDriver, DriverError, Progress


def _paths(d: ComputeDriver, instance_id: str) -> tuple[Path, Path, Path]:
    idir = d.scratch_dir(instance_id)
    return idir / "restore-source.sock", idir / "restore-source.pid", idir / "restore-source.log"


def _backing_uri(sock: Path) -> str:
    return f"nbd+unix:///?socket={sock}"


async def _run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise DriverError(f"{argv[0]} failed: {err.decode(errors='replace').strip()}")
    return out.decode()


def _source_pid(pidfile: Path) -> int | None:
    """nbdkit's pid while it runs (a pid reused by another program since does not count)."""
    try:
        pid = int(pidfile.read_text().strip())
        if Path(f"/proc/{pid}/comm").read_text().strip() != "nbdkit":
            return None
    except (OSError, ValueError):
        return None
    return pid


async def start_source(d: ComputeDriver, instance_id: str, request: InstantRestoreDisk | StreamDisk) -> Path:
    """Serve the request's snapshot on the instance's restore socket (a no-op when it already is)."""
    sock, pidfile, logfile = _paths(d, instance_id)
    if _source_pid(pidfile) is not None and sock.exists():
        return sock
    sock.parent.mkdir(parents=True, exist_ok=True)
    sock.unlink(missing_ok=True)
    secrets_file = sock.parent / "restore-source.json"
    # the tenant's data key is on disk (0600) only until nbdkit has read it: the plugin deletes it
    fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"secrets": request.secrets, "snapshot_id": request.snapshot_id}, f)
    argv = [
        "nbdkit", "--unix", str(sock), "--pidfile", str(pidfile), "--readonly", "--log=stderr",
        "--filter=exitlast", "python", nbdsource.__file__,
        f"secrets={secrets_file}", f"site={sysconfig.get_paths()['purelib']}",
    ]  # fmt: skip
    with logfile.open("ab") as log:
        # nbdkit forks into the background once its socket listens; this process then exits
        proc = await asyncio.create_subprocess_exec(*argv, stdout=log, stderr=log, start_new_session=True)
        code = await proc.wait()
    secrets_file.unlink(missing_ok=True)
    if code != 0 or not sock.exists():
        tail = logfile.read_text(errors="replace").strip().splitlines()[-3:]
        raise DriverError(f"nbdkit could not serve the backup: {' | '.join(tail) or f'exit {code}'}")
    return sock


def stop_source(d: ComputeDriver, instance_id: str) -> None:
    """Stop serving the snapshot (nbdkit) and remove its socket."""
    sock, pidfile, _ = _paths(d, instance_id)
    pid = _source_pid(pidfile)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
    pidfile.unlink(missing_ok=True)
    sock.unlink(missing_ok=True)


async def _backing(disk: Path) -> str | None:
    info = json.loads(await _run("qemu-img", "info", "-U", "--output=json", str(disk)))
    backing = info.get("backing-filename")
    return str(backing) if backing else None


async def instant_restore_disk(
    driver: ComputeDriver, instance_id: str, request: InstantRestoreDisk, report: Progress | None
) -> dict[str, Any]:
    """Make the stopped VM's disk an overlay of the snapshot served by nbdkit, ready to boot."""
    d = backer(driver)
    if d.pid(instance_id) is not None:
        raise DriverError("the VM is running: stop it before restoring over its disk")
    secrets = request.secrets
    index = await asyncio.to_thread(
        agent_store(secrets).load_index, str(secrets["tenant_id"]), request.snapshot_id, DISK
    )
    size = request.size
    runs = nbdsource.chunk_runs(index.stored(), int(index.chunk_size), size)
    holes = [(offset, length) for offset, length, stored in runs if not stored]
    sock = await start_source(d, instance_id, request)
    disk = d.disk_path(instance_id)
    tmp = disk.with_suffix(".restoring")
    try:
        await _run("qemu-img", "create", "-q", "-f", "qcow2", str(tmp), str(size))
        if holes:
            # zero clusters in the overlay itself: block-stream skips what the top layer has, so
            # the chunks the backup never stored are neither read nor counted against the rate cap
            writes = [a for off, n in holes for a in ("-c", f"write -z {off} {n}")]
            await _run("qemu-io", "-f", "qcow2", *writes, str(tmp))
        # -u: nbdkit is not contacted (its first client must be QEMU: it exits when its last leaves)
        await _run("qemu-img", "rebase", "-q", "-u", "-F", "raw", "-b", _backing_uri(sock), str(tmp))
    except BaseException:
        tmp.unlink(missing_ok=True)
        stop_source(d, instance_id)
        raise
    tmp.replace(disk)
    return {"size": size, "source": str(sock.name), "zero_bytes": sum(n for _, n in holes)}


async def stream_disk(
    driver: ComputeDriver, instance_id: str, request: StreamDisk, report: Progress | None
) -> dict[str, Any]:
    """Copy the rest of the backup into the VM's disk and make it standalone; resumable."""
    d = backer(driver)
    disk = d.disk_path(instance_id)
    if await _backing(disk) is None:
        stop_source(d, instance_id)
        return {"streamed": False}
    if d.pid(instance_id) is None:
        # a stopped VM (its host restarted mid-stream): qemu-img copies the backing data in
        await start_source(d, instance_id, request)
        await _run("qemu-img", "rebase", "-q", "-b", "", str(disk))
    else:
        await d.stream_backing(instance_id, request.speed_bytes, report)
    if await _backing(disk) is not None:
        raise DriverError("the disk still reads from the backup after the copy; run the restore again")
    stop_source(d, instance_id)
    return {"streamed": True}

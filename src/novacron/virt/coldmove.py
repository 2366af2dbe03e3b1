"""Cold migration of a stopped instance's disk: the overlay file goes straight from host to host.

The overlay holds only what the guest wrote over its image, so copying the file and renaming its
backing file to the destination's copy of the same image (same SHA-256, checked on fetch) gives
the same disk. The source serves the file once on a TCP port of its migration address (like
QEMU's migration stream, the cluster network is trusted); the destination pulls it, checks its
size, and only then puts it in place. A UEFI VM's NVRAM (``nvram.fd``) follows the disk on the
same connection, and a vTPM's state file after it, so its firmware variables and TPM move too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from novacron.private import mkdir_private
from novacron.virt import images
from novacron.virt.base import DiskSource, DriverError, InstanceSpec, Progress
from novacron.virt.tpm import STATE_FILE

if TYPE_CHECKING:
    from novacron.virt.qemu import QemuDriver

CHUNK = 1 << 20
#: a source serving a disk nobody fetches stops after this long
SERVE_FOR_S = 600.0
_serving: set[asyncio.Task[None]] = set()


async def serve_disk(drv: QemuDriver, instance_id: str, host: str) -> DiskSource:
    """Source: serve the stopped instance's overlay to the first connection; returns where."""
    if drv.pid(instance_id) is not None:
        raise DriverError(f"instance {instance_id} is running: stop it before a cold migration")
    path = drv.disk_path(instance_id)
    if not path.exists():
        raise DriverError(f"instance {instance_id} has no disk on this host")
    served = asyncio.Event()
    nvram, tpm_state = drv.nvram_path(instance_id), drv.tpm_files(instance_id)[0] / STATE_FILE
    files = [path] + [f for f in (nvram, tpm_state) if f.exists()]

    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for served_file in files:
                with served_file.open("rb") as f:
                    while chunk := await asyncio.to_thread(f.read, CHUNK):
                        writer.write(chunk)
                        await writer.drain()
        finally:
            writer.close()
            served.set()

    server = await asyncio.start_server(handle, host, 0)
    port = int(server.sockets[0].getsockname()[1])

    async def close_when_served() -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SERVE_FOR_S):
                await served.wait()
        server.close()

    task = asyncio.create_task(close_when_served())
    _serving.add(task)
    task.add_done_callback(_serving.discard)
    sizes = [f.stat().st_size if f in files else 0 for f in (path, nvram, tpm_state)]
    return DiskSource(host, port, *sizes)


async def fetch_disk(
    drv: QemuDriver, spec: InstanceSpec, source: DiskSource, report: Progress | None = None
) -> None:
    """Destination: pull the overlay, point it at this host's image, write the seed."""
    disk = drv.disk_path(spec.id)
    disk.parent.mkdir(parents=True, exist_ok=True)
    tmp = disk.with_name(f".{disk.name}.{os.getpid()}.part")
    # the NVRAM and the TPM state follow the disk on the same connection, when the VM has them
    extras = [(drv.nvram_path(spec.id), source.nvram_size)]
    extras.append((drv.tpm_files(spec.id)[0] / STATE_FILE, source.tpm_size))
    parts = [
        (dest.with_name(f".{dest.name}.{os.getpid()}.part"), dest, size) for dest, size in extras if size
    ]
    reader, writer = await asyncio.open_connection(source.host, source.port)
    try:
        await _receive(reader, tmp, source.size, spec.id, report)
        for part, dest, size in parts:
            mkdir_private(dest.parent)
            await _receive(reader, part, size, spec.id, None)
        fmt = spec.image_format or (await asyncio.to_thread(drv.inspect_image, spec.image_path)).format
        await images.point_backing(tmp, spec.image_path, fmt)
        for part, dest, _ in parts:
            part.replace(dest)
        tmp.replace(disk)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
        for part, _, _ in parts:
            part.unlink(missing_ok=True)
    await drv.prepare(spec)  # the seed ISO (the disk is in place, so it is kept)


async def _receive(
    reader: asyncio.StreamReader, dest: Path, size: int, instance_id: str, report: Progress | None
) -> None:
    """Exactly ``size`` bytes of the stream into ``dest`` (0600), synced; fails when it ends short."""
    got = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        while got < size and (data := await reader.read(min(CHUNK, size - got))):
            await asyncio.to_thread(f.write, data)
            got += len(data)
            if report is not None and await report({"disk": {"offset": got, "len": size}}):
                raise DriverError(f"cold migration of {instance_id} cancelled on request")
        await asyncio.to_thread(os.fsync, f.fileno())
    if got != size:
        raise DriverError(
            f"{dest.name.split('.')[1]} of {instance_id} arrived truncated ({got} of {size} bytes)"
        )

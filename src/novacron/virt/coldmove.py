"""Cold migration of a stopped instance's disk: the overlay file goes straight from host to host.

The overlay holds only what the guest wrote over its image, so copying the file and renaming its
backing file to the destination's copy of the same image (same SHA-256, checked on fetch) gives
the same disk. The source serves the file once on a TCP port of its migration address (like
QEMU's migration stream, the cluster network is trusted); the destination pulls it, checks its
size, and only then puts it in place. A UEFI VM's NVRAM (``nvram.fd``) follows the disk on the
same connection, and a vTPM's state file after it, so its firmware variables and TPM move too.

Attached volumes the destination does not reach (a file pool on a host-local directory, see
``virt/volmove.py``) follow on the same connection, each file whole (a volume has no backing
file), into the destination's volumes directory; the control plane then points their rows there.
A VM booted from a volume has no root disk file: its root is the volume (served size 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from novacron.private import mkdir_private
from novacron.virt import images, volmove
from novacron.virt.base import DiskSource, DriverError, InstanceSpec, Progress
from novacron.virt.tpm import STATE_FILE

if TYPE_CHECKING:
    from novacron.virt.qemu import QemuDriver

CHUNK = 1 << 20
#: a source serving a disk nobody fetches stops after this long
SERVE_FOR_S = 600.0
_serving: set[asyncio.Task[None]] = set()


async def serve_disk(
    drv: QemuDriver, instance_id: str, host: str, volumes: tuple[str, ...] = (), disk: bool = True
) -> DiskSource:
    """Source: serve the stopped instance's overlay (then its NVRAM, TPM state and the files of
    ``volumes``) to the first connection; returns where, and each file's size. Not ``disk``: the
    volumes only (the disk is on storage both hosts share)."""
    if drv.pid(instance_id) is not None:
        raise DriverError(f"instance {instance_id} is running: stop it before a cold migration")
    path = drv.disk_path(instance_id)
    if disk and not path.exists() and not volumes:  # a boot volume's VM moves its volume, no disk
        raise DriverError(f"instance {instance_id} has no disk on this host")
    for volume in volumes:
        if not Path(volume).is_file():
            raise DriverError(f"volume file {volume} of instance {instance_id} is not on this host")
    served = asyncio.Event()
    nvram, tpm_state = drv.nvram_path(instance_id), drv.tpm_files(instance_id)[0] / STATE_FILE
    own = [f for f in (path, nvram, tpm_state) if disk and f.exists()]
    files = own + [Path(v) for v in volumes]

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
    size, nvram_size, tpm_size = (f.stat().st_size if f in own else 0 for f in (path, nvram, tpm_state))
    volume_sizes = tuple(Path(v).stat().st_size for v in volumes)
    return DiskSource(host, port, size, nvram_size, tpm_size, volume_sizes)


async def fetch_disk(
    drv: QemuDriver,
    spec: InstanceSpec,
    source: DiskSource,
    report: Progress | None = None,
    volume_ids: tuple[str, ...] = (),
) -> dict[str, str]:
    """Destination: pull the overlay, point it at this host's image, write the seed; the volumes
    ``volume_ids`` (served in that order) go to this host's volumes directory: id -> new path."""
    disk = drv.disk_path(spec.id)
    disk.parent.mkdir(parents=True, exist_ok=True)
    # the NVRAM and the TPM state follow the disk on the same connection, when the VM has them
    extras = [(disk, source.size), (drv.nvram_path(spec.id), source.nvram_size)]
    extras.append((drv.tpm_files(spec.id)[0] / STATE_FILE, source.tpm_size))
    if len(volume_ids) != len(source.volume_sizes):
        raise DriverError(f"{len(source.volume_sizes)} volume files served for {len(volume_ids)} volumes")
    moved = {v: volmove.volumes_dir(drv) / f"{v}.qcow2" for v in volume_ids}
    extras += [(moved[v], size) for v, size in zip(volume_ids, source.volume_sizes, strict=True)]
    parts = [
        (dest.with_name(f".{dest.name}.{os.getpid()}.part"), dest, size) for dest, size in extras if size
    ]
    reader, writer = await asyncio.open_connection(source.host, source.port)
    try:
        for part, dest, size in parts:
            mkdir_private(dest.parent)
            await _receive(reader, part, size, spec.id, report if dest == disk else None)
        if source.size:
            fmt = spec.image_format or (await asyncio.to_thread(drv.inspect_image, spec.image_path)).format
            await images.point_backing(parts[0][0], spec.image_path, fmt)
        for part, dest, _ in parts:
            part.replace(dest)
    finally:
        writer.close()
        for part, _, _ in parts:
            part.unlink(missing_ok=True)
    at = {v: str(path) for v, path in moved.items()}
    # the seed ISO (the disk is in place, so it is kept; the volumes named where they now are)
    volumes = tuple(replace(v, path=at.get(v.volume_id, v.path)) for v in spec.volumes)
    await drv.prepare(replace(spec, volumes=volumes))
    return at


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

"""Linked clones of a VM from one of its live snapshots (qcow2 internal snapshots, virt/snapshots.py).

QEMU cannot open another file's internal snapshot as a backing file, so the snapshot is first
written out once as its **base**: ``qemu-img convert -U -l snapshot.name=<id> -B <image>``, a thin
qcow2 holding only the clusters the snapshot has over the VM's image, backed by that image (the
internal snapshot's clusters are never rewritten, so reading them beside a running guest is safe).
Every linked clone of that snapshot is then a qcow2 overlay on the base: the chain is
clone -> base -> image, and N clones of one snapshot share one base.

Bases live beside the instances' disks in ``.snapbases/<snapshot id>.qcow2`` (a name no instance
id can take), on shared storage when the disks are, so they outlive the snapshot and the source VM
(neither is needed by the clones once the base exists). Both files are written beside their final
name and renamed when whole: a repeated step finds them done. When a clone is destroyed and no disk
beside it still reads its base, the base goes (a later clone of the snapshot, if it still exists,
writes it again); one lock per host orders that with a clone being made.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

from novacron.private import mkdir_private
from novacron.virt import images
from novacron.virt.base import DriverError, InvalidImage

if TYPE_CHECKING:
    from novacron.virt.qemu import QemuDriver

BASES = ".snapbases"
TIMEOUT_S = 3600.0
#: a base is not removed while a clone is being linked to it (one agent process per host)
_lock = asyncio.Lock()


def base_path(drv: QemuDriver, source_id: str, snapshot: str) -> Path:
    """Where the base of ``snapshot`` (a VM snapshot's id) lives: with the instances' disks."""
    if not snapshot.replace("-", "").isalnum():
        raise DriverError(f"invalid snapshot id {snapshot!r}")
    return drv.disk_path(source_id).parent.parent / BASES / f"{snapshot}.qcow2"


def is_base(path: str | Path) -> bool:
    """A backing file that is a snapshot's base (not an image of the image store)."""
    return Path(path).parent.name == BASES


async def _write_base(src: Path, snapshot: str, base: Path) -> None:
    info = await asyncio.to_thread(images.qemu_img_info, src)
    names = {s.get("name") for s in info.get("snapshots", [])}
    if snapshot not in names:
        raise DriverError(f"the disk has no snapshot {snapshot} (deleted meanwhile?)")
    backing = ["-B", info["backing-filename"], "-F", info.get("backing-filename-format", "qcow2")]
    mkdir_private(base.parent)
    tmp = base.with_name(base.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        await images.run_tool(
            images.QEMU_IMG, "convert", "-U", "-l", f"snapshot.name={snapshot}", "-O", "qcow2",
            *(backing if info.get("backing-filename") else []), str(src), str(tmp),
            timeout_s=TIMEOUT_S,
        )  # fmt: skip
        os.chmod(tmp, 0o600)
        tmp.replace(base)
    finally:
        tmp.unlink(missing_ok=True)


async def linked(drv: QemuDriver, source_id: str, snapshot: str, instance_id: str) -> None:
    """Make ``instance_id``'s disk an overlay on the base of ``source_id``'s ``snapshot``."""
    dest = drv.disk_path(instance_id)
    if dest.exists():
        return
    base = base_path(drv, source_id, snapshot)
    async with _lock:
        if not base.exists():
            src = drv.disk_path(source_id)
            if not src.exists():
                raise DriverError(f"instance {source_id} has no disk on this host")
            await _write_base(src, snapshot, base)
        size = int((await asyncio.to_thread(images.qemu_img_info, base)).get("virtual-size", 0))
        mkdir_private(dest.parent)
        await images.create_overlay(base, "qcow2", dest, size or None)


def base_of(disk: Path) -> Path | None:
    """The snapshot base ``disk`` is an overlay on, if it is a linked clone of a snapshot."""
    if not disk.exists():
        return None
    try:
        backing = images.qemu_img_info(disk).get("backing-filename")
    except (DriverError, InvalidImage):
        return None
    return Path(backing) if backing and is_base(backing) else None


async def reclaim(base: Path | None) -> bool:
    """Remove ``base`` when no disk beside it reads it any more (its last clone is gone)."""
    if base is None or not base.exists():
        return False
    async with _lock:
        for disk in base.parent.parent.glob("*/disk.qcow2"):
            if await asyncio.to_thread(base_of, disk) == base:
                return False
        base.unlink(missing_ok=True)
        return True

"""Storage pools: where volumes live, behind one small seam.

A pool makes, grows and removes a volume's storage and tells a host how to reach it (a
``VolumeAttachment``). The ``file`` pool keeps one qcow2 per volume under
``<state_dir>/volumes`` (or ``NOVACRON_VOLUMES_DIR``, a filesystem every host mounts at the same
path): the control plane writes the file, the VM's host opens it. A volume's snapshots are qcow2
internal snapshots inside its file (``qemu-img snapshot`` here while no guest runs it; QMP on the
VM's host while one does), so taking one is instant and a snapshot costs only the clusters written
after it; a volume made from a snapshot (or a clone) is a standalone copy read out of it with
``qemu-img convert -U -l snapshot.name=...``: an internal snapshot's clusters never change once
taken (a write to them is copied), so the read is consistent even while a guest writes the volume.
A Ceph RBD pool would answer an ``rbd`` attachment (QEMU's ``rbd`` block driver) from the same calls.
"""

from __future__ import annotations

import abc
import json
import os
from pathlib import Path

from novacron.config import Settings
from novacron.private import mkdir_private
from novacron.virt import images
from novacron.virt.base import VolumeAttachment

GIB = 1 << 30


class StoragePool(abc.ABC):
    """One storage pool: every call is idempotent (a task's step runs again after a crash)."""

    driver: str

    @abc.abstractmethod
    def location(self, volume_id: str) -> str:
        """Where the pool keeps the volume, as a host opens it (kept on the volume's row)."""

    @abc.abstractmethod
    async def create(self, volume_id: str, size_gb: int, image: Path | None, image_format: str = "") -> None:
        """Make the volume: blank, or a copy of ``image`` (of ``image_format``) grown to ``size_gb``."""

    @abc.abstractmethod
    async def extend(self, volume_id: str, size_gb: int) -> None:
        """Grow a volume no running guest has open (a running one grows through its host)."""

    @abc.abstractmethod
    def delete(self, volume_id: str) -> None:
        """Remove the volume's storage (nothing when it is gone already)."""

    @abc.abstractmethod
    async def copy(self, volume_id: str, size_gb: int, source_id: str, snapshot: str) -> None:
        """Make the volume a standalone copy of the snapshot ``snapshot`` of volume ``source_id``."""

    @abc.abstractmethod
    async def snapshot(self, volume_id: str, name: str, delete: bool = False) -> None:
        """Take (``delete``: drop) the snapshot ``name`` of a volume no running guest has open."""


class FilePool(StoragePool):
    """qcow2 files in one directory, local or on a filesystem shared by the hosts."""

    driver = "file"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, volume_id: str) -> Path:
        return self.root / f"{volume_id}.qcow2"

    def location(self, volume_id: str) -> str:
        return str(self.path(volume_id))

    async def create(self, volume_id: str, size_gb: int, image: Path | None, image_format: str = "") -> None:
        mkdir_private(self.root)
        dest = self.path(volume_id)
        if dest.exists():
            return
        tmp = dest.with_name(dest.name + ".new")
        if image is None:
            await images.run_tool(
                images.QEMU_IMG, "create", "-q", "-f", "qcow2", str(tmp), str(size_gb * GIB)
            )
        else:
            # a standalone copy (the image may go, the volume stays), of the format the image store
            # recorded: never probed, so bytes a guest wrote cannot pass for a qcow2 header
            fmt = ["-f", image_format] if image_format else []
            await images.run_tool(images.QEMU_IMG, "convert", "-q", *fmt, "-O", "qcow2", str(image), str(tmp))
            await images.grow(tmp, size_gb * GIB)
        os.chmod(tmp, 0o600)  # the tenant's data
        tmp.replace(dest)

    async def extend(self, volume_id: str, size_gb: int) -> None:
        await images.grow(self.path(volume_id), size_gb * GIB)

    def delete(self, volume_id: str) -> None:
        self.path(volume_id).unlink(missing_ok=True)
        self.path(volume_id).with_name(f"{volume_id}.qcow2.new").unlink(missing_ok=True)

    async def copy(self, volume_id: str, size_gb: int, source_id: str, snapshot: str) -> None:
        mkdir_private(self.root)
        dest = self.path(volume_id)
        if dest.exists():
            return
        tmp = dest.with_name(dest.name + ".new")
        # -U: a running guest may hold the source open (and locked); its snapshot does not move
        await images.run_tool(
            images.QEMU_IMG, "convert", "-q", "-U", "-f", "qcow2", "-l", f"snapshot.name={snapshot}",
            "-O", "qcow2", str(self.path(source_id)), str(tmp), timeout_s=86400,
        )  # fmt: skip
        await images.grow(tmp, size_gb * GIB)
        os.chmod(tmp, 0o600)
        tmp.replace(dest)

    async def snapshots(self, volume_id: str) -> set[str]:
        """The names of the volume's internal snapshots."""
        out = await images.run_tool(
            images.QEMU_IMG, "info", "-U", "--output=json", "-f", "qcow2", str(self.path(volume_id))
        )
        return {str(s.get("name")) for s in json.loads(out).get("snapshots", [])}

    async def snapshot(self, volume_id: str, name: str, delete: bool = False) -> None:
        taken = name in await self.snapshots(volume_id)
        if taken == delete:  # to take and not there, or to drop and there
            flag = "-d" if delete else "-c"
            await images.run_tool(images.QEMU_IMG, "snapshot", "-q", flag, name, str(self.path(volume_id)))


def attachment(
    driver: str, volume_id: str, location: str, limits: dict[str, int] | None = None, boot: bool = False
) -> VolumeAttachment:
    """How a host opens a volume of a pool of ``driver`` kept at ``location`` (with its I/O limits)."""
    return VolumeAttachment(volume_id, driver, location, volume_id, dict(limits or {}), boot)


def pool_for(settings: Settings, driver: str = "file") -> StoragePool:
    """The pool of ``driver`` (only ``file`` so far)."""
    if driver != "file":
        raise ValueError(f"no storage pool of driver {driver!r}")
    return FilePool(settings.volumes_dir)

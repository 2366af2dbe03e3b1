"""The disks of a VM's backup: its root disk ``vda`` (or a boot volume in its place) and each
attached volume, with the QEMU block node that carries its dirty bitmaps (``virt/cbt.py``).

Kept apart from ``cbt.py`` (which needs libnbd) so that what names a disk is importable anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from novacron.virt import volumes as vols
from novacron.virt.base import VolumeAttachment

if TYPE_CHECKING:
    from novacron.virt.qemu import QemuDriver

#: the root disk's format node (``virt/cmdline.py``)
NODE = "vda-disk"


@dataclass(frozen=True)
class TrackedDisk:
    """One disk of a VM's backup: the root disk ``vda`` or an attached volume."""

    #: the chunk store's name of the disk: ``vda``, or the volume's id (stable across attachments)
    name: str
    #: the block node that carries the dirty bitmaps and is fleeced (the format node)
    node: str
    #: the guest's device: ``vda`` or the volume's ``virtio-blk`` id
    device: str
    #: the file read when the VM is stopped
    path: str
    volume_id: str | None = None
    fmt: str = "qcow2"

    @property
    def persistent(self) -> bool:
        """Only a qcow2 keeps bitmaps across a restart (an rbd volume's raw node cannot)."""
        return self.fmt == "qcow2"


def tracked_disks(
    driver: QemuDriver, instance_id: str, volumes: tuple[VolumeAttachment, ...]
) -> list[TrackedDisk]:
    """The VM's disks, root disk first: its image copy, or its boot volume in its place."""
    found: list[TrackedDisk] = []
    if not any(v.boot for v in volumes):
        found.append(TrackedDisk("vda", NODE, "vda", str(driver.disk_path(instance_id))))
    for v in sorted(volumes, key=lambda v: not v.boot):
        qcow2 = v.driver == "file"
        node = vols.format_node(v.volume_id)  # qcow2 or raw (rbd), under the throttle filter
        fmt = "qcow2" if qcow2 else "raw"
        device = "vda" if v.boot else vols.device_id(v.volume_id)  # a boot volume is the guest's vda
        found.append(TrackedDisk(v.volume_id, node, device, v.path, v.volume_id, fmt))
    return found

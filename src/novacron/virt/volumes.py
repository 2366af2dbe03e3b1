"""Volumes on the QEMU driver: block devices plugged into running guests over QMP, and on the
command line of a start.

A volume is a qcow2 ``blockdev`` node (``node_name``) under a ``virtio-blk-pci`` device
(``device_id``), with the volume id's head as the disk's serial. Hot-plug is ``blockdev-add`` then
``device_add`` (the i440fx machine's ACPI PCI hot-plug: the guest's ``acpiphp`` sees a new slot);
unplug is ``device_del``, which only asks the guest: the device is gone once QEMU sends
``DEVICE_DELETED``, and only then is the node removed with ``blockdev-del``. ``launch.json`` (the
command line ``reboot`` restarts with) follows each plug and unplug, so a reboot keeps the disks.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from novacron.private import write_private
from novacron.virt.base import DriverError, VolumeAttachment
from novacron.virt.qmp import qmp_call_until_event

if TYPE_CHECKING:
    from novacron.virt.qemu import QemuDriver


def node_name(volume_id: str) -> str:
    """The volume's block node (QEMU allows 31 characters, starting with a letter)."""
    return "vol" + hashlib.sha256(volume_id.encode()).hexdigest()[:16]


def device_id(volume_id: str) -> str:
    return node_name(volume_id) + "-dev"


def blockdev(volume: VolumeAttachment) -> dict[str, Any]:
    """The volume's ``blockdev-add`` arguments (also its ``-blockdev`` JSON on a command line)."""
    if volume.driver == "rbd":  # a raw RBD image: QEMU's rbd driver (qemu-block-extra) reads it
        return {
            "driver": "raw",
            "node-name": node_name(volume.volume_id),
            "discard": "unmap",
            "file": {"driver": "rbd", **rbd_location(volume.path)},
        }
    if volume.driver != "file":
        raise DriverError(
            f"volume {volume.volume_id}: the QEMU driver knows no storage pool {volume.driver!r}"
        )
    return {
        "driver": "qcow2",
        "node-name": node_name(volume.volume_id),
        "discard": "unmap",
        "file": {"driver": "file", "filename": volume.path, "aio": "threads"},
    }


def rbd_location(location: str) -> dict[str, str]:
    """``rbd:<pool>/<image>:conf=<path>`` (the rbd pool's location) as blockdev-add's rbd options."""
    head, _, conf = location.partition(":conf=")
    pool, _, image = head.removeprefix("rbd:").partition("/")
    if not (location.startswith("rbd:") and pool and image and conf):
        raise DriverError(f"not an rbd location: {location!r}")
    return {"pool": pool, "image": image, "conf": conf}


def device(volume: VolumeAttachment) -> dict[str, Any]:
    """The volume's ``device_add`` arguments."""
    return {
        "driver": "virtio-blk-pci",
        "id": device_id(volume.volume_id),
        "drive": node_name(volume.volume_id),
        "serial": volume.serial[:20],
    }


def argv(volumes: tuple[VolumeAttachment, ...]) -> list[str]:
    """The command-line options of the volumes a VM starts with."""
    out: list[str] = []
    for v in volumes:
        dev = device(v)
        out += ["-blockdev", json.dumps(blockdev(v), separators=(",", ":"))]
        out += ["-device", f"virtio-blk-pci,drive={dev['drive']},id={dev['id']},serial={dev['serial']}"]
    return out


async def _devices(driver: QemuDriver, instance_id: str) -> set[str]:
    children = await driver.qmp(instance_id, "qom-list", {"path": "/machine/peripheral"})
    return {str(c["name"]) for c in children or []}


async def _nodes(driver: QemuDriver, instance_id: str) -> set[str]:
    nodes = await driver.qmp(instance_id, "query-named-block-nodes", {"flat": True})
    return {str(n.get("node-name")) for n in nodes or []}


async def attach(driver: QemuDriver, instance_id: str, volume: VolumeAttachment) -> None:
    """Plug the volume in; each half is skipped when it is there already (a step run again)."""
    if node_name(volume.volume_id) not in await _nodes(driver, instance_id):
        await driver.qmp(instance_id, "blockdev-add", blockdev(volume))
    if device_id(volume.volume_id) not in await _devices(driver, instance_id):
        await driver.qmp(instance_id, "device_add", device(volume))
    _remember(driver, instance_id, volume.volume_id, argv((volume,)))


async def detach(driver: QemuDriver, instance_id: str, volume_id: str, timeout_s: float) -> None:
    """Unplug the volume: ask the guest, wait for ``DEVICE_DELETED``, then drop the block node."""
    dev = device_id(volume_id)
    if dev in await _devices(driver, instance_id):
        await qmp_call_until_event(
            driver.qmp_socket(instance_id),
            "device_del",
            {"id": dev},
            "DEVICE_DELETED",
            lambda data: data.get("device") == dev,
            timeout_s,
        )
    if node_name(volume_id) in await _nodes(driver, instance_id):
        await driver.qmp(instance_id, "blockdev-del", {"node-name": node_name(volume_id)})
    _remember(driver, instance_id, volume_id, [])


async def extend(driver: QemuDriver, instance_id: str, volume_id: str, size_bytes: int) -> None:
    """Grow the attached volume; virtio-blk tells the guest its new capacity at once."""
    if node_name(volume_id) not in await _nodes(driver, instance_id):
        raise DriverError(f"volume {volume_id} is not attached to instance {instance_id}")
    await driver.qmp(instance_id, "block_resize", {"node-name": node_name(volume_id), "size": size_bytes})


def _remember(driver: QemuDriver, instance_id: str, volume_id: str, options: list[str]) -> None:
    """Make the volume's options in ``launch.json`` these (none: unplugged), for ``reboot``."""
    launch = driver.instance_dir(instance_id) / "launch.json"
    try:
        saved = json.loads(launch.read_text())
    except (OSError, ValueError):
        return
    node, old, kept = node_name(volume_id), list(saved.get("argv", [])), []
    i = 0
    while i < len(old):
        pair = old[i : i + 2]
        if len(pair) == 2 and pair[0] in ("-blockdev", "-device") and node in pair[1]:
            i += 2
            continue
        kept.append(old[i])
        i += 1
    saved["argv"] = kept + options
    write_private(launch, json.dumps(saved, indent=1))

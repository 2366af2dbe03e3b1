"""Volumes on the QEMU driver: block devices plugged into running guests over QMP, and on the
command line of a start.

A volume is a ``throttle`` filter node (``node_name``, in its own ``throttle-group`` object
``group_id`` holding the volume's I/O limits) over its format node (``format_node``: qcow2 over a
file for the ``file`` pool, raw over QEMU's ``rbd`` driver for the ``rbd`` pool), under a
``virtio-blk-pci`` device (``device_id``), with the volume id's head as the disk's serial; a boot
volume's device has ``bootindex=1``. Limits change live with ``qom-set`` of the group's ``limits``;
snapshots are qcow2 internal snapshots (``blockdev-snapshot-internal-sync`` through the filter).
Hot-plug is ``object-add`` (the group), ``blockdev-add`` then ``device_add`` (the i440fx machine's
ACPI PCI hot-plug: the guest's ``acpiphp`` sees a new slot); unplug is ``device_del``, which only
asks the guest: the device is gone once QEMU sends ``DEVICE_DELETED``, and only then are the nodes
removed with ``blockdev-del`` and the group with ``object-del``. ``launch.json`` (the
command line ``reboot`` restarts with) follows each plug and unplug, so a reboot keeps the disks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from novacron.private import write_private
from novacron.virt import rbdauth
from novacron.virt.base import DriverError, VolumeAttachment
from novacron.virt.qmp import qmp_call_until_event

if TYPE_CHECKING:
    from novacron.virt.qemu import QemuDriver


def node_name(volume_id: str) -> str:
    """The volume's block node (QEMU allows 31 characters, starting with a letter)."""
    return "vol" + hashlib.sha256(volume_id.encode()).hexdigest()[:16]


def device_id(volume_id: str) -> str:
    return node_name(volume_id) + "-dev"


def format_node(volume_id: str) -> str:
    """The format node under the volume's throttle filter (qcow2 of a file, raw of an rbd image)."""
    return node_name(volume_id) + "-q"


def group_id(volume_id: str) -> str:
    """The volume's ``throttle-group`` object (its name holds ``node_name``: ``_remember`` finds it)."""
    return node_name(volume_id) + "-tg"


def qemu_limits(limits: dict[str, int], full: bool = False) -> dict[str, int]:
    """The throttle group's ``limits`` of the volume's (``iops_total`` -> ``iops-total``); ``full``:
    every key, unset ones unlimited (``qom-set`` keeps what it is not given)."""
    out = {k.replace("_", "-"): int(v) for k, v in limits.items() if v}
    if full:
        for key in LIMIT_KEYS:
            out.setdefault(key.replace("_", "-"), 1 if key.endswith("_length") else 0)
    return out


#: the limits a volume may have (compute.volume_limits validates them)
LIMIT_KEYS = (
    "iops_total", "iops_read", "iops_write", "bps_total", "bps_read", "bps_write",
    "iops_total_max", "iops_total_max_length", "bps_total_max", "bps_total_max_length",
)  # fmt: skip


def group(volume: VolumeAttachment) -> dict[str, Any]:
    """The volume's ``object-add`` arguments (also its ``-object`` JSON on a command line)."""
    return {
        "qom-type": "throttle-group",
        "id": group_id(volume.volume_id),
        "limits": qemu_limits(volume.limits),
    }


def blockdev(volume: VolumeAttachment) -> dict[str, Any]:
    """The volume's ``blockdev-add`` arguments (also its ``-blockdev`` JSON on a command line)."""
    node = node_name(volume.volume_id)
    if volume.driver == "rbd":  # a raw RBD image: QEMU's rbd driver (qemu-block-extra) reads it
        fmt: dict[str, Any] = {
            "driver": "raw",
            "node-name": format_node(volume.volume_id),
            "discard": "unmap",
            "file": rbdauth.blockdev_options(rbdauth.parse(volume.path), node),
        }
    elif volume.driver == "file":
        fmt = {
            "driver": "qcow2",
            "node-name": format_node(volume.volume_id),
            "discard": "unmap",
            "file": {"driver": "file", "filename": volume.path, "aio": "threads"},
        }
    else:
        raise DriverError(
            f"volume {volume.volume_id}: the QEMU driver knows no storage pool {volume.driver!r}"
        )
    # both pools under the same filter: the group's limits apply whatever the storage
    group = group_id(volume.volume_id)
    return {"driver": "throttle", "node-name": node, "throttle-group": group, "file": fmt}


def rbd_location(location: str) -> dict[str, Any]:
    """``rbd:<pool>/<image>:conf=<path>[:id=..][:keyring=..]`` (the rbd pool's location) as
    blockdev-add's rbd options (a keyring's key goes by a ``secret`` object: ``key_secret``)."""
    return rbdauth.blockdev_options(rbdauth.parse(location), "")


def key_secret(volume: VolumeAttachment, run_dir: Path) -> dict[str, Any] | None:
    """The ``secret`` object of an rbd volume's cephx key (None: no cephx, or not rbd)."""
    if volume.driver != "rbd":
        return None
    return rbdauth.secret_object(rbdauth.parse(volume.path), node_name(volume.volume_id), run_dir)


def device(volume: VolumeAttachment) -> dict[str, Any]:
    """The volume's ``device_add`` arguments."""
    return {
        "driver": "virtio-blk-pci",
        "id": device_id(volume.volume_id),
        "drive": node_name(volume.volume_id),
        "serial": volume.serial[:20],
    }


def argv(volumes: tuple[VolumeAttachment, ...], run_dir: Path | None = None) -> list[str]:
    """The command-line options of the volumes a VM starts with (``run_dir``: where the host keeps
    an rbd volume's cephx key for QEMU)."""
    out: list[str] = []
    for v in volumes:
        dev = device(v)
        if run_dir is not None and (secret := key_secret(v, run_dir)) is not None:
            out += ["-object", json.dumps(secret, separators=(",", ":"))]
        out += ["-object", json.dumps(group(v), separators=(",", ":"))]
        out += ["-blockdev", json.dumps(blockdev(v), separators=(",", ":"))]
        boot = ",bootindex=1" if v.boot else ""
        out += [
            "-device",
            f"virtio-blk-pci,drive={dev['drive']},id={dev['id']},serial={dev['serial']}{boot}",
        ]
    return out


async def _devices(driver: QemuDriver, instance_id: str) -> set[str]:
    children = await driver.qmp(instance_id, "qom-list", {"path": "/machine/peripheral"})
    return {str(c["name"]) for c in children or []}


async def _nodes(driver: QemuDriver, instance_id: str) -> set[str]:
    nodes = await driver.qmp(instance_id, "query-named-block-nodes", {"flat": True})
    return {str(n.get("node-name")) for n in nodes or []}


async def _objects(driver: QemuDriver, instance_id: str) -> set[str]:
    children = await driver.qmp(instance_id, "qom-list", {"path": "/objects"})
    return {str(c["name"]) for c in children or []}


async def attach(driver: QemuDriver, instance_id: str, volume: VolumeAttachment) -> None:
    """Plug the volume in; each part is skipped when it is there already (a step run again)."""
    objects = await _objects(driver, instance_id)
    secret = key_secret(volume, driver.run_dir)
    if secret is not None and secret["id"] not in objects:
        await driver.qmp(instance_id, "object-add", secret)
    if group_id(volume.volume_id) not in objects:
        await driver.qmp(instance_id, "object-add", group(volume))
    if node_name(volume.volume_id) not in await _nodes(driver, instance_id):
        await driver.qmp(instance_id, "blockdev-add", blockdev(volume))
    if device_id(volume.volume_id) not in await _devices(driver, instance_id):
        await driver.qmp(instance_id, "device_add", device(volume))
    _remember(driver, instance_id, volume.volume_id, argv((volume,), driver.run_dir))


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
    objects = await _objects(driver, instance_id)
    for obj in (group_id(volume_id), rbdauth.secret_id(node_name(volume_id))):
        if obj in objects:
            await driver.qmp(instance_id, "object-del", {"id": obj})
    rbdauth.key_file(driver.run_dir, node_name(volume_id)).unlink(missing_ok=True)
    _remember(driver, instance_id, volume_id, [])


async def extend(driver: QemuDriver, instance_id: str, volume_id: str, size_bytes: int) -> None:
    """Grow the attached volume; virtio-blk tells the guest its new capacity at once."""
    if node_name(volume_id) not in await _nodes(driver, instance_id):
        raise DriverError(f"volume {volume_id} is not attached to instance {instance_id}")
    await driver.qmp(instance_id, "block_resize", {"node-name": node_name(volume_id), "size": size_bytes})


async def set_limits(driver: QemuDriver, instance_id: str, volume: VolumeAttachment) -> None:
    """Give the attached volume's throttle group the volume's limits now (and at the next start)."""
    if group_id(volume.volume_id) not in await _objects(driver, instance_id):
        raise DriverError(
            f"volume {volume.volume_id} was plugged in without a throttle group (before I/O limits): "
            "detach and attach it again to limit it"
        )
    value = qemu_limits(volume.limits, full=True)
    await driver.qmp(
        instance_id,
        "qom-set",
        {"path": f"/objects/{group_id(volume.volume_id)}", "property": "limits", "value": value},
    )
    _remember(driver, instance_id, volume.volume_id, argv((volume,), driver.run_dir))


async def snapshot(driver: QemuDriver, instance_id: str, volume_id: str, name: str, delete: bool) -> None:
    """Take (or drop) the qcow2 internal snapshot ``name`` of the attached volume, atomically for
    the guest; a step run again finds it taken (or gone) and does nothing."""
    node = node_name(volume_id)
    if node not in await _nodes(driver, instance_id):
        raise DriverError(f"volume {volume_id} is not attached to instance {instance_id}")
    infos = await driver.qmp(instance_id, "query-named-block-nodes", {"flat": True})
    taken = {
        str(s.get("name"))
        for n in infos or []
        if n.get("node-name") in (node, format_node(volume_id))
        for s in n.get("image", {}).get("snapshots", [])
    }
    if delete and name in taken:
        await driver.qmp(
            instance_id, "blockdev-snapshot-delete-internal-sync", {"device": node, "name": name}
        )
    elif not delete and name not in taken:
        await driver.qmp(instance_id, "blockdev-snapshot-internal-sync", {"device": node, "name": name})


def _remember(driver: QemuDriver, instance_id: str, volume_id: str, options: list[str]) -> None:
    """Make the volume's options in ``launch.json`` these (none: unplugged), for ``reboot``."""
    launch = driver.instance_dir(instance_id) / "launch.json"
    try:
        saved = json.loads(launch.read_text())
    except (OSError, ValueError):
        return
    node, old = node_name(volume_id), list(saved.get("argv", []))
    kept: list[str] = []
    at, i = -1, 0
    while i < len(old):
        pair = old[i : i + 2]
        if len(pair) == 2 and pair[0] in ("-object", "-blockdev", "-device") and node in pair[1]:
            at = len(kept) if at < 0 else at
            i += 2
            continue
        kept.append(old[i])
        i += 1
    # in place when it was there (a boot volume keeps its PCI slot), else after the rest
    at = len(kept) if at < 0 else at
    saved["argv"] = kept[:at] + options + kept[at:]
    write_private(launch, json.dumps(saved, indent=1))

"""The volumes of a live-migrating VM: kept where both hosts reach them, else copied over NBD.

Each attached volume is decided on its own, whatever the root disk does:

- kept (``shared``): its file lies in a directory carrying a storage-id marker (a file pool on a
  filesystem every host mounts, ``NOVACRON_VOLUMES_DIR``) and the destination reads the same
  id there, or in the destination's own volumes directory. The destination QEMU opens the very
  same qcow2 (inactive until the incoming state is loaded, as with a shared root disk).
- copied (``local``): the destination makes a blank qcow2 of the same virtual size in its own
  volumes directory (``<state_dir>/volumes``, the file pool's root on an all-in-one host), starts
  with it and exports it over NBD next to the root disk; the source mirrors the whole volume into
  it (``drive-mirror sync=full``) alongside the root disk's mirror and completes it while paused.
  The volume's row then names the new path, and the source's copy goes with the source instance.

The source knows its attached volumes from ``launch.json`` (it follows every hot-plug).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from novacron.private import mkdir_private
from novacron.virt import images
from novacron.virt.base import DriverError, InstanceSpec
from novacron.virt.volumes import node_name

if TYPE_CHECKING:
    from novacron.virt.qemu import QemuDriver

MARKER = ".novacron-storage-id"


def volumes_dir(drv: QemuDriver) -> Path:
    """Where this host keeps the volumes it received (its state dir's ``volumes``)."""
    return drv.instances_dir.parent / "volumes"


def store_id(path: Path) -> str:
    """The storage id of the directory holding ``path`` ("" when it is not shared storage)."""
    try:
        return (path.parent / MARKER).read_text().strip()
    except OSError:
        return ""


def _attached_paths(drv: QemuDriver, instance_id: str) -> list[Path]:
    launch = drv.instance_dir(instance_id) / "launch.json"
    try:
        argv = list(json.loads(launch.read_text()).get("argv", []))
    except (OSError, ValueError):
        return []
    paths = []
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag != "-blockdev" or not value.startswith("{"):
            continue
        node = json.loads(value)
        if str(node.get("node-name", "")).startswith("vol") and (filename := _filename(node)):
            paths.append(Path(filename))
    return paths


def _filename(node: dict[str, Any]) -> str | None:
    """The file under a volume's node chain (throttle -> qcow2 -> file); None for rbd (no file)."""
    child: Any = node
    while isinstance(child, dict):
        if child.get("filename"):
            return str(child["filename"])
        child = child.get("file")
    return None


async def attached(
    drv: QemuDriver, instance_id: str, also: tuple[str, ...] = ()
) -> dict[str, dict[str, Any]]:
    """Source: each attached volume's path (those it runs with, and ``also``: a stopped VM's
    volumes attached since its last start) -> its storage id and virtual size."""
    out: dict[str, dict[str, Any]] = {}
    for path in dict.fromkeys([*_attached_paths(drv, instance_id), *map(Path, also)]):
        info = await images.run_tool(images.QEMU_IMG, "info", "-U", "--output=json", str(path))
        out[str(path)] = {"store": store_id(path), "size": int(json.loads(info)["virtual-size"])}
    return out


def choose(drv: QemuDriver, source: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Destination: ``shared`` for each volume it reaches, else ``local`` (to copy).

    It reaches a volume on the same shared storage (the same storage id there), or one in its own
    volumes directory (a volume that moved here before, or the file pool's root on the all-in-one
    host). A host-local directory of another host is never reached, even at a path that exists here.
    """
    own = volumes_dir(drv).resolve()
    modes = {}
    for path, where in source.items():
        file, here = Path(path), store_id(Path(path))
        reached = (here and here == where.get("store")) or file.parent.resolve() == own
        modes[path] = "shared" if reached and file.exists() else "local"
    return modes


async def prepare(
    drv: QemuDriver, spec: InstanceSpec, copies: dict[str, int]
) -> tuple[InstanceSpec, dict[str, str]]:
    """Destination: blank volumes for those copied (id -> size); the spec naming them, id -> path."""
    if not copies:
        return spec, {}
    root = volumes_dir(drv)
    mkdir_private(root)
    moved: dict[str, str] = {}
    volumes = []
    for v in spec.volumes:
        if v.volume_id in copies:
            path = root / f"{v.volume_id}.qcow2"
            if path == Path(v.path):
                raise DriverError(f"volume {v.volume_id} already is at {path} on this host: nothing to copy")
            path.unlink(missing_ok=True)  # a half-made copy of a step run again
            await images.run_tool(
                images.QEMU_IMG, "create", "-q", "-f", "qcow2", str(path), str(copies[v.volume_id])
            )
            path.chmod(0o600)
            moved[v.volume_id] = str(path)
            v = replace(v, path=str(path))
        volumes.append(v)
    if set(copies) - set(moved):
        raise DriverError(f"volumes {sorted(set(copies) - set(moved))} are not attached to {spec.id}")
    return replace(spec, volumes=tuple(volumes)), moved


async def export(drv: QemuDriver, instance_id: str, moved: dict[str, str]) -> None:
    """Destination: export each copied volume's node over the NBD server (already started)."""
    for volume_id in moved:
        node = node_name(volume_id)
        await drv.qmp(
            instance_id, "block-export-add", {"type": "nbd", "id": node, "node-name": node, "writable": True}
        )


def mirror_jobs(moved: dict[str, str]) -> list[str]:
    return [f"mirror-{node_name(v)}" for v in moved]


async def start_mirrors(
    drv: QemuDriver, instance_id: str, nbd_base: str, moved: dict[str, str], speed: int | None
) -> None:
    """Source: mirror every copied volume, whole (a volume has no backing image), into its export."""
    for volume_id in moved:
        node = node_name(volume_id)
        args: dict[str, Any] = {
            "job-id": f"mirror-{node}",
            "device": node,
            "target": f"{nbd_base}/{node}",
            "format": "raw",
            "sync": "full",
            "mode": "existing",
        }
        if speed:
            args["speed"] = speed
        await drv.qmp(instance_id, "drive-mirror", args)


def drop(drv: QemuDriver, paths: list[str]) -> list[str]:
    """Remove this host's copies of volumes that moved away: only files of its own volumes dir
    (a volume it opened elsewhere, in the file pool's root, belongs to the pool: it stays)."""
    root = volumes_dir(drv).resolve()
    removed = []
    for p in paths:
        path = Path(p).resolve()
        if path.parent == root and path.suffix == ".qcow2" and path.exists():
            path.unlink()
            removed.append(str(path))
    return removed

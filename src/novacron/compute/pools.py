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
The ``rbd`` pool keeps one RBD image per volume in a Ceph pool (``NOVACRON_RBD_CONF``,
``NOVACRON_RBD_POOL``): the control plane makes it with the ``rbd`` tool (or ``qemu-img convert``
for a copy of an image), every host opens it with QEMU's ``rbd`` block driver, so a live migration
never copies it; its snapshots are RBD snapshots (``rbd snap``), copies ``rbd cp`` of one. A
volume's own backup keeps an RBD snapshot ``nc-<backup>`` (``backup/volbackup.py``): ``delete``
drops it before the image.
"""

from __future__ import annotations

import abc
import json
import os
import subprocess
from pathlib import Path

from novacron.config import Settings
from novacron.private import mkdir_private
from novacron.virt import images, procs
from novacron.virt.base import DriverError, VolumeAttachment

GIB = 1 << 30
#: the name prefix of the RBD snapshot a volume's own backup keeps (``backup/volbackup.py``)
BACKUP_SNAPSHOT = "nc-"
#: how the rbd tool and librados say a client's key was refused (or none was found for it)
AUTH_FAILED = (
    "Permission denied",
    "Operation not permitted",
    "handle_auth_bad_method",
    "unable to find a keyring",
)


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
    async def extend(self, volume_id: str, size_gb: int, location: str = "") -> None:
        """Grow a volume no running guest has open (a running one grows through its host)."""

    @abc.abstractmethod
    def delete(self, volume_id: str, location: str = "") -> None:
        """Remove the volume's storage (nothing when it is gone already).

        ``location`` is the volume row's: where it is now, when a live migration copied it to
        another host's volumes directory (``compute/volmove.py``).
        """

    @abc.abstractmethod
    async def copy(self, volume_id: str, size_gb: int, source_id: str, snapshot: str) -> None:
        """Make the volume a standalone copy of the snapshot ``snapshot`` of volume ``source_id``."""

    @abc.abstractmethod
    async def snapshot(self, volume_id: str, name: str, delete: bool = False) -> None:
        """Take (``delete``: drop) the snapshot ``name`` of a volume no running guest has open."""


class FilePool(StoragePool):
    """qcow2 files in one directory, local or on a filesystem shared by the hosts."""

    driver = "file"

    def __init__(self, root: Path, shared: bool = False) -> None:
        self.root = root
        #: on a filesystem every host mounts: marked with a storage id, so a live migration keeps
        #: its volumes in place (a host that reads the same id reaches them; ``virt/volmove.py``)
        self.shared = shared

    def path(self, volume_id: str) -> Path:
        return self.root / f"{volume_id}.qcow2"

    def _file(self, volume_id: str, location: str) -> Path:
        """The volume's file: where its row says, when that is one of a volume of this id."""
        if location and Path(location).name == f"{volume_id}.qcow2":
            return Path(location)
        return self.path(volume_id)

    def location(self, volume_id: str) -> str:
        return str(self.path(volume_id))

    async def create(self, volume_id: str, size_gb: int, image: Path | None, image_format: str = "") -> None:
        mkdir_private(self.root)
        if self.shared:
            procs.shared_storage_id(self.root)
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

    async def extend(self, volume_id: str, size_gb: int, location: str = "") -> None:
        await images.grow(self._file(volume_id, location), size_gb * GIB)

    def delete(self, volume_id: str, location: str = "") -> None:
        self._file(volume_id, location).unlink(missing_ok=True)
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


class RbdPool(StoragePool):
    """RBD images of one Ceph pool; the location is QEMU's ``rbd:<pool>/<image>:conf=<path>``."""

    driver = "rbd"

    def __init__(self, conf: Path, pool: str, user: str | None = None, keyring: Path | None = None) -> None:
        self.conf, self.pool, self.user, self.keyring = conf, pool, user, keyring

    def _rbd(self, *args: str) -> list[str]:
        auth = [
            *(["--id", self.user] if self.user else []),
            *(["--keyring", str(self.keyring)] if self.keyring else []),
        ]
        return ["rbd", "-c", str(self.conf), *auth, *args]

    def _target(self, image: str) -> str:
        """QEMU's name of an image (``qemu-img`` reads its options; ``virt/rbdauth.py`` for QEMU)."""
        auth = (f":id={self.user}" if self.user else "") + (
            f":keyring={self.keyring}" if self.keyring else ""
        )
        return f"rbd:{self.pool}/{image}:conf={self.conf}{auth}"

    def location(self, volume_id: str) -> str:
        return self._target(volume_id)

    async def _run(self, *argv: str, timeout_s: float = 600) -> str:
        """Run a tool on the cluster; a refused key is said as the settings that give it."""
        try:
            return await images.run_tool(*argv, timeout_s=timeout_s)
        except DriverError as exc:
            if self.keyring is not None and any(m in str(exc) for m in AUTH_FAILED):
                raise DriverError(
                    f"Ceph refused client.{self.user} with the key of {self.keyring}: check "
                    f"NOVACRON_RBD_USER and NOVACRON_RBD_KEYRING ({exc})"
                ) from exc
            raise

    async def _exists(self, image: str) -> bool:
        try:
            await self._run(*self._rbd("info", f"{self.pool}/{image}"), timeout_s=60)
        except DriverError as exc:
            if "NOVACRON_RBD_KEYRING" in str(exc):
                raise
            return False
        return True

    async def create(self, volume_id: str, size_gb: int, image: Path | None, image_format: str = "") -> None:
        if await self._exists(volume_id):
            return
        tmp = f"{volume_id}.new"  # renamed once whole: a crash never leaves a half copy in place
        if await self._exists(tmp):
            await self._run(*self._rbd("rm", "--no-progress", f"{self.pool}/{tmp}"))
        if image is None:
            await self._run(*self._rbd("create", "--size", f"{size_gb}G", f"{self.pool}/{tmp}"))
        else:
            fmt = ["-f", image_format] if image_format else []
            target = self._target(tmp)
            await self._run(images.QEMU_IMG, "convert", "-q", *fmt, "-O", "raw", str(image), target)
            await self._grow(tmp, size_gb)
        await self._run(*self._rbd("rename", f"{self.pool}/{tmp}", f"{self.pool}/{volume_id}"))

    async def _grow(self, image: str, size_gb: int) -> None:
        """Grow ``image`` to ``size_gb`` (``rbd resize`` refuses the size it has already)."""
        info = json.loads(await self._run(*self._rbd("info", "--format", "json", f"{self.pool}/{image}")))
        if int(info.get("size", 0)) < size_gb * GIB:
            await self._run(
                *self._rbd("resize", "--no-progress", "--size", f"{size_gb}G", f"{self.pool}/{image}")
            )

    async def extend(self, volume_id: str, size_gb: int, location: str = "") -> None:
        await self._run(
            *self._rbd("resize", "--no-progress", "--size", f"{size_gb}G", f"{self.pool}/{volume_id}")
        )

    def delete(self, volume_id: str, location: str = "") -> None:
        # the snapshot a volume's own backup keeps (``nc-<backup>``) would make ``rbd rm`` refuse
        listed = subprocess.run(
            self._rbd("snap", "ls", "--format", "json", f"{self.pool}/{volume_id}"),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        for snap in json.loads(listed.stdout or "[]") if listed.returncode == 0 else []:
            if str(snap.get("name", "")).startswith(BACKUP_SNAPSHOT):
                subprocess.run(
                    self._rbd("snap", "rm", "--no-progress", f"{self.pool}/{volume_id}@{snap['name']}"),
                    capture_output=True, timeout=120,
                )  # fmt: skip
        for image in (volume_id, f"{volume_id}.new"):  # an absent image: nothing to do
            subprocess.run(
                self._rbd("rm", "--no-progress", f"{self.pool}/{image}"), capture_output=True, timeout=120
            )

    async def size(self, image: str) -> int:
        """The size in bytes of ``image`` (``<volume>`` or ``<volume>@<snapshot>``)."""
        info = json.loads(await self._run(*self._rbd("info", "--format", "json", f"{self.pool}/{image}")))
        return int(info["size"])

    async def diff(self, volume_id: str, snapshot: str, since: str) -> list[tuple[int, int]]:
        """The (offset, length) extents of the volume written (or discarded) between its snapshots
        ``since`` and ``snapshot`` (``rbd diff``: what a volume's own incremental backup reads)."""
        out = await self._run(
            *self._rbd(
                "diff", "--from-snap", since, "--format", "json", f"{self.pool}/{volume_id}@{snapshot}"
            ),
            timeout_s=3600,
        )
        return [(int(e["offset"]), int(e["length"])) for e in json.loads(out or "[]")]

    async def snapshots(self, volume_id: str) -> set[str]:
        """The names of the volume's RBD snapshots."""
        return await self._snaps(volume_id)

    async def _snaps(self, volume_id: str) -> set[str]:
        out = await self._run(*self._rbd("snap", "ls", "--format", "json", f"{self.pool}/{volume_id}"))
        return {str(s.get("name")) for s in json.loads(out or "[]")}

    async def snapshot(self, volume_id: str, name: str, delete: bool = False) -> None:
        taken = name in await self._snaps(volume_id)
        if taken == delete:  # to take and not there, or to drop and there
            verb = "rm" if delete else "create"
            await self._run(*self._rbd("snap", verb, "--no-progress", f"{self.pool}/{volume_id}@{name}"))

    async def copy(self, volume_id: str, size_gb: int, source_id: str, snapshot: str) -> None:
        if await self._exists(volume_id):
            return
        tmp = f"{volume_id}.new"
        if await self._exists(tmp):
            await self._run(*self._rbd("rm", "--no-progress", f"{self.pool}/{tmp}"))
        await self._run(
            *self._rbd("cp", "--no-progress", f"{self.pool}/{source_id}@{snapshot}", f"{self.pool}/{tmp}"),
            timeout_s=86400,
        )
        await self._grow(tmp, size_gb)
        await self._run(*self._rbd("rename", f"{self.pool}/{tmp}", f"{self.pool}/{volume_id}"))


def kinds(settings: Settings) -> tuple[str, ...]:
    """The pools this platform offers: ``file`` always, ``rbd`` with a Ceph cluster configured."""
    return ("file", "rbd") if settings.rbd_conf is not None else ("file",)


def attachment(
    driver: str, volume_id: str, location: str, limits: dict[str, int] | None = None, boot: bool = False
) -> VolumeAttachment:
    """How a host opens a volume of a pool of ``driver`` kept at ``location`` (with its I/O limits)."""
    return VolumeAttachment(volume_id, driver, location, volume_id, dict(limits or {}), boot)


def pool_for(settings: Settings, driver: str = "file") -> StoragePool:
    """The pool of ``driver`` (``file``, or ``rbd`` when a Ceph cluster is configured)."""
    if driver == "rbd" and settings.rbd_conf is not None:
        return RbdPool(settings.rbd_conf, settings.rbd_pool, settings.rbd_user, settings.rbd_keyring)
    if driver != "file":
        raise ValueError(f"no storage pool of driver {driver!r}")
    return FilePool(settings.volumes_dir, shared=settings.shared_volumes_dir is not None)

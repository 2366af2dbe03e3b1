"""Change-block tracking and point-in-time views of a VM disk, on QEMU 7.2, read over NBD.

How a backup of a running VM reads its disk (pull-mode backup with image fleecing, as libvirt
does it for oVirt and Proxmox-style incremental backups):

- Every disk of the VM (the root disk ``vda`` and each attached volume: ``TrackedDisk``) is
  tracked and read the same way, all in the one transaction below so the disks are mutually
  consistent; a boot volume stands in for ``vda``. Every backup leaves a persistent dirty bitmap
  ``nc-<snapshot id>`` on each disk's format node (``vda-disk``, a volume's ``vol<hex>-q``) at a
  64 KiB granularity (the chunk size, when smaller): one 64 KiB guest write dirties 64 KiB.
  QEMU keeps it in the qcow2 overlay across a clean restart; a QEMU killed without closing the
  image leaves it marked in use ("inconsistent"), and then it is not trusted.
- The point in time is one QMP ``transaction``: add the new bitmap; for an incremental, add a
  disabled temporary bitmap and merge the parent's bitmap into it (the frozen set of chunks
  changed between the parent's point in time and this one); and ``blockdev-backup sync=none``
  from the disk into a fleecing overlay (an empty qcow2 whose backing node is the disk). That job
  copies nothing by itself: its copy-before-write filter saves the old content of a cluster into
  the overlay before the guest overwrites it, so the overlay reads as the disk at the point in
  time while the guest keeps running and writing (it is never paused).
- QEMU exports the overlay read-only over NBD on a unix socket (``nbd-server-start`` +
  ``block-export-add``, with the frozen bitmap as the ``qemu:dirty-bitmap:`` meta context). The
  agent's NBD client (libnbd) asks block status for the dirty and allocated extents and hands the
  store the dirty byte spans of each touched chunk; the store reads only those spans and rebuilds
  the chunk from the parent snapshot's copy (``ChunkStore.write_snapshot``): no intermediate file.
- The parent's bitmap is never disabled or cleared: it keeps recording, so if anything fails the
  next backup from the same parent still sees every change, and only this backup's bitmaps are
  dropped. Once the snapshot is stored, the older bitmaps are removed.

A stopped VM's disk is exported by ``qemu-nbd`` (socket-activated by libnbd, read-only) and read
whole through the same reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from novacron.virt import guestagent
from novacron.virt.backupdisks import NODE, TrackedDisk, tracked_disks
from novacron.virt.base import BackupView, DriverError, Progress, VolumeAttachment
from novacron.virt.nbdread import EXPORT, NbdReader, open_reader
from novacron.virt.qemu import QemuDriver

PREFIX = "nc-"
JOB_POLL_S = 0.1
#: the dirty bitmaps' granularity: QEMU's default for a qcow2 with 64 KiB clusters, and the
#: smallest write a guest's filesystem usually makes dirty at once
GRANULARITY = 64 << 10


@dataclass
class PointInTime:
    """A disk as it was at the backup's point in time, readable chunk by chunk over NBD."""

    size: int
    #: chunk indexes that changed since the parent; None means every chunk (a full backup)
    changed: list[int] | None
    mode: str
    reason: str
    consistency: str
    reader: NbdReader
    #: for an incremental, each changed chunk's dirty (start, end) byte spans
    dirty: dict[int, list[tuple[int, int]]] | None = None
    disk: TrackedDisk = field(default_factory=lambda: TrackedDisk("vda", NODE, "vda", ""))

    @property
    def bytes_read(self) -> int:
        """Bytes read from the disk for this backup (so far)."""
        return self.reader.bytes_read


def bitmap_name(snapshot_id: str) -> str:
    return PREFIX + snapshot_id


def granularity(chunk_size: int) -> int:
    """The dirty bitmaps' granularity for a store of ``chunk_size`` (both powers of two)."""
    return min(GRANULARITY, chunk_size)


async def _run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise DriverError(f"{argv[0]} {argv[1]} failed: {err.decode(errors='replace').strip()}")
    return out.decode()


async def _nodes(driver: QemuDriver, instance_id: str) -> dict[str, dict[str, Any]]:
    nodes = await driver.qmp(instance_id, "query-named-block-nodes", {"flat": True})
    return {str(n.get("node-name")): n for n in nodes or []}


async def bitmaps(driver: QemuDriver, instance_id: str, node: str = NODE) -> list[dict[str, Any]]:
    """The dirty bitmaps of the running VM's disk node, as QEMU reports them."""
    found = (await _nodes(driver, instance_id)).get(node)
    if found is None:
        raise DriverError(f"instance {instance_id} has no disk node {node}")
    return list(found.get("dirty-bitmaps", []))


async def disk_size(driver: QemuDriver, instance_id: str, disk: TrackedDisk | None = None) -> int:
    disk = disk or TrackedDisk("vda", NODE, "vda", str(driver.disk_path(instance_id)))
    if driver.pid(instance_id) is not None:
        found = (await _nodes(driver, instance_id)).get(disk.node)
        if found is None:
            raise DriverError(f"instance {instance_id} has no disk node {disk.node}")
        return int(found["image"]["virtual-size"])
    info = json.loads(await _run("qemu-img", "info", "-U", "--output=json", disk.path))
    return int(info["virtual-size"])


async def _agent_connected(driver: QemuDriver, instance_id: str) -> bool:
    """Whether a guest agent has the channel open: QEMU's chardev frontend is open exactly while
    the guest holds its virtio-serial port (as libvirt reads it), so a guest without an agent
    costs no wait for a ping that nothing will answer."""
    for dev in await driver.qmp(instance_id, "query-chardev"):
        if dev.get("label") == "qga0":
            return bool(dev.get("frontend-open"))
    return False


def _usable(found: dict[str, Any] | None, chunk_size: int, disk: TrackedDisk | None = None) -> str | None:
    """Why a parent's bitmap cannot drive an incremental backup of ``disk``, or None when it can."""
    if found is None:
        return (
            "no change-tracking bitmap of the previous backup on the disk "
            "(QEMU restarted without it, or the disk was replaced)"
        )
    if found.get("inconsistent"):
        return "the change-tracking bitmap is inconsistent (QEMU ended without closing the disk)"
    persistent = disk is None or disk.persistent  # a raw (rbd) disk's bitmap lives as long as QEMU
    if (persistent and not found.get("persistent")) or not found.get("recording", True):
        return "the change-tracking bitmap is not persistent or not recording"
    grain = int(found.get("granularity", 0))
    if grain <= 0 or grain > chunk_size or chunk_size % grain:
        return f"the change-tracking bitmap's granularity {grain} does not divide the chunk size {chunk_size}"
    return None


@dataclass
class _Fleece:
    """The QEMU objects of one disk's point-in-time view, torn down in reverse order."""

    driver: QemuDriver
    instance_id: str
    snapshot_id: str
    disk: TrackedDisk
    #: the disk's place in the backup: names its QEMU objects; the first one owns the NBD server
    index: int
    sock: Path
    made: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return (f"nc-bk{self.index}-" if self.index else "nc-bk-") + self.snapshot_id[:25]

    @property
    def frozen(self) -> str:
        return f"nc-frozen-{self.snapshot_id}"

    async def qmp(self, command: str, args: dict[str, Any] | None = None) -> Any:
        return await self.driver.qmp(self.instance_id, command, args)

    async def add_overlay(self, overlay: Path) -> None:
        """The fleecing overlay (an empty qcow2 backed by the disk) as a block node."""
        await self.qmp(
            "blockdev-add",
            {
                "driver": "qcow2",
                "node-name": self.name,
                "file": {"driver": "file", "filename": str(overlay)},
                "backing": self.disk.node,
            },
        )
        self.made.append("node")

    def actions(self, chunk_size: int, parent_id: str | None) -> list[dict[str, Any]]:
        """This disk's part of the point in time's one transaction: the new bitmap; for an
        incremental (``parent_id``), the parent's changes frozen into a disabled bitmap; and the
        copy-before-write job into the overlay."""
        node = self.disk.node
        actions: list[dict[str, Any]] = [
            {
                "type": "block-dirty-bitmap-add",
                "data": {"node": node, "name": bitmap_name(self.snapshot_id),
                         "persistent": self.disk.persistent, "granularity": granularity(chunk_size)},
            }
        ]  # fmt: skip
        if parent_id is not None:
            actions += [
                {
                    "type": "block-dirty-bitmap-add",
                    "data": {
                        "node": node,
                        "name": self.frozen,
                        "persistent": False,
                        "disabled": True,
                        "granularity": granularity(chunk_size),
                    },
                },
                {
                    "type": "block-dirty-bitmap-merge",
                    "data": {"node": node, "target": self.frozen, "bitmaps": [bitmap_name(parent_id)]},
                },
            ]
        job = {
            "device": node,
            "target": self.name,
            "sync": "none",
            "job-id": self.name,
            "auto-dismiss": False,
        }
        return [*actions, {"type": "blockdev-backup", "data": job}]

    async def export(self, incremental: bool) -> None:
        """Export the overlay read-only over NBD as the disk's name (with the frozen bitmap if
        ``incremental``); the first disk starts the one server all of them share."""
        if self.index == 0:
            await self.qmp("nbd-server-start", {"addr": {"type": "unix", "data": {"path": str(self.sock)}}})
            self.made.append("server")
        export: dict[str, Any] = {
            "type": "nbd",
            "id": self.name,
            "node-name": self.name,
            "name": self.disk.name,
        }
        if incremental:
            export["bitmaps"] = [self.frozen]
        await self.qmp("block-export-add", {**export, "writable": False})
        self.made.append("export")

    async def stale(self) -> bool:
        """A retry of this very backup on the same QEMU: drop what the failed try left; whether
        an export of it was still there."""
        jobs = {j["id"] for j in await self.qmp("query-jobs")}
        exports = {e["id"] for e in await self.qmp("query-block-exports")}
        nodes = await _nodes(self.driver, self.instance_id)
        names = {b["name"] for b in nodes.get(self.disk.node, {}).get("dirty-bitmaps", [])}
        self.made = [
            *(["bitmap:" + bitmap_name(self.snapshot_id)] if bitmap_name(self.snapshot_id) in names else []),
            *(["bitmap:" + self.frozen] if self.frozen in names else []),
            *(["node"] if self.name in nodes else []),
            *(["job"] if self.name in jobs else []),
            *(["export"] if self.name in exports else []),
        ]
        await self.close()
        return self.name in exports

    async def close(self) -> None:
        """Undo what was made, newest first; every step is tried."""
        errors = []
        for what in reversed(self.made):
            try:
                await self._undo(what)
            except DriverError as e:
                errors.append(f"{what}: {e}")
        self.made.clear()
        if errors:
            raise DriverError("cleaning up the backup's point in time failed: " + "; ".join(errors))

    async def _undo(self, what: str) -> None:
        if what == "export":
            # hard: a client that did not say goodbye (a crashed reader) must not keep it
            await self.qmp("block-export-del", {"id": self.name, "mode": "hard"})
            await self._until(lambda: self._gone("query-block-exports", "id"))
        elif what == "server":
            await self.qmp("nbd-server-stop")
        elif what == "job":
            with contextlib.suppress(DriverError):  # already concluded (failed)
                await self.qmp("job-cancel", {"id": self.name})
            await self._until(self._job_concluded)
            await self.qmp("job-dismiss", {"id": self.name})
        elif what == "node":
            await self.qmp("blockdev-del", {"node-name": self.name})
        elif what.startswith("bitmap:"):
            await self.qmp(
                "block-dirty-bitmap-remove", {"node": self.disk.node, "name": what.partition(":")[2]}
            )

    async def _gone(self, query: str, key: str) -> bool:
        return all(item[key] != self.name for item in await self.qmp(query))

    async def _job_concluded(self) -> bool:
        jobs = {j["id"]: j for j in await self.qmp("query-jobs")}
        return self.name not in jobs or jobs[self.name]["status"] == "concluded"

    async def _until(self, done: Callable[[], Awaitable[bool]], timeout_s: float = 60) -> None:
        async with asyncio.timeout(timeout_s):
            while not await done():
                await asyncio.sleep(JOB_POLL_S)

    async def check_job(self) -> None:
        """The copy-before-write job must still run: if it failed, the view is no longer the point in time."""
        jobs = {j["id"]: j for j in await self.qmp("query-jobs")}
        job = jobs.get(self.name)
        if job is None or job["status"] not in ("running", "ready"):
            why = (job or {}).get("error", "it is gone")
            raise DriverError(f"the point-in-time (copy-before-write) job of {self.disk.name} stopped: {why}")


async def _close_all(fleeces: list[_Fleece]) -> None:
    """Tear every disk's view down, the last disk first (the first one's NBD server goes last)."""
    errors = []
    for f in reversed(fleeces):
        try:
            await f.close()
        except DriverError as e:
            errors.append(str(e))
    if errors:
        raise DriverError("; ".join(errors))


async def _plan(
    fleeces: list[_Fleece], chunk_size: int, parent_id: str | None, force_full: bool
) -> dict[str, str]:
    """Each disk's reason for a full read ("" for an incremental), its own bitmap decides."""
    nodes = await _nodes(fleeces[0].driver, fleeces[0].instance_id)
    reasons = {}
    for f in fleeces:
        if force_full:
            reasons[f.disk.name] = "a full backup was asked for"
        elif parent_id is None:
            reasons[f.disk.name] = "first backup of this disk"
        else:
            present = {b["name"]: b for b in nodes.get(f.disk.node, {}).get("dirty-bitmaps", [])}
            reasons[f.disk.name] = _usable(present.get(bitmap_name(parent_id)), chunk_size, f.disk) or ""
    return reasons


async def _take(fleeces: list[_Fleece], actions: list[dict[str, Any]]) -> bool:
    """The one transaction of every disk, inside the guest's filesystem freeze when it has an
    agent; whether it was application-consistent."""
    driver, instance_id = fleeces[0].driver, fleeces[0].instance_id
    frozen_fs = await _agent_connected(driver, instance_id) and await guestagent.freeze(
        driver.qga_socket(instance_id)
    )
    try:
        await driver.qmp(instance_id, "transaction", {"actions": actions})
    finally:
        if frozen_fs:
            await guestagent.thaw(driver.qga_socket(instance_id))
    return frozen_fs


async def _open_views(
    fleeces: list[_Fleece],
    chunk_size: int,
    reasons: dict[str, str],
    frozen_fs: bool,
    views: list[PointInTime],
) -> None:
    """Connect to each disk's export; its view (the reader, and the dirty spans of an incremental)."""
    for f in fleeces:
        incremental = not reasons[f.disk.name]
        size = await disk_size(f.driver, f.instance_id, f.disk)
        reader, dirty = await asyncio.to_thread(
            open_reader, size, chunk_size, f.frozen if incremental else None, f.sock, None, f.disk.name
        )
        views.append(
            PointInTime(
                size=size,
                changed=None if dirty is None else sorted(dirty),
                dirty=dirty,
                mode="incremental" if incremental else "full",
                reason=reasons[f.disk.name] or "changed chunks from the dirty bitmap of the previous backup",
                consistency="application" if frozen_fs else "crash",
                reader=reader,
                disk=f.disk,
            )
        )


@contextlib.asynccontextmanager
async def point_in_time(  # noqa: PLR0913 (the backup request's fields, as agentops passes them)
    driver: QemuDriver,
    instance_id: str,
    workdir: Path,
    chunk_size: int,
    snapshot_id: str,
    parent_id: str | None,
    report: Progress | None = None,
    force_full: bool = False,
    disks: list[TrackedDisk] | None = None,
) -> AsyncIterator[list[PointInTime]]:
    """The running VM's disks as they are now (one transaction: mutually consistent), exported
    by QEMU over NBD while the body reads them.

    On a clean exit the new bitmaps stay (``commit`` makes them the only ones once the snapshot
    is stored); on an error they are dropped and the parent's bitmaps, which never stopped
    recording, still cover every change.
    """
    disks = disks or [TrackedDisk("vda", NODE, "vda", str(driver.disk_path(instance_id)))]
    # the socket path must fit a sockaddr_un: a short private directory, not the instance's
    private = Path(tempfile.mkdtemp(prefix="nc-fleece-"))
    sock = private / "nbd.sock"
    fleeces = [_Fleece(driver, instance_id, snapshot_id, d, i, sock) for i, d in enumerate(disks)]
    workdir.mkdir(parents=True, exist_ok=True)
    new = bitmap_name(snapshot_id)
    views: list[PointInTime] = []
    try:
        exported = [await f.stale() for f in fleeces]
        if not any(exported):  # an NBD server with nothing exported is a crashed try's: QEMU runs one at most
            with contextlib.suppress(DriverError):
                await driver.qmp(instance_id, "nbd-server-stop")
        reasons = await _plan(fleeces, chunk_size, parent_id, force_full)
        actions: list[dict[str, Any]] = []
        for f in fleeces:
            size = await disk_size(driver, instance_id, f.disk)
            overlay = workdir / f"fleece-{f.index}.qcow2"
            await _run("qemu-img", "create", "-q", "-f", "qcow2", str(overlay), str(size))
            await f.add_overlay(overlay)
            actions += f.actions(chunk_size, None if reasons[f.disk.name] else parent_id)
        frozen_fs = await _take(fleeces, actions)
        for f in fleeces:
            f.made += ["bitmap:" + new, "job"]
            if not reasons[f.disk.name]:
                f.made.insert(-1, "bitmap:" + f.frozen)
            await f.export(not reasons[f.disk.name])
        if report is not None:
            await report({"phase": "point-in-time", "fraction": 0.0})
        await _open_views(fleeces, chunk_size, reasons, frozen_fs, views)
        yield views
        for f in fleeces:
            await f.check_job()
        for f in fleeces:
            f.made.remove("bitmap:" + new)  # read whole: it becomes the next backup's parent bitmap
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one to report
            await _close_readers(views)
        with contextlib.suppress(Exception):
            await _close_all(fleeces)
        raise
    else:
        await _close_readers(views)
        await _close_all(fleeces)
    finally:
        shutil.rmtree(private, ignore_errors=True)
        for f in fleeces:
            (workdir / f"fleece-{f.index}.qcow2").unlink(missing_ok=True)


async def _close_readers(views: list[PointInTime]) -> None:
    for view in views:
        await asyncio.to_thread(view.reader.close)


@contextlib.asynccontextmanager
async def offline_view(
    driver: QemuDriver, instance_id: str, disks: list[TrackedDisk] | None = None
) -> AsyncIterator[list[PointInTime]]:
    """A stopped VM: its disk files are the point in time; ``qemu-nbd`` exports each read-only, whole."""
    disks = disks or [TrackedDisk("vda", NODE, "vda", str(driver.disk_path(instance_id)))]
    views: list[PointInTime] = []
    try:
        for disk in disks:
            if disk.fmt == "qcow2" and not Path(disk.path).exists():  # an rbd image: every host's
                raise DriverError(f"instance {instance_id} has no disk {disk.name} on this host to read")
            size = await disk_size(driver, instance_id, disk)
            argv = [
                "qemu-nbd",
                "--read-only",
                f"--format={disk.fmt}",
                f"--export-name={EXPORT}",
                "--shared=1",
                disk.path,
            ]
            reader, _ = await asyncio.to_thread(open_reader, size, 1, None, None, argv)
            views.append(
                PointInTime(
                    size=size,
                    changed=None,
                    mode="full",
                    reason="the VM is stopped: its disk is read whole",
                    consistency="application",  # a cleanly stopped guest has nothing in flight
                    reader=reader,
                    disk=disk,
                )
            )
        yield views
    finally:
        await _close_readers(views)


@contextlib.asynccontextmanager
async def backup_view(
    driver: QemuDriver, instance_id: str, view: BackupView, report: Progress | None
) -> AsyncIterator[list[PointInTime]]:
    """A running VM's point in time (``point_in_time``), a stopped one's disks whole (``offline_view``)."""
    disks = tracked_disks(driver, instance_id, view.volumes)
    if driver.pid(instance_id) is None:
        async with offline_view(driver, instance_id, disks) as pits:
            yield pits
        return
    workdir = driver.instance_dir(instance_id) / f"backup-{view.snapshot_id}"
    try:
        async with point_in_time(
            driver,
            instance_id,
            workdir,
            view.chunk_size,
            view.snapshot_id,
            view.parent_id,
            report,
            view.full,
            disks,
        ) as pits:
            yield pits
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)


async def commit(
    driver: QemuDriver,
    instance_id: str,
    snapshot_id: str,
    chunk_size: int,
    volumes: tuple[VolumeAttachment, ...] = (),
) -> None:
    """The snapshot is stored: its bitmap is now the only one of each disk, tracking changes from
    its point in time."""
    keep = bitmap_name(snapshot_id)
    disks = tracked_disks(driver, instance_id, volumes)
    if driver.pid(instance_id) is not None:
        nodes = await _nodes(driver, instance_id)
        for disk in disks:
            for b in nodes.get(disk.node, {}).get("dirty-bitmaps", []):
                if b["name"].startswith(PREFIX) and b["name"] != keep:
                    await driver.qmp(
                        instance_id, "block-dirty-bitmap-remove", {"node": disk.node, "name": b["name"]}
                    )
        return
    for disk in disks:  # stopped: the bitmaps live in the qcow2 files themselves
        if disk.fmt == "qcow2":
            await commit_file(disk.path, keep, chunk_size)


async def commit_file(path: str, keep: str, chunk_size: int) -> None:
    """A qcow2 file (of a stopped VM, or a detached volume) keeps bitmap ``keep`` only."""
    info = json.loads(await _run("qemu-img", "info", "--output=json", path))
    names = [b["name"] for b in info.get("format-specific", {}).get("data", {}).get("bitmaps", [])]
    for name in names:
        if name.startswith(PREFIX) and name != keep:
            await _run("qemu-img", "bitmap", "--remove", path, name)
    if keep not in names:
        await _run("qemu-img", "bitmap", "--add", "-g", str(granularity(chunk_size)), path, keep)


async def discard(
    driver: QemuDriver, instance_id: str, snapshot_id: str, volumes: tuple[VolumeAttachment, ...] = ()
) -> None:
    """The backup failed after its view was closed: drop its bitmaps; the parent's still record
    every change since."""
    if driver.pid(instance_id) is None:
        return
    nodes = await _nodes(driver, instance_id)
    for disk in tracked_disks(driver, instance_id, volumes):
        names = {b["name"] for b in nodes.get(disk.node, {}).get("dirty-bitmaps", [])}
        if bitmap_name(snapshot_id) in names:
            await driver.qmp(
                instance_id,
                "block-dirty-bitmap-remove",
                {"node": disk.node, "name": bitmap_name(snapshot_id)},
            )

"""Live migration between two QEMU drivers (two hosts, or two state dirs on one host).

Two storage modes:

- ``local`` (shared-nothing, as libvirt does it): the destination starts with ``-incoming
  defer`` and exports its (new, empty) overlay over NBD; the source mirrors its overlay into that
  export (``drive-mirror sync=top``: the base image must exist at the same path on both hosts),
  migrates RAM once the mirror is in sync, completes the mirror while paused before the
  switchover (QEMU's ``pause-before-switchover``), then sends the device state; the destination
  runs the guest by itself as it loads it (no ``-S``: no control-plane round trip in the guest's
  pause) and stops its NBD server afterwards.
- ``shared``: both hosts reach the VM's disk on the same shared storage (same storage id, see
  ``QemuDriver.shared_dir``). Nothing is mirrored: the destination opens the very same overlay,
  and QEMU's migration itself hands the image over (the source inactivates it when it stops, the
  destination activates it when the incoming state is loaded).

Steps, each a driver method so a durable task can run them one by one:
  dest.migrate_receive(spec, storage)      -> MigrationTarget (uris for RAM and, if local, disk)
  src.migrate_send(id, target, settings)   -> MigrationStats (source ends paused, "postmigrate")
  dest.migrate_finish(id, storage)         -> destination running
  src.destroy(id) / src.forget(id)         -> source cleaned up (forget keeps a shared disk)

``send`` reports progress about once a second through a callback, which answers whether the
user asked to cancel: then the migration and the mirror are cancelled and the source runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from novacron.virt import images, resumewatch, snapclone, volmove
from novacron.virt.base import DriverError, InstanceSpec, Progress

if TYPE_CHECKING:
    from novacron.virt.qemu import QemuDriver

DISK_NODE = "vda-disk"
MIRROR_JOB = "mirror-vda"
#: no ``-S``: the destination runs the guest by itself once the state is in (``virt/resumewatch.py``)
INCOMING_ARGS = ["-incoming", "defer"]
STORAGE_MODES = ("auto", "local", "shared")
#: bytes/s when no bandwidth is asked for (QEMU's own default, 128 MiB/s, would slow a LAN)
UNLIMITED = 1 << 30
PROGRESS_EVERY_S = 1.0


class MigrationCancelled(DriverError):
    """The user cancelled the migration; the source still runs the guest."""


@dataclass(frozen=True)
class MigrationTarget:
    host: str
    ram_port: int
    #: 0 in shared mode: no disk export
    nbd_port: int = 0
    storage: str = "local"
    #: volumes copied to the destination (``virt.volmove``): volume id -> its path there
    volumes: dict[str, str] = field(default_factory=dict)
    #: the VM has a root disk of its own (``vda``); False: it boots from a volume, which is
    #: mirrored like any copied volume (or reached), never as ``vda``
    root: bool = True

    @property
    def ram_uri(self) -> str:
        return f"tcp:{self.host}:{self.ram_port}"

    @property
    def nbd_base(self) -> str:
        return f"nbd://{self.host}:{self.nbd_port}"

    @property
    def nbd_uri(self) -> str:
        return f"{self.nbd_base}/{DISK_NODE}"

    @property
    def mirrors_root(self) -> bool:
        """The source mirrors a root disk ``vda`` (local mode, and the VM has one)."""
        return self.storage == "local" and self.root

    def mirror_jobs(self) -> list[str]:
        """The source's mirror jobs: the root disk's (local mode), then one per copied volume
        (a boot volume among them: a boot-from-volume VM has no ``vda``)."""
        return ([MIRROR_JOB] if self.mirrors_root else []) + volmove.mirror_jobs(self.volumes)


@dataclass(frozen=True)
class MigrationSettings:
    #: QEMU ``downtime-limit``: the longest pause allowed for the final copy (None: QEMU's 300 ms)
    max_downtime_ms: int | None = None
    #: QEMU ``max-bandwidth`` and the disk mirror's speed, in bytes/s (None: unlimited)
    max_bandwidth_bps: int | None = None
    #: QEMU's ``auto-converge`` capability: throttle the vCPUs when RAM is dirtied too fast
    auto_converge: bool = False


@dataclass(frozen=True)
class MigrationStats:
    total_time_ms: int
    downtime_ms: int
    transferred_bytes: int
    storage: str
    #: the parameters QEMU ran the migration with (query-migrate-parameters)
    settings: dict[str, Any]
    #: wall-clock time (s since the epoch) the source stopped the guest: with the destination's
    #: ``finish`` time it gives the pause the guest really saw (QEMU's downtime ends at the source)
    stopped_at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def storage_of(drv: QemuDriver, instance_id: str, volumes: tuple[str, ...] = ()) -> dict[str, Any]:
    """Source: where the VM's disk and volumes live, for the destination to tell what it reaches."""
    disk = drv.disk_path(instance_id)
    backing = (
        (await asyncio.to_thread(images.qemu_img_info, disk)).get("backing-filename")
        if disk.exists()
        else None
    )
    return {
        "storage_id": drv.storage_id,
        "disk": str(disk),
        "volumes": await volmove.attached(drv, instance_id, volumes),
        # a linked clone of a snapshot reads a base a copy of its overlay would not find elsewhere
        "snapshot_base": bool(backing and snapclone.is_base(backing)),
    }


def choose_storage(drv: QemuDriver, instance_id: str, requested: str, source: dict[str, Any]) -> str:
    """Destination: ``shared`` when it sees the source's disk on the same shared storage."""
    if requested not in STORAGE_MODES:
        raise DriverError(f"unknown storage mode {requested!r}")
    shared = (
        drv.shared_dir is not None
        and bool(source.get("storage_id"))
        and source.get("storage_id") == drv.storage_id
        and str(drv.disk_path(instance_id)) == source.get("disk")
        and drv.disk_path(instance_id).exists()
    )
    if requested == "shared" and not shared:
        raise DriverError("the destination does not reach the VM's disk: the hosts share no storage")
    if requested == "local" and shared:
        # a mirror (or copy) onto the very file it reads from would destroy the disk
        raise DriverError("the two hosts share the VM's disk: migrate it with storage 'shared'")
    return "shared" if shared else "local"


def incoming_args(drv: QemuDriver, instance_id: str) -> list[str]:
    """What the destination's command line adds for the move (dropped from launch.json after it)."""
    return INCOMING_ARGS + resumewatch.monitor_args(drv, instance_id)


async def receive(
    drv: QemuDriver,
    spec: InstanceSpec,
    host: str = "127.0.0.1",
    storage: str = "local",
    copy_volumes: dict[str, int] | None = None,
) -> MigrationTarget:
    """Destination: start QEMU waiting for the incoming state (disks to copy exported); it runs
    the guest by itself once the state is in, and ``resumewatch`` keeps when.

    ``copy_volumes`` (volume id -> virtual size) are the volumes this host does not reach: it makes
    blank ones of its own, which the source mirrors into.
    """
    if drv.pid(spec.id) is not None:
        raise DriverError(f"instance {spec.id} already runs on the destination")
    spec, moved = await volmove.prepare(drv, spec, copy_volumes or {})
    if storage == "shared":
        await drv.write_seed(spec)  # the disk is shared and in use: leave it alone
    else:
        await drv.prepare(spec)
    await drv._start(spec.id, drv._argv(spec) + incoming_args(drv, spec.id))
    resumewatch.watch(drv, spec.id)
    root = not any(v.boot for v in spec.volumes)  # a boot volume is the root disk: no vda-disk node
    target = MigrationTarget(host, _free_port(host), 0, storage, moved, root)
    if target.mirrors_root or moved:
        target = MigrationTarget(host, target.ram_port, _free_port(host), storage, moved, root)
        await drv.qmp(
            spec.id,
            "nbd-server-start",
            {"addr": {"type": "inet", "data": {"host": host, "port": str(target.nbd_port)}}},
        )
    if target.mirrors_root:
        await drv.qmp(
            spec.id,
            "block-export-add",
            {"type": "nbd", "id": DISK_NODE, "node-name": DISK_NODE, "writable": True},
        )
    await volmove.export(drv, spec.id, moved)
    await drv.qmp(spec.id, "migrate-incoming", {"uri": target.ram_uri})
    return target


class _Reporter:
    """Sends the transfer's progress at most once a second; raises when the user cancelled."""

    def __init__(
        self,
        drv: QemuDriver,
        instance_id: str,
        report: Progress | None,
        jobs: list[str],
        settings: dict[str, Any],
    ) -> None:
        self.drv, self.instance_id, self.report, self.jobs = drv, instance_id, report, jobs
        self.mirrored = bool(jobs)
        #: what QEMU runs the migration with, shown alongside the progress
        self.settings = settings
        self.next = 0.0
        self.fraction = 0.0

    async def tick(self, status: str, migrate_info: dict[str, Any] | None) -> None:
        if self.report is None or time.monotonic() < self.next:
            return
        self.next = time.monotonic() + PROGRESS_EVERY_S
        detail: dict[str, Any] = {"status": status, "settings": self.settings}
        done = total = 0
        if self.mirrored:
            jobs: list[dict[str, Any]] = await self.drv.qmp(self.instance_id, "query-block-jobs")
            mine = [j for j in jobs if j.get("device") in self.jobs]
            if mine:  # the root disk and the copied volumes, summed
                done = sum(int(j.get("offset", 0)) for j in mine)
                total = sum(int(j.get("len", 0)) for j in mine)
                detail["disk"] = {"offset": done, "len": total}
        ram = (migrate_info or {}).get("ram")
        if ram:
            ram_total = int(ram.get("total", 0))
            detail["ram"] = {
                "transferred": int(ram.get("transferred", 0)),
                "remaining": int(ram.get("remaining", 0)),
                "total": ram_total,
            }
            done += ram_total - detail["ram"]["remaining"]
            total += ram_total
        elif self.mirrored:
            # RAM not started yet: count it as all remaining, so the disk alone never reads 100 %
            total += total
        if total:
            # dirty pages make "remaining" grow back: progress shown never goes backwards
            self.fraction = max(self.fraction, min(done / total, 0.99))
        detail["fraction"] = round(self.fraction, 4)
        if await self.report(detail):
            raise MigrationCancelled(f"migration of {self.instance_id} cancelled on request")


async def _wait_mirror_ready(drv: QemuDriver, instance_id: str, deadline: float, reporter: _Reporter) -> None:
    while True:
        jobs = {str(j.get("device")): j for j in await drv.qmp(instance_id, "query-block-jobs")}
        if missing := [name for name in reporter.jobs if name not in jobs]:
            raise DriverError(f"disk mirror {missing[0]} of {instance_id} disappeared before it was in sync")
        if all(jobs[name].get("ready") for name in reporter.jobs):
            return
        if time.monotonic() > deadline:
            raise DriverError(f"disk mirror of {instance_id} not in sync in time")
        await reporter.tick("mirroring", None)
        await asyncio.sleep(0.05)


async def _configure(
    drv: QemuDriver, instance_id: str, settings: MigrationSettings, mirrored: bool
) -> dict[str, Any]:
    # with mirrors, QEMU stops before the device state goes (``pre-switchover``) for them to finish
    # here, while paused: the destination, which runs by itself, then starts on complete disks
    capabilities = [
        {"capability": "auto-converge", "state": settings.auto_converge},
        {"capability": "pause-before-switchover", "state": mirrored},
    ]
    await drv.qmp(instance_id, "migrate-set-capabilities", {"capabilities": capabilities})
    params: dict[str, Any] = {"max-bandwidth": settings.max_bandwidth_bps or UNLIMITED}
    if settings.max_downtime_ms is not None:
        params["downtime-limit"] = settings.max_downtime_ms
    await drv.qmp(instance_id, "migrate-set-parameters", params)
    applied: dict[str, Any] = await drv.qmp(instance_id, "query-migrate-parameters")
    caps: list[dict[str, Any]] = await drv.qmp(instance_id, "query-migrate-capabilities")
    return {
        "downtime_limit_ms": applied.get("downtime-limit"),
        "max_bandwidth_bps": applied.get("max-bandwidth"),
        "auto_converge": any(c["capability"] == "auto-converge" and c["state"] for c in caps),
    }


async def _cancel_ram(drv: QemuDriver, instance_id: str) -> None:
    """Stop an outgoing migration and wait until QEMU says it stopped (the guest runs on)."""
    await drv.qmp(instance_id, "migrate_cancel")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = (await drv.qmp(instance_id, "query-migrate")).get("status")
        if status not in ("active", "cancelling", "device", "pre-switchover", "wait-unplug"):
            return
        await asyncio.sleep(0.05)


async def send(
    drv: QemuDriver,
    instance_id: str,
    target: MigrationTarget,
    settings: MigrationSettings | None = None,
    report: Progress | None = None,
    timeout_s: float = 3600.0,
) -> MigrationStats:
    """Source: mirror the disk (local mode), migrate RAM and state; the source ends paused."""
    settings = settings or MigrationSettings()
    deadline = time.monotonic() + timeout_s
    jobs = target.mirror_jobs()
    mirrored = bool(jobs)
    applied = await _configure(drv, instance_id, settings, mirrored)
    reporter = _Reporter(drv, instance_id, report, jobs, applied)
    if target.mirrors_root:
        await _start_mirror(drv, instance_id, target, settings)
    await volmove.start_mirrors(drv, instance_id, target.nbd_base, target.volumes, settings.max_bandwidth_bps)
    migrating = False
    try:
        if mirrored:
            await _wait_mirror_ready(drv, instance_id, deadline, reporter)
        asked_at = time.time()  # QEMU's clock of the migration starts a little later
        await drv.qmp(instance_id, "migrate", {"uri": target.ram_uri})
        migrating = True
        info = await _wait_migrated(drv, instance_id, jobs, deadline, timeout_s, reporter)
    except BaseException:
        with contextlib.suppress(DriverError):
            if migrating:
                await _cancel_ram(drv, instance_id)
            for job in jobs:
                with contextlib.suppress(DriverError):
                    await drv.qmp(instance_id, "block-job-cancel", {"device": job, "force": True})
        raise
    ram = info.get("ram", {})
    return MigrationStats(
        total_time_ms=int(info.get("total-time", 0)),
        downtime_ms=int(info.get("downtime", 0)),
        transferred_bytes=int(ram.get("transferred", 0)),
        storage=target.storage,
        settings=applied,
        # QEMU's own times, from the start: the earliest the guest can have stopped (a poll's
        # moment would come later, and the pause read against the destination's clock shorter)
        stopped_at=asked_at + (int(info.get("total-time", 0)) - int(info.get("downtime", 0))) / 1000,
    )


async def _start_mirror(
    drv: QemuDriver, instance_id: str, target: MigrationTarget, settings: MigrationSettings
) -> None:
    mirror: dict[str, Any] = {
        "job-id": MIRROR_JOB,
        "device": "vda",
        "target": target.nbd_uri,
        "format": "raw",
        "sync": "top",
        "mode": "existing",
    }
    if settings.max_bandwidth_bps:
        mirror["speed"] = settings.max_bandwidth_bps
    await drv.qmp(instance_id, "drive-mirror", mirror)


async def _wait_migrated(  # noqa: PLR0913 (the migration, its mirrors and its bounds)
    drv: QemuDriver, instance_id: str, jobs: list[str], deadline: float, timeout_s: float, reporter: _Reporter
) -> dict[str, Any]:
    """Poll ``query-migrate`` until it completed: its last answer.
    Paused before the switchover (mirrors only), the mirrors complete and the migration goes on."""
    while True:
        info: dict[str, Any] = await drv.qmp(instance_id, "query-migrate")
        status = str(info.get("status"))
        if status == "completed" and info.get("total-time"):
            return info
        if status == "pre-switchover":
            await _complete_mirror(drv, instance_id, jobs, deadline)
            await drv.qmp(instance_id, "migrate-continue", {"state": "pre-switchover"})
            continue
        if status in ("failed", "cancelled"):
            raise DriverError(f"migration of {instance_id} {status}: {info.get('error-desc', '')}")
        if time.monotonic() > deadline:
            raise DriverError(f"migration of {instance_id} did not finish in {timeout_s:.0f} s")
        await reporter.tick(status, info)
        await asyncio.sleep(0.01)  # each poll of the last phase is the guest's pause


async def _complete_mirror(drv: QemuDriver, instance_id: str, jobs: list[str], deadline: float) -> None:
    # the source is paused now: finish the mirrors (cancel after READY = complete without pivot)
    for job in jobs:
        await drv.qmp(instance_id, "block-job-cancel", {"device": job})
    while await drv.qmp(instance_id, "query-block-jobs"):
        if time.monotonic() > deadline:
            raise DriverError(f"disk mirror of {instance_id} did not complete")
        await asyncio.sleep(0.005)


async def finish(drv: QemuDriver, instance_id: str, storage: str = "local", timeout_s: float = 60.0) -> float:
    """Destination: once the incoming state is loaded (QEMU then runs the guest by itself), stop
    the NBD export. The source completed its mirrors before the switchover, so the export is idle.
    Returns the wall-clock time the guest ran again (QEMU's ``RESUME``, when watched here).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        status = (await drv.qmp(instance_id, "query-status")).get("status")
        if status in ("paused", "prelaunch", "running"):
            break
        if time.monotonic() > deadline:
            raise DriverError(f"incoming migration of {instance_id} did not complete (status {status})")
        await asyncio.sleep(0.02)
    if status != "running":  # a guest paused at the source is paused here too: it runs now
        resumewatch.stop(drv, instance_id)
        await drv.qmp(instance_id, "cont")
        resumed_at = time.time()
    else:
        resumed_at = await resumewatch.resumed_at(drv, instance_id) or time.time()
    # the NBD server (root disk and copied volumes) goes with all its exports; none in shared mode
    # without copies, and gone already when this step runs again
    with contextlib.suppress(DriverError):
        await drv.qmp(instance_id, "nbd-server-stop")
    # a later reboot restarts QEMU from launch.json: drop the incoming-migration arguments
    launch = drv.instance_dir(instance_id) / "launch.json"
    data = json.loads(launch.read_text())
    argv, incoming = data["argv"], incoming_args(drv, instance_id)
    if argv[-len(incoming) :] == incoming:
        data["argv"] = argv[: -len(incoming)]
        launch.write_text(json.dumps(data, indent=1))
    return resumed_at

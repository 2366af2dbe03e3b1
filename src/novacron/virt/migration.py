"""Live migration between two QEMU drivers (two hosts, or two state dirs on one host).

Two storage modes:

- ``local`` (shared-nothing, as libvirt does it): the destination starts paused with
  ``-incoming defer`` and exports its (new, empty) overlay over NBD; the source mirrors its
  overlay into that export (``drive-mirror sync=top``: the base image must exist at the same
  path on both hosts), migrates RAM and device state once the mirror is in sync, then completes
  the mirror while paused; the destination stops its NBD server and continues.
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
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from novacron.virt.base import DriverError, InstanceSpec, Progress

if TYPE_CHECKING:
    from novacron.virt.qemu import QemuDriver

DISK_NODE = "vda-disk"
MIRROR_JOB = "mirror-vda"
INCOMING_ARGS = ["-incoming", "defer", "-S"]
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

    @property
    def ram_uri(self) -> str:
        return f"tcp:{self.host}:{self.ram_port}"

    @property
    def nbd_uri(self) -> str:
        return f"nbd://{self.host}:{self.nbd_port}/{DISK_NODE}"


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


def storage_of(drv: QemuDriver, instance_id: str) -> dict[str, str]:
    """Source: where the VM's disk lives, for the destination to tell whether it reaches it."""
    return {"storage_id": drv.storage_id, "disk": str(drv.disk_path(instance_id))}


def choose_storage(drv: QemuDriver, instance_id: str, requested: str, source: dict[str, str]) -> str:
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


async def receive(
    drv: QemuDriver, spec: InstanceSpec, host: str = "127.0.0.1", storage: str = "local"
) -> MigrationTarget:
    """Destination: start QEMU paused, waiting for the incoming state (disk exported if local)."""
    if drv.pid(spec.id) is not None:
        raise DriverError(f"instance {spec.id} already runs on the destination")
    if storage == "shared":
        await drv.write_seed(spec)  # the disk is shared and in use: leave it alone
    else:
        await drv.prepare(spec)
    await drv._start(spec.id, drv._argv(spec) + INCOMING_ARGS)
    target = MigrationTarget(host, _free_port(host), 0, storage)
    if storage == "local":
        target = MigrationTarget(host, target.ram_port, _free_port(host), storage)
        await drv.qmp(
            spec.id,
            "nbd-server-start",
            {"addr": {"type": "inet", "data": {"host": host, "port": str(target.nbd_port)}}},
        )
        await drv.qmp(
            spec.id,
            "block-export-add",
            {"type": "nbd", "id": DISK_NODE, "node-name": DISK_NODE, "writable": True},
        )
    await drv.qmp(spec.id, "migrate-incoming", {"uri": target.ram_uri})
    return target


class _Reporter:
    """Sends the transfer's progress at most once a second; raises when the user cancelled."""

    def __init__(
        self,
        drv: QemuDriver,
        instance_id: str,
        report: Progress | None,
        mirrored: bool,
        settings: dict[str, Any],
    ) -> None:
        self.drv, self.instance_id, self.report, self.mirrored = drv, instance_id, report, mirrored
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
            job = next((j for j in jobs if j.get("device") == MIRROR_JOB), None)
            if job is not None:
                detail["disk"] = {"offset": int(job.get("offset", 0)), "len": int(job.get("len", 0))}
                done, total = detail["disk"]["offset"], detail["disk"]["len"]
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
        jobs: list[dict[str, Any]] = await drv.qmp(instance_id, "query-block-jobs")
        job = next((j for j in jobs if j.get("device") == MIRROR_JOB), None)
        if job is None:
            raise DriverError(f"disk mirror of {instance_id} disappeared before it was in sync")
        if job.get("ready"):
            return
        if time.monotonic() > deadline:
            raise DriverError(f"disk mirror of {instance_id} not in sync in time")
        await reporter.tick("mirroring", None)
        await asyncio.sleep(0.05)


async def _configure(drv: QemuDriver, instance_id: str, settings: MigrationSettings) -> dict[str, Any]:
    await drv.qmp(
        instance_id,
        "migrate-set-capabilities",
        {"capabilities": [{"capability": "auto-converge", "state": settings.auto_converge}]},
    )
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
    mirrored = target.storage == "local"
    applied = await _configure(drv, instance_id, settings)
    reporter = _Reporter(drv, instance_id, report, mirrored, applied)
    if mirrored:
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
    migrating = False
    try:
        if mirrored:
            await _wait_mirror_ready(drv, instance_id, deadline, reporter)
        await drv.qmp(instance_id, "migrate", {"uri": target.ram_uri})
        migrating = True
        while True:
            info: dict[str, Any] = await drv.qmp(instance_id, "query-migrate")
            status = str(info.get("status"))
            if status == "completed" and info.get("total-time"):
                stopped_at = time.time() - int(info.get("downtime", 0)) / 1000
                break
            if status in ("failed", "cancelled"):
                raise DriverError(f"migration of {instance_id} {status}: {info.get('error-desc', '')}")
            if time.monotonic() > deadline:
                raise DriverError(f"migration of {instance_id} did not finish in {timeout_s:.0f} s")
            await reporter.tick(status, info)
            await asyncio.sleep(0.02)
    except BaseException:
        with contextlib.suppress(DriverError):
            if migrating:
                await _cancel_ram(drv, instance_id)
            if mirrored:
                await drv.qmp(instance_id, "block-job-cancel", {"device": MIRROR_JOB, "force": True})
        raise
    if mirrored:
        # the source is paused now: finish the mirror (cancel after READY = complete without pivot)
        await drv.qmp(instance_id, "block-job-cancel", {"device": MIRROR_JOB})
        while await drv.qmp(instance_id, "query-block-jobs"):
            if time.monotonic() > deadline:
                raise DriverError(f"disk mirror of {instance_id} did not complete")
            await asyncio.sleep(0.02)
    ram = info.get("ram", {})
    return MigrationStats(
        total_time_ms=int(info.get("total-time", 0)),
        downtime_ms=int(info.get("downtime", 0)),
        transferred_bytes=int(ram.get("transferred", 0)),
        storage=target.storage,
        settings=applied,
        stopped_at=stopped_at,
    )


async def finish(drv: QemuDriver, instance_id: str, storage: str = "local", timeout_s: float = 60.0) -> float:
    """Destination: once the incoming state is loaded, run the guest, then stop the NBD export.

    The source completed its mirror before this is called, so the export is idle: the guest runs
    first, since every QMP round trip before ``cont`` adds to its pause. Returns the wall-clock
    time the guest runs again.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        status = (await drv.qmp(instance_id, "query-status")).get("status")
        if status in ("paused", "prelaunch", "running"):
            break
        if time.monotonic() > deadline:
            raise DriverError(f"incoming migration of {instance_id} did not complete (status {status})")
        await asyncio.sleep(0.02)
    if status != "running":
        await drv.qmp(instance_id, "cont")
    resumed_at = time.time()
    if storage == "local":
        with contextlib.suppress(DriverError):  # already gone when this step runs again
            await drv.qmp(instance_id, "block-export-del", {"id": DISK_NODE})
            await drv.qmp(instance_id, "nbd-server-stop")
    # a later reboot restarts QEMU from launch.json: drop the incoming-migration arguments
    launch = drv.instance_dir(instance_id) / "launch.json"
    data = json.loads(launch.read_text())
    argv = data["argv"]
    if argv[-len(INCOMING_ARGS) :] == INCOMING_ARGS:
        data["argv"] = argv[: -len(INCOMING_ARGS)]
        launch.write_text(json.dumps(data, indent=1))
    return resumed_at

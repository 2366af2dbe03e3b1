"""Live migration between two QEMU drivers (two hosts, or two state dirs on one host).

Shared-nothing, as libvirt does it: the destination starts paused with ``-incoming defer``
and exports its (new, empty) overlay over NBD; the source mirrors its overlay into that
export (``drive-mirror sync=top``: the base image must exist at the same path on both
hosts), migrates RAM and device state once the mirror is in sync, then completes the
mirror while paused; the destination stops its NBD server and continues.

Steps, each a driver method so a durable task can run them one by one:
  dest.migrate_receive(spec)              -> MigrationTarget (uris for RAM and disk)
  src.migrate_send(id, target)            -> MigrationStats (source ends paused, "postmigrate")
  dest.migrate_finish(id)                 -> destination running
  src.destroy(id)                         -> source cleaned up
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from novacron.virt.base import DriverError, InstanceSpec

if TYPE_CHECKING:
    from novacron.virt.qemu import QemuDriver

DISK_NODE = "vda-disk"
INCOMING_ARGS = ["-incoming", "defer", "-S"]


@dataclass(frozen=True)
class MigrationTarget:
    host: str
    ram_port: int
    nbd_port: int

    @property
    def ram_uri(self) -> str:
        return f"tcp:{self.host}:{self.ram_port}"

    @property
    def nbd_uri(self) -> str:
        return f"nbd://{self.host}:{self.nbd_port}/{DISK_NODE}"


@dataclass(frozen=True)
class MigrationStats:
    total_time_ms: int
    downtime_ms: int
    transferred_bytes: int


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def receive(drv: QemuDriver, spec: InstanceSpec, host: str = "127.0.0.1") -> MigrationTarget:
    """Destination: start QEMU paused, waiting for the incoming state, disk exported over NBD."""
    if drv.pid(spec.id) is not None:
        raise DriverError(f"instance {spec.id} already runs on the destination")
    await drv.prepare(spec)
    argv = drv._argv(spec) + INCOMING_ARGS
    await drv._start(spec.id, argv)
    target = MigrationTarget(host, _free_port(host), _free_port(host))
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


async def _wait_job_ready(drv: QemuDriver, instance_id: str, deadline: float) -> None:
    while True:
        jobs: list[dict[str, Any]] = await drv.qmp(instance_id, "query-block-jobs")
        job = next((j for j in jobs if j.get("device") == "mirror-vda"), None)
        if job is None:
            raise DriverError(f"disk mirror of {instance_id} disappeared before it was in sync")
        if job.get("ready"):
            return
        if time.monotonic() > deadline:
            raise DriverError(f"disk mirror of {instance_id} not in sync in time")
        await asyncio.sleep(0.05)


async def send(
    drv: QemuDriver,
    instance_id: str,
    target: MigrationTarget,
    timeout_s: float = 600.0,
    max_bandwidth: int = 1 << 30,
) -> MigrationStats:
    """Source: mirror the disk, migrate RAM and state; the source ends paused (postmigrate)."""
    deadline = time.monotonic() + timeout_s
    await drv.qmp(
        instance_id,
        "drive-mirror",
        {
            "job-id": "mirror-vda",
            "device": "vda",
            "target": target.nbd_uri,
            "format": "raw",
            "sync": "top",
            "mode": "existing",
        },
    )
    try:
        await _wait_job_ready(drv, instance_id, deadline)
        await drv.qmp(instance_id, "migrate-set-parameters", {"max-bandwidth": max_bandwidth})
        await drv.qmp(instance_id, "migrate", {"uri": target.ram_uri})
        while True:
            info: dict[str, Any] = await drv.qmp(instance_id, "query-migrate")
            status = info.get("status")
            if status == "completed" and info.get("total-time"):
                break
            if status in ("failed", "cancelled"):
                raise DriverError(f"migration of {instance_id} {status}: {info.get('error-desc', '')}")
            if time.monotonic() > deadline:
                await drv.qmp(instance_id, "migrate_cancel")
                raise DriverError(f"migration of {instance_id} did not finish in {timeout_s:.0f} s")
            await asyncio.sleep(0.02)
    except BaseException:
        with contextlib.suppress(DriverError):
            await drv.qmp(instance_id, "block-job-cancel", {"device": "mirror-vda", "force": True})
        raise
    # the source is paused now: finish the mirror (cancel after READY = complete without pivot)
    await drv.qmp(instance_id, "block-job-cancel", {"device": "mirror-vda"})
    while await drv.qmp(instance_id, "query-block-jobs"):
        if time.monotonic() > deadline:
            raise DriverError(f"disk mirror of {instance_id} did not complete")
        await asyncio.sleep(0.02)
    ram = info.get("ram", {})
    return MigrationStats(
        total_time_ms=int(info.get("total-time", 0)),
        downtime_ms=int(info.get("downtime", 0)),
        transferred_bytes=int(ram.get("transferred", 0)),
    )


async def finish(drv: QemuDriver, instance_id: str, timeout_s: float = 60.0) -> None:
    """Destination: once the incoming state is loaded, stop the NBD export and run the guest."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = (await drv.qmp(instance_id, "query-status")).get("status")
        if status in ("paused", "prelaunch", "running"):
            break
        if time.monotonic() > deadline:
            raise DriverError(f"incoming migration of {instance_id} did not complete (status {status})")
        await asyncio.sleep(0.02)
    await drv.qmp(instance_id, "block-export-del", {"id": DISK_NODE})
    await drv.qmp(instance_id, "nbd-server-stop")
    if status != "running":
        await drv.qmp(instance_id, "cont")
    # a later reboot restarts QEMU from launch.json: drop the incoming-migration arguments
    launch = drv.instance_dir(instance_id) / "launch.json"
    data = json.loads(launch.read_text())
    argv = data["argv"]
    if argv[-len(INCOMING_ARGS) :] == INCOMING_ARGS:
        data["argv"] = argv[: -len(INCOMING_ARGS)]
        launch.write_text(json.dumps(data, indent=1))

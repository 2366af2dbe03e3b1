"""Live snapshots of a VM's root disk as qcow2 internal snapshots of ``disk.qcow2`` (QEMU 7.2).

Why internal snapshots and not an external overlay chain (the full reasoning is in
docs/architecture.md, "Snapshots"): the disk stays ONE file with the same node name
(``vda-disk``), so everything else that holds on to that file keeps working unchanged: the
backup's persistent dirty bitmaps and its fleecing job on ``vda-disk`` (virt/cbt.py), a shared-
storage migration (the file is the disk), a cold move's export of ``disk.qcow2``, an instant
restore's ``block-stream``. qcow2 keeps each snapshot's clusters by refcount, so any snapshot
(the middle of a chain too) is deleted on its own, online, with no data to merge.

- Create, running: disk-only is one QMP ``transaction`` of ``blockdev-snapshot-internal-sync``
  (atomic, takes milliseconds), inside a guest-agent fsfreeze when the guest runs qemu-ga
  (application-consistent), else crash-consistent. With RAM: the ``snapshot-save`` job (the
  vmstate goes into ``disk.qcow2`` too; the guest is paused while its RAM is written).
  Stopped: ``qemu-img snapshot -c``.
- Revert: qcow2 refuses to apply a snapshot while the disk has dirty bitmaps ("Device has active
  dirty bitmaps"), and after a revert the backup bitmaps would lie anyway (the disk jumped back):
  they are removed first, so the next backup is a full one and says why. A RAM snapshot is
  loaded into the running VM (``snapshot-load``: the guest resumes where it was). A disk-only
  snapshot of a running VM: the VM is powered off, the snapshot applied with ``qemu-img
  snapshot -a`` and the VM started again with the same command line (its disk cannot jump under
  a running guest's page cache). Stopped: ``qemu-img snapshot -a``.
- Delete: ``blockdev-snapshot-delete-internal-sync`` while running, ``qemu-img snapshot -d`` when
  stopped.

Every step is idempotent: a snapshot that exists (create) or is gone (delete) is a done step.
The snapshots cover the root disk only; volumes are resources of their own.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from novacron.virt import guestagent
from novacron.virt.base import DriverError, Progress

if TYPE_CHECKING:
    from novacron.virt.qemu import QemuDriver

DEVICE = "vda"
NODE = "vda-disk"
#: dirty bitmaps the backup keeps on the disk (virt/cbt.py PREFIX)
BITMAP_PREFIX = "nc-"
JOB_POLL_S = 0.1
#: a RAM snapshot of a big guest takes a while to write
JOB_TIMEOUT_S = 1800.0


async def _img(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "qemu-img", *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise DriverError(f"qemu-img {argv[0]} failed: {err.decode(errors='replace').strip()}")
    return out.decode()


async def list_tags(d: QemuDriver, instance_id: str) -> dict[str, dict[str, Any]]:
    """The disk's internal snapshots by name (running: QEMU's view; stopped: the file's)."""
    if d.pid(instance_id) is not None:
        for dev in await d.qmp(instance_id, "query-block"):
            if dev.get("device") == DEVICE:
                found = dev.get("inserted", {}).get("image", {}).get("snapshots", [])
                return {s["name"]: s for s in found}
        raise DriverError(f"instance {instance_id} has no disk {DEVICE}")
    disk = d.disk_path(instance_id)
    if not disk.exists():
        raise DriverError(f"instance {instance_id} has no disk on this host")
    info = json.loads(await _img("info", "-U", "--output=json", str(disk)))
    return {s["name"]: s for s in info.get("snapshots", [])}


async def _agent_open(d: QemuDriver, instance_id: str) -> bool:
    """A guest agent holds its channel open (as cbt reads it): only then is a freeze worth asking."""
    for dev in await d.qmp(instance_id, "query-chardev"):
        if dev.get("label") == "qga0":
            return bool(dev.get("frontend-open"))
    return False


async def _job(d: QemuDriver, instance_id: str, job_id: str, report: Progress | None) -> None:
    """Follow a QMP job to its end (dismissing it); its error becomes a DriverError."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        jobs = {j["id"]: j for j in await d.qmp(instance_id, "query-jobs")}
        job = jobs.get(job_id)
        if job is None:
            raise DriverError(f"the QMP job {job_id} is gone (the VM was stopped?)")
        if job["status"] == "concluded":
            await d.qmp(instance_id, "job-dismiss", {"id": job_id})
            if job.get("error"):
                raise DriverError(f"{job['type']} failed: {job['error']}")
            return
        if time.monotonic() > deadline:
            raise DriverError(f"the QMP job {job_id} did not end within {JOB_TIMEOUT_S:.0f} s")
        if report is not None:
            total = max(int(job.get("total-progress") or 1), 1)
            await report({"phase": job["type"], "fraction": int(job.get("current-progress") or 0) / total})
        await asyncio.sleep(JOB_POLL_S)


async def create(
    d: QemuDriver, instance_id: str, tag: str, memory: bool, quiesce: bool, report: Progress | None
) -> dict[str, Any]:
    """Take snapshot ``tag``; answers how consistent it is and how much RAM state it holds."""
    existing = await list_tags(d, instance_id)
    if tag in existing:  # the step ran before a crash
        return _result(existing[tag], "crash")
    if d.pid(instance_id) is None:
        await _img("snapshot", "-c", tag, str(d.disk_path(instance_id)))
        # a stopped guest has nothing in flight: its disk is as consistent as its last shutdown
        return _result((await list_tags(d, instance_id))[tag], "application")
    if memory:
        job = f"nc-save-{tag}"[:60]
        args = {"job-id": job, "tag": tag, "vmstate": NODE, "devices": [NODE]}
        await d.qmp(instance_id, "snapshot-save", args)
        await _job(d, instance_id, job, report)
        # the RAM and the disk are taken together with the guest paused: nothing is in flight
        return _result((await list_tags(d, instance_id))[tag], "memory")
    frozen = (
        quiesce and await _agent_open(d, instance_id) and await guestagent.freeze(d.qga_socket(instance_id))
    )
    try:
        action = {"type": "blockdev-snapshot-internal-sync", "data": {"device": DEVICE, "name": tag}}
        await d.qmp(instance_id, "transaction", {"actions": [action]})
    finally:
        if frozen:
            await guestagent.thaw(d.qga_socket(instance_id))
    return _result((await list_tags(d, instance_id))[tag], "application" if frozen else "crash")


def _result(info: dict[str, Any], consistency: str) -> dict[str, Any]:
    return {"consistency": consistency, "vm_state_bytes": int(info.get("vm-state-size") or 0)}


async def _drop_bitmaps(d: QemuDriver, instance_id: str, running: bool) -> list[str]:
    """Remove the backup's dirty bitmaps: qcow2 applies no snapshot under them, and they would
    no longer tell what changed since the last backup. The next backup is a full one."""
    if running:
        found = []
        for dev in await d.qmp(instance_id, "query-block"):
            if dev.get("device") == DEVICE:
                found = [b["name"] for b in dev.get("inserted", {}).get("dirty-bitmaps", [])]
        for name in found:
            await d.qmp(instance_id, "block-dirty-bitmap-remove", {"node": NODE, "name": name})
        return found
    disk = str(d.disk_path(instance_id))
    info = json.loads(await _img("info", "--output=json", disk))
    names = [b["name"] for b in info.get("format-specific", {}).get("data", {}).get("bitmaps", [])]
    for name in names:
        await _img("bitmap", "--remove", disk, name)
    return names


async def revert(d: QemuDriver, instance_id: str, tag: str, report: Progress | None) -> dict[str, Any]:
    """Make the disk (and, for a RAM snapshot of a running VM, the guest) what it was at ``tag``."""
    snaps = await list_tags(d, instance_id)
    if tag not in snaps:
        raise DriverError(f"instance {instance_id} has no snapshot {tag} on its disk")
    running = d.pid(instance_id) is not None
    if running and (jobs := await d.qmp(instance_id, "query-jobs")):
        # a backup's fleecing (or an instant restore's stream) reads or writes through the disk: a
        # snapshot applied under it would change what the backup's point in time reads
        names = ", ".join(f"{j['type']} {j['id']}" for j in jobs)
        raise DriverError(f"instance {instance_id} has block jobs running ({names}); revert after they end")
    dropped = await _drop_bitmaps(d, instance_id, running)
    if running and int(snaps[tag].get("vm-state-size") or 0) > 0:
        await _load(d, instance_id, tag, report)
        return {"restarted": False, "memory": True, "bitmaps_dropped": dropped}
    if running:
        await _restart_at(d, instance_id, tag)
    else:
        await _img("snapshot", "-a", tag, str(d.disk_path(instance_id)))
    return {"restarted": running, "memory": False, "bitmaps_dropped": dropped}


async def _load(d: QemuDriver, instance_id: str, tag: str, report: Progress | None) -> None:
    """Load a RAM snapshot into the running VM (``snapshot-load``): the guest resumes at it."""
    job = f"nc-load-{tag}"[:60]
    was_running = (await d.qmp(instance_id, "query-status")).get("status") == "running"
    args = {"job-id": job, "tag": tag, "vmstate": NODE, "devices": [NODE]}
    await d.qmp(instance_id, "snapshot-load", args)
    try:
        await _job(d, instance_id, job, report)
    finally:  # a failed load leaves the VM paused in restore-vm: the guest runs on as it was
        status = await d.qmp(instance_id, "query-status")
        if was_running and status.get("status") != "running":
            await d.qmp(instance_id, "cont")


async def _restart_at(d: QemuDriver, instance_id: str, tag: str) -> None:
    """Power the VM off, apply ``tag`` to its disk and start it with the same command line."""
    argv = json.loads((d.instance_dir(instance_id) / "launch.json").read_text())["argv"]
    await d.power_off(instance_id)
    await _img("snapshot", "-a", tag, str(d.disk_path(instance_id)))
    await d.start_argv(instance_id, argv)


async def delete(d: QemuDriver, instance_id: str, tag: str) -> None:
    """Delete snapshot ``tag`` (online when the VM runs); the others keep all their data."""
    if tag not in await list_tags(d, instance_id):
        return
    if d.pid(instance_id) is not None:
        await d.qmp(instance_id, "blockdev-snapshot-delete-internal-sync", {"device": DEVICE, "name": tag})
    else:
        await _img("snapshot", "-d", tag, str(d.disk_path(instance_id)))

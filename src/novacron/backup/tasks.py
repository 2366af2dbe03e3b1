"""Durable tasks of backups: back up, restore (new VM or over a stopped one), verify, restore test.

Work on the VM's host goes through its agent (``backup_disk``, ``restore_disk``, ``wait_console``
host operations); verification reads the store from the control plane. Every step is safe to run
again: host operations are keyed by task and step, and catalogue updates are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import select

from novacron import events
from novacron.agent.protocol import (
    BackupDisk,
    Destroy,
    InstantRestoreDisk,
    Launch,
    Prepare,
    RestoreDisk,
    StopRestoreSource,
    StreamDisk,
    WaitConsole,
    WaitState,
    vm_spec,
)
from novacron.backup import vmstore, volrestore
from novacron.compute import hostops, scheduler, storage
from novacron.compute.images import describe_derived, remove_files
from novacron.compute.pools import attachment
from novacron.compute.reports import record_state
from novacron.compute.spec import ATTACHED, spec_payload
from novacron.compute.tasks import BOOT_TIMEOUT_S, end_operation, remove_vm
from novacron.db.base import utcnow
from novacron.db.models import (
    VM,
    BackupPolicy,
    BackupSnapshot,
    BackupTarget,
    Image,
    QuotaCharge,
    RestoreJob,
    Task,
    Volume,
)
from novacron.identity.encryption import scrub
from novacron.quota import enforce as quota
from novacron.quota.registry import backup_amounts
from novacron.quota.tree import node_for_ref
from novacron.tasks.runner import StepFailed, TaskHandler
from novacron.virt.base import DriverError, VolumeAttachment
from novacron.virt.images import inspect_image, raw_to_qcow2

if TYPE_CHECKING:
    from novacron.context import Context

BACKUP_TIMEOUT_S = 6 * 3600.0
#: what a restore test waits for on the restored VM's console unless told otherwise
DEFAULT_MARKER = "NOVACRON-GUEST-UP"


def _snapshot(
    ctx: Context, snapshot_id: str, target_id: str | None = None
) -> tuple[BackupSnapshot, BackupTarget]:
    """The snapshot and the target to read it from (its own, or ``target_id``: its replica)."""
    with ctx.db.session() as s:
        snap = s.get(BackupSnapshot, snapshot_id)
        if snap is None:
            raise StepFailed(f"Backup {snapshot_id} no longer exists.")
        target = s.get(BackupTarget, target_id or snap.target_id)
        assert target is not None
        return snap, target


def _vm(ctx: Context, vm_id: str) -> VM:
    with ctx.db.session() as s:
        vm = s.get(VM, vm_id)
        if vm is None:
            raise StepFailed(f"VM {vm_id} no longer exists.")
        return vm


def set_result(ctx: Context, task: Task, result: dict[str, Any]) -> None:
    with ctx.db.session() as s:
        row = s.get(Task, task.id)
        assert row is not None
        row.result = result


def secrets_for(ctx: Context, target: BackupTarget, tenant_id: str) -> dict[str, Any]:
    try:
        return vmstore.agent_payload(ctx.settings, target, tenant_id)
    except Exception as exc:  # a target that cannot be reached or read: the user's problem to fix
        # the message lands in the task's error, events and logs: never with a credential in it
        try:
            why = scrub(str(exc), vmstore.target_config(ctx.settings, target))
        except Exception:  # the credentials themselves cannot be opened (a retired KEK)
            why = type(exc).__name__
        raise StepFailed(f"Backup target {target.name} is not usable: {why}") from exc


class BackupVM(TaskHandler):
    """Back a VM up: incremental from its previous backup when the disk's dirty bitmap allows."""

    kind = "backup.create"
    steps: ClassVar[list[str]] = ["backup"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        snap, target = _snapshot(ctx, task.params["snapshot_id"])
        vm = _vm(ctx, task.resource_id)
        if vm.host_id is None:
            raise StepFailed(f"VM {vm.name} is not placed on any host: nothing to back up.")
        with ctx.db.session() as s:
            parent = s.scalar(
                select(BackupSnapshot.id)
                .where(
                    BackupSnapshot.vm_id == vm.id,
                    BackupSnapshot.target_id == target.id,
                    BackupSnapshot.state == "available",
                    BackupSnapshot.id != snap.id,
                )
                .order_by(BackupSnapshot.completed_at.desc())
                .limit(1)
            )
            # a verify that found damage since the last full backup: chunks were removed, and an
            # incremental would reuse them from its parent; a full one uploads them again
            damaged = parent is not None and _damaged_since_full(s, vm.id, target.id)
            row = s.get(BackupSnapshot, snap.id)
            assert row is not None
            row.state, row.parent_id = "running", None if damaged else parent
            parent = row.parent_id
        immutable_s = 0
        if snap.policy_id:
            with ctx.db.session() as s:
                policy = s.get(BackupPolicy, snap.policy_id)
                immutable_s = policy.immutable_s if policy is not None else 0
        backup = BackupDisk(
            snapshot_id=snap.id,
            parent_id=parent,
            # the store refuses deletion until then, whoever asks (the catalogue says the same)
            immutable_until=time.time() + immutable_s if immutable_s else None,
            full=bool(task.params.get("full")) or damaged,
            secrets=secrets_for(ctx, target, vm.tenant_id),
            volumes=attached_volumes(ctx, vm.id),
        )
        started = time.monotonic()
        result = await hostops.call(ctx, vm.host_id, task, backup, vm.id, BACKUP_TIMEOUT_S)
        lasted = time.monotonic() - started
        if damaged:
            result["reason"] = "a verify found damage since the last full backup: full, to store it anew"
        record_backup(ctx, snap.id, target, vm.name, result, lasted)
        set_result(ctx, task, {"snapshot_id": snap.id, "parent_id": parent, **result})

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        with ctx.db.session() as s:
            row = s.get(BackupSnapshot, task.params["snapshot_id"])
            if row is not None and row.state != "available":
                row.state, row.error = "failed", error


def attached_volumes(ctx: Context, vm_id: str) -> tuple[VolumeAttachment, ...]:
    """The VM's attached volumes as its host opens them: each is a disk of its backup."""
    with ctx.db.session() as s:
        rows = s.scalars(
            select(Volume)
            .where(Volume.vm_id == vm_id, Volume.status.in_(ATTACHED))
            .order_by(Volume.created_at)
        )
        return tuple(attachment(v.pool, v.id, v.location, v.io_limits, v.boot) for v in rows)


def disks_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The disks a snapshot holds, as the catalogue shows them (an older agent answers for vda only)."""
    keys = ("name", "device", "volume_id", "size", "mode", "reason", "bytes_read")
    if "disks" not in result:
        return [{"name": "vda", "device": "vda", "volume_id": None, "size": int(result["size"])}]
    return [{k: d.get(k) for k in keys} for d in result["disks"]]


def _damaged_since_full(s: Any, vm_id: str, target_id: str) -> bool:
    """Whether a verify of this VM's backups on the target failed after its newest full backup."""
    rows = s.execute(
        select(BackupSnapshot.mode, BackupSnapshot.completed_at, BackupSnapshot.verify_result)
        .where(
            BackupSnapshot.vm_id == vm_id,
            BackupSnapshot.target_id == target_id,
            BackupSnapshot.state == "available",
        )
        .order_by(BackupSnapshot.completed_at.desc())
    ).all()
    last_full = next((done for mode, done, _ in rows if mode == "full"), None)
    failed_at = [
        datetime.fromisoformat(str(v["at"])) for _, _, v in rows if v and v.get("ok") is False and v.get("at")
    ]
    return any(last_full is None or at > last_full for at in failed_at)


def record_backup(  # noqa: PLR0913 - the backup, where it went, and what its host answered when
    ctx: Context,
    snapshot_id: str,
    target: BackupTarget,
    vm_name: str,
    result: dict[str, Any],
    seconds: float,
) -> None:
    """Fill the catalogue row from the agent's ``backup_disk`` answer (which took ``seconds`` on the
    host): the snapshot is available, and the platform's metrics count what it read and stored."""
    store = dict(result.get("store") or {})
    with ctx.db.session() as s:
        row = s.get(BackupSnapshot, snapshot_id)
        assert row is not None
        policy = s.get(BackupPolicy, row.policy_id) if row.policy_id else None
        row.state = "available"
        row.mode, row.reason, row.consistency = result["mode"], result["reason"], result["consistency"]
        row.disks = disks_of(result)
        row.size_bytes = int(result["size"])
        row.bytes_read = int(result["bytes_read"])
        row.changed_bytes = int(result["changed_bytes"])
        row.chunks_changed = int(result["chunks_changed"])
        row.chunks_total = int(store.get("chunks_total", -(-row.size_bytes // target.chunk_size)))
        row.chunks_uploaded = int(store.get("chunks_uploaded", 0))
        row.bytes_uploaded = int(store.get("bytes_uploaded", 0))
        row.completed_at = utcnow()
        if policy is not None and policy.immutable_s:
            row.immutable_until = row.completed_at + timedelta(seconds=policy.immutable_s)
        # recorded with the snapshot, not checked: the backup exists (the request checked room)
        if s.get(QuotaCharge, ("backup", row.id)) is None:
            node = node_for_ref(s, project_id=row.project_id)
            quota.charge_node(s, node, "backup", row.id, backup_amounts(row.size_bytes))
        events.publish(
            s,
            "backup.completed",
            "backup",
            row.id,
            tenant_id=row.tenant_id,
            project_id=row.project_id,
            vm=vm_name,
            mode=row.mode,
            bytes_read=row.bytes_read,
        )
        mode, read, uploaded = str(row.mode), row.bytes_read, row.bytes_uploaded
    ctx.platform_metrics.backup_finished(
        mode, target.type, bytes_read=read, bytes_uploaded=uploaded, seconds=seconds
    )


async def _wait_console(
    ctx: Context, task: Task, host_id: str, vm_id: str, marker: str, key: str = ""
) -> dict[str, Any]:
    wait = WaitConsole(marker, BOOT_TIMEOUT_S)
    return await hostops.call(ctx, host_id, task, wait, vm_id, BOOT_TIMEOUT_S + 60, key)


async def restore_new_vm(  # noqa: PLR0913 (a task step: the task, its ids, and three step options)
    ctx: Context,
    task: Task,
    snapshot_id: str,
    vm_id: str,
    marker: str | None,
    key: str = "",
    target_id: str | None = None,
    instant: bool = False,
    volumes: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Place, prepare, restore the disk into, and boot a VM row made for this restore.

    ``target_id``: read the snapshot from that target (its replica at a recovery site).
    ``instant``: the disk reads from the backup until ``stream_restored_disk`` has copied it in;
    the VM is then running but its operation goes on (``task_state`` stays ``restoring``).
    ``volumes``: the new volumes made with the VM (``volrestore.new_volumes``), by default the
    task's ``volumes`` (a DR run restores several VMs, each with its own)."""
    snap, target = _snapshot(ctx, snapshot_id, target_id)
    started = time.monotonic()
    with ctx.db.session() as s:
        vm = s.get(VM, vm_id)
        if vm is None:
            raise StepFailed(f"VM {vm_id} no longer exists.")
        if vm.host_id is None:
            try:
                scheduler.claim(s, vm, ctx.settings.placement_strategy)
            except scheduler.NoValidHost as exc:
                raise StepFailed(str(exc)) from exc
        host_id = vm.host_id
        assert host_id is not None
    # the new VM's volumes (made with it) get their files and are attached before its spec is read
    made = list(task.params.get("volumes") or [] if volumes is None else volumes)
    attached = await volrestore.allocate(ctx, made)
    with ctx.db.session() as s:
        vm = s.get(VM, vm_id)
        assert vm is not None
        try:
            spec = vm_spec(spec_payload(s, vm))
        except ValueError as exc:
            raise StepFailed(str(exc)) from exc
    await hostops.call(ctx, host_id, task, Prepare(spec), vm_id, 300, key)
    secrets = secrets_for(ctx, target, snap.tenant_id)
    whole = RestoreDisk(
        snap.id,
        snap.size_bytes,
        secrets,
        volumes=tuple(attached),
        sources=tuple(m["source"] for m in made),
        root=any(d.get("name") == "vda" for d in snap.disks or [{"name": "vda"}]),
    )
    request: InstantRestoreDisk | RestoreDisk = whole
    if instant:
        if made:  # the volumes are written in first; only the root disk boots from the backup
            volumes_only = dataclasses.replace(whole, root=False)
            await hostops.call(ctx, host_id, task, volumes_only, vm_id, BACKUP_TIMEOUT_S, key)
        request = InstantRestoreDisk(snap.id, volrestore.root_size(snap), secrets)
    await hostops.call(ctx, host_id, task, request, vm_id, BACKUP_TIMEOUT_S, key)
    restored_s = time.monotonic() - started
    await hostops.call(ctx, host_id, task, Launch(spec), vm_id, 300, key)
    if marker:
        await _wait_console(ctx, task, host_id, vm_id, marker, key)
    else:
        wanted = WaitState(("running",), BOOT_TIMEOUT_S)
        await hostops.call(ctx, host_id, task, wanted, vm_id, BOOT_TIMEOUT_S + 60, key)
    if instant:
        with ctx.db.session() as s:
            row = s.get(VM, vm_id)
            if row is not None:
                record_state(s, row, "running")
    else:
        end_operation(ctx, vm_id, "running")
    return {
        "vm_id": vm_id,
        "restore_s": round(restored_s, 2),
        "ready_s": round(time.monotonic() - started, 2),
        "volumes": [m["volume_id"] for m in made],
    }


def _finish_job(
    ctx: Context, job_id: str | None, state: str, result: dict[str, Any] | None, error: str | None
) -> None:
    if not job_id:
        return
    with ctx.db.session() as s:
        job = s.get(RestoreJob, job_id)
        if job is not None:
            job.state, job.result, job.error, job.finished_at = state, result, error, utcnow()


class RestoreNewVM(TaskHandler):
    """Restore a snapshot into a new VM (made from the snapshot's recorded image and sizes)."""

    kind = "backup.restore_new"
    steps: ClassVar[list[str]] = ["restore"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        result = await restore_new_vm(
            ctx, task, task.params["snapshot_id"], task.resource_id, task.params.get("marker")
        )
        set_result(ctx, task, result)
        _finish_job(ctx, task.params.get("job_id"), "succeeded", result, None)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        vm = _vm(ctx, task.resource_id)
        if vm.host_id is not None:
            with contextlib.suppress(StepFailed):
                await hostops.call(ctx, vm.host_id, task, Destroy(), vm.id, timeout_s=60)
        with ctx.db.session() as s:
            row = s.get(VM, task.resource_id)
            if row is not None:
                row.host_id = None
            quota.release(s, "vm", task.resource_id)  # left in error without a host: it holds nothing
        volrestore.release(ctx, list(task.params.get("volumes") or []))
        end_operation(ctx, task.resource_id, "absent", error)
        _finish_job(ctx, task.params.get("job_id"), "failed", None, error)


class InstantRestoreNewVM(RestoreNewVM):
    """Restore into a new VM that boots at once from the backup, then copy the data in behind it."""

    kind = "backup.restore_instant"
    steps: ClassVar[list[str]] = ["boot", "copy"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        if step == "boot":
            result = await restore_new_vm(
                ctx,
                task,
                task.params["snapshot_id"],
                task.resource_id,
                task.params.get("marker"),
                instant=True,
            )
            set_result(ctx, task, result)
            return
        snap, target = _snapshot(ctx, task.params["snapshot_id"])
        vm = _vm(ctx, task.resource_id)
        assert vm.host_id is not None
        started = time.monotonic()
        stream = StreamDisk(
            snapshot_id=snap.id,
            size=volrestore.root_size(snap),
            speed_bytes=int(task.params.get("copy_rate_mib") or 0) * 2**20,
            secrets=secrets_for(ctx, target, snap.tenant_id),
        )
        await hostops.call(ctx, vm.host_id, task, stream, vm.id, BACKUP_TIMEOUT_S)
        end_operation(ctx, vm.id, "running")
        with ctx.db.session() as s:
            row = s.get(Task, task.id)
            assert row is not None
            result = {k: v for k, v in (row.result or {}).items() if k != "progress"}
            result["copy_s"] = round(time.monotonic() - started, 2)
            row.result = result
        _finish_job(ctx, task.params.get("job_id"), "succeeded", result, None)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        vm = _vm(ctx, task.resource_id)
        if vm.host_id is not None:
            # before the VM's QEMU has connected, nothing else would end the backup's NBD server
            with contextlib.suppress(StepFailed):
                await hostops.call(ctx, vm.host_id, task, StopRestoreSource(), vm.id, timeout_s=60)
        await super().rollback(ctx, task, error)


class RestoreOverVM(TaskHandler):
    """Restore a snapshot over the disk of an existing, stopped VM."""

    kind = "backup.restore"
    steps: ClassVar[list[str]] = ["restore"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        snap, target = _snapshot(ctx, task.params["snapshot_id"])
        vm = _vm(ctx, task.resource_id)
        if vm.host_id is None:
            raise StepFailed(f"VM {vm.name} is not placed on any host.")
        volumes = {v.volume_id: v for v in attached_volumes(ctx, vm.id)}
        names = [str(d.get("name")) for d in snap.disks or [{"name": "vda"}]]
        # each backed-up volume still attached to the VM is written back in place
        back = [n for n in names if n in volumes]
        restore = RestoreDisk(
            snap.id,
            snap.size_bytes,
            secrets_for(ctx, target, snap.tenant_id),
            volumes=tuple(volumes[n] for n in back),
            sources=tuple(back),
            root="vda" in names,
        )
        result = await hostops.call(ctx, vm.host_id, task, restore, vm.id, BACKUP_TIMEOUT_S)
        set_result(ctx, task, result)
        _finish_job(ctx, task.params.get("job_id"), "succeeded", result, None)

    async def on_success(self, ctx: Context, task: Task) -> None:
        end_operation(ctx, task.resource_id)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        end_operation(ctx, task.resource_id, None, error)
        _finish_job(ctx, task.params.get("job_id"), "failed", None, error)


class VerifySnapshot(TaskHandler):
    """Re-read every chunk of a snapshot from the target and check it; the result stays with it."""

    kind = "backup.verify"
    steps: ClassVar[list[str]] = ["verify"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        snap, target = _snapshot(ctx, task.resource_id)
        store = vmstore.server_store(ctx.settings, target)
        started = time.monotonic()
        report = await asyncio.to_thread(store.verify, snap.tenant_id, snap.id)
        outcome = vmstore.verify_outcome(report)
        outcome.update(at=utcnow().isoformat(), duration_s=round(time.monotonic() - started, 2))
        with ctx.db.session() as s:
            row = s.get(BackupSnapshot, snap.id)
            assert row is not None
            row.verify_result = outcome
        set_result(ctx, task, outcome)
        if not outcome["ok"]:
            with ctx.db.session() as s:
                events.publish(
                    s,
                    "backup.corrupt",
                    "backup",
                    snap.id,
                    tenant_id=snap.tenant_id,
                    project_id=snap.project_id,
                    bad_chunks=outcome["bad_chunks"],
                )
            raise StepFailed(
                f"Backup {snap.id} is damaged: {outcome['bad_chunks']} chunk(s) failed their check."
            )


class RestoreTest(TaskHandler):
    """Restore a snapshot into a scratch VM, boot it to its console marker, then remove it."""

    kind = "backup.restore_test"
    steps: ClassVar[list[str]] = ["boot", "cleanup"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        vm_id = task.params["vm_id"]
        if step == "boot":
            marker = task.params.get("marker") or DEFAULT_MARKER
            result = await restore_new_vm(ctx, task, task.resource_id, vm_id, marker)
            outcome = {"ok": True, "marker": marker, "boot_s": result["ready_s"], "at": utcnow().isoformat()}
            outcome["volumes"] = len(result["volumes"])  # restored and attached to the scratch VM
            self._record(ctx, task, outcome)
        else:
            await remove_vm(ctx, task, vm_id, "rt")
            volrestore.release(ctx, list(task.params.get("volumes") or []))  # scratch volumes too

    def _record(self, ctx: Context, task: Task, outcome: dict[str, Any]) -> None:
        with ctx.db.session() as s:
            row = s.get(BackupSnapshot, task.resource_id)
            if row is not None:
                row.restore_test_result = outcome
        set_result(ctx, task, outcome)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        self._record(ctx, task, {"ok": False, "error": error, "at": utcnow().isoformat()})
        with contextlib.suppress(StepFailed):
            await remove_vm(ctx, task, task.params["vm_id"], "rt")
        volrestore.release(ctx, list(task.params.get("volumes") or []))


class RestoreImage(TaskHandler):
    """Restore a snapshot's disk as a new image (kernel and initrd of the VM's image carried over)."""

    kind = "backup.restore_image"
    steps: ClassVar[list[str]] = ["restore"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        snap, target = _snapshot(ctx, task.params["snapshot_id"])
        image_id, settings = task.resource_id, ctx.settings
        folder = storage.image_dir(settings, image_id)
        folder.mkdir(parents=True, exist_ok=True)
        raw = folder / "restore.raw"
        store = vmstore.server_store(settings, target)
        try:
            await asyncio.to_thread(store.restore_to, snap.tenant_id, snap.id, "vda", raw)
            try:  # -f raw: the bytes are the guest's (it may have written a qcow2 header)
                await raw_to_qcow2(raw, storage.image_disk(settings, image_id))
            except DriverError as exc:
                raise StepFailed(str(exc)) from exc
        finally:
            raw.unlink(missing_ok=True)
        info = await asyncio.to_thread(inspect_image, storage.image_disk(settings, image_id))
        with ctx.db.session() as s:
            image = s.get(Image, image_id)
            assert image is not None
            source = s.get(Image, snap.source.get("image_id")) if snap.source.get("image_id") else None
            describe_derived(settings, image, info, source)
            image.status = "active"
            events.publish(
                s, "image.active", "image", image.id, tenant_id=image.tenant_id, project_id=image.project_id
            )
        set_result(ctx, task, {"image_id": image_id, "size": info.virtual_size_bytes})
        _finish_job(ctx, task.params.get("job_id"), "succeeded", {"image_id": image_id}, None)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        remove_files(ctx, task.resource_id)
        with ctx.db.session() as s:
            image = s.get(Image, task.resource_id)
            if image is not None:
                image.status, image.error = "error", error
        _finish_job(ctx, task.params.get("job_id"), "failed", None, error)


HANDLERS: list[TaskHandler] = [
    BackupVM(),
    RestoreNewVM(),
    InstantRestoreNewVM(),
    RestoreOverVM(),
    RestoreImage(),
    VerifySnapshot(),
    RestoreTest(),
]

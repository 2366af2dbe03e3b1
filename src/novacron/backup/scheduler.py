"""The backup scheduler (controller ``novacron.backups``, leader replica only).

Besides schedules and retention it runs the DR duties of ``drwatch``: replication of targets to
their replicas and the RPO watch that raises ``dr.rpo_missed``.

Each policy whose interval has passed gets one backup task per VM it covers (one VM, or every
placed VM of its project), unless that VM's previous backup is still queued or running. After
backups complete, each policy's GFS retention prunes the VM's older backups taken under it; a
backup under legal hold or inside its immutability window is kept whatever the policy says.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.backup import drwatch, retention, service, vmstore
from novacron.db.base import utcnow
from novacron.db.models import VM, BackupPolicy, BackupSnapshot, BackupTarget
from novacron.errors import DomainError
from novacron.tasks.controller import ControllerLoop, Job

if TYPE_CHECKING:
    from novacron.context import Context

log = logging.getLogger(__name__)
CHECK_S = 5.0
RETENTION_KEYS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


def _vms_of(session: Session, policy: BackupPolicy) -> list[VM]:
    stmt = select(VM).where(VM.project_id == policy.project_id, VM.host_id.is_not(None))
    if policy.vm_id is not None:
        stmt = stmt.where(VM.id == policy.vm_id)
    return [vm for vm in session.scalars(stmt) if vm.state in ("running", "stopped", "paused")]


def run_due(ctx: Context) -> int:
    """Queue the backups of every due policy; returns how many were queued."""
    queued = 0
    now = utcnow()
    with ctx.db.session() as s:
        for policy in s.scalars(select(BackupPolicy).where(BackupPolicy.enabled.is_(True))):
            if (
                policy.last_run_at is not None
                and policy.last_run_at + timedelta(seconds=policy.interval_s) > now
            ):
                continue
            target = s.get(BackupTarget, policy.target_id)
            assert target is not None
            for vm in _vms_of(s, policy):
                busy = s.scalar(
                    select(BackupSnapshot.id).where(
                        BackupSnapshot.vm_id == vm.id, BackupSnapshot.state.in_(("pending", "running"))
                    )
                )
                if busy is None:
                    try:
                        service.request_backup(s, vm, target, False, policy.id)
                    except DomainError as exc:  # the project's backup storage is full: next time
                        log.warning("policy %s: no backup of VM %s: %s", policy.name, vm.name, exc.detail)
                        continue
                    queued += 1
            policy.last_run_at = now
    if queued and ctx.tasks is not None:
        ctx.tasks.wake()
    return queued


def prune(ctx: Context) -> list[str]:
    """Apply every policy's retention to the backups taken under it; returns the ids deleted."""
    deleted: list[str] = []
    with ctx.db.session() as s:
        for policy in s.scalars(select(BackupPolicy)):
            rules = retention.RetentionPolicy(**{k: int(policy.retention.get(k, 0)) for k in RETENTION_KEYS})
            if rules.keeps_nothing():
                continue
            target = s.get(BackupTarget, policy.target_id)
            assert target is not None
            snaps = list(
                s.scalars(
                    select(BackupSnapshot).where(
                        BackupSnapshot.policy_id == policy.id, BackupSnapshot.state == "available"
                    )
                )
            )
            by_vm: dict[str | None, list[BackupSnapshot]] = {}
            for snap in snaps:
                by_vm.setdefault(snap.vm_id, []).append(snap)
            store = vmstore.server_store(ctx.settings, target)
            for group in by_vm.values():
                keep = retention.select(
                    [(b.id, b.completed_at.timestamp() if b.completed_at else 0.0) for b in group], rules
                )
                for snap in group:
                    if snap.id in keep or service.deletable(snap):
                        continue
                    try:
                        service.delete_snapshot(s, snap, store)
                    except DomainError:
                        continue
                    deleted.append(snap.id)
    return deleted


class BackupScheduler:
    """Every ``CHECK_S``: due backups, retention, replication to DR replicas, the RPO watch."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.loop = ControllerLoop(
            "backup scheduler",
            [
                Job("due backups", partial(run_due, ctx)),
                Job("retention", partial(prune, ctx)),
                Job("replication", partial(drwatch.replicate_due, ctx)),
                Job("RPO watch", partial(drwatch.check_rpo, ctx)),
            ],
            tick_s=CHECK_S,
        )

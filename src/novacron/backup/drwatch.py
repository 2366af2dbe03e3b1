"""The backup controller's DR duties: replicate targets to their replicas, watch RPO against targets.

Replication (``replicate_due``): a target with a ``replica_target_id`` is copied there by
``replication.Replicator`` every ``replicate_every_s``; after a pass, each catalogue snapshot whose
index reached the replica gets ``replicated_at``: from then on failover can restore it at the
recovery site. A deletion is mirrored only for snapshots the catalogue no longer has, so neither
the replica's own (fail-back) backups nor replicated ones missing from a source restored empty
are lost.

RPO (``check_rpo``): for every runbook step, the age of the VM's newest good *replicated* snapshot
is its RPO now. A VM that misses its target (or has no replicated snapshot) raises
``dr.rpo_missed`` once, when it starts missing; ``dr.rpo_met`` when it is back within target.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from novacron import events
from novacron.backup import vmstore
from novacron.backup.replication import Replicator
from novacron.db.base import utcnow
from novacron.db.models import BackupSnapshot, BackupTarget, DRRunbook
from novacron.identity.encryption import scrub

if TYPE_CHECKING:
    from novacron.context import Context

log = logging.getLogger(__name__)


def newest_replicated(session: Session, project_id: str, vm_ref: str) -> BackupSnapshot | None:
    """The VM's newest available snapshot that is at the recovery site and did not fail a verify."""
    rows = session.scalars(
        select(BackupSnapshot)
        .where(
            BackupSnapshot.project_id == project_id,
            BackupSnapshot.state == "available",
            BackupSnapshot.replicated_at.is_not(None),
            or_(BackupSnapshot.vm_id == vm_ref, BackupSnapshot.vm_name == vm_ref),
        )
        .order_by(BackupSnapshot.completed_at.desc())
        .limit(20)
    )
    for snap in rows:
        if (snap.verify_result or {}).get("ok", True):
            return snap
    return None


def _replicate(ctx: Context, source: BackupTarget, replica: BackupTarget) -> int:
    with ctx.db.session() as s:
        # a deletion is mirrored only for snapshots the catalogue deleted: neither the recovery
        # site's own (fail-back) backups nor anything a source that came back empty lacks
        own = {(t, i) for t, i in s.execute(
            select(BackupSnapshot.tenant_id, BackupSnapshot.id).where(BackupSnapshot.state == "available")
        )}  # fmt: skip
    dest = vmstore.open_target(ctx.settings, replica)
    store = vmstore.server_store(ctx.settings, source)
    Replicator(store, dest, keep=lambda tenant, sid: (tenant, sid) in own).run_once()
    marked = 0
    with ctx.db.session() as s:
        pending = list(
            s.scalars(
                select(BackupSnapshot).where(
                    BackupSnapshot.target_id == source.id,
                    BackupSnapshot.state == "available",
                    BackupSnapshot.replicated_at.is_(None),
                )
            )
        )
        present: dict[str, set[str]] = {}
        now = utcnow()
        for snap in pending:
            if snap.tenant_id not in present:
                prefix = f"snapshots/{snap.tenant_id}/"
                present[snap.tenant_id] = {k[len(prefix) :].split("/", 1)[0] for k in dest.list(prefix)}
            if snap.id in present[snap.tenant_id]:
                snap.replicated_at, snap.replica_target_id = now, replica.id
                marked += 1
    return marked


def replicate_due(ctx: Context) -> int:
    """One replication pass for every target that is due; returns the snapshots newly replicated."""
    now = utcnow()
    with ctx.db.session() as s:
        due = [
            (t, s.get(BackupTarget, t.replica_target_id))
            for t in s.scalars(select(BackupTarget).where(BackupTarget.replica_target_id.is_not(None)))
            if t.replicated_at is None or t.replicated_at + timedelta(seconds=t.replicate_every_s) <= now
        ]
    marked = 0
    for source, replica in due:
        if replica is None:
            continue
        error = None
        try:
            marked += _replicate(ctx, source, replica)
        except Exception as exc:  # the recovery site unreachable: kept on the target, retried next time
            # shown by the API and logged: never with either target's credentials in it
            error = f"{type(exc).__name__}: {_scrubbed(ctx, str(exc), source, replica)}"
            log.warning("replication of %s to %s failed: %s", source.name, replica.name, error)
        with ctx.db.session() as s:
            row = s.get(BackupTarget, source.id)
            if row is not None:
                row.replicated_at, row.replication_error = utcnow(), error
    return marked


def _scrubbed(ctx: Context, text: str, *targets: BackupTarget) -> str:
    for target in targets:
        try:
            text = scrub(text, vmstore.target_config(ctx.settings, target))
        except Exception:  # credentials that cannot be opened cannot be in the message either
            continue
    return text


def rpo_of(session: Session, runbook: DRRunbook, step: dict[str, Any]) -> dict[str, Any]:
    snap = newest_replicated(session, runbook.project_id, step["vm"])
    target = int(step.get("rpo_target_s") or runbook.rpo_target_s)
    age = (utcnow() - snap.completed_at).total_seconds() if snap and snap.completed_at else None
    return {
        "vm": step["vm"],
        "backup_id": snap.id if snap else None,
        "rpo_s": round(age, 1) if age is not None else None,
        "rpo_target_s": target,
        "rpo_met": age is not None and age <= target,
    }


def check_rpo(ctx: Context) -> list[str]:
    """Raise ``dr.rpo_missed`` for each VM that has just started missing its RPO target."""
    raised: list[str] = []
    with ctx.db.session() as s:
        for runbook in s.scalars(select(DRRunbook)):
            status = [rpo_of(s, runbook, step) for step in runbook.steps]
            missed = sorted(v["vm"] for v in status if not v["rpo_met"])
            before = set(runbook.rpo_missed or [])
            for v in status:
                kind = None
                if not v["rpo_met"] and v["vm"] not in before:
                    kind = "dr.rpo_missed"
                    raised.append(v["vm"])
                elif v["rpo_met"] and v["vm"] in before:
                    kind = "dr.rpo_met"
                if kind:
                    events.publish(
                        s, kind, "dr-runbook", runbook.id, tenant_id=runbook.tenant_id,
                        project_id=runbook.project_id, runbook=runbook.name, **v,
                    )  # fmt: skip
            if missed != sorted(before):
                runbook.rpo_missed = missed
    return raised

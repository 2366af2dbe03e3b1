"""The checks of data protection: secrets and backups encrypted, keys rotated, the audit chain
intact, backups taken and restore-tested within their policy, retention and legal holds.

Read from the real places: ``identity/sealing.py``'s list of sealed columns, each backup target's
own ``config.json`` and tenant-key objects (through the target, as the backup store opens it), the
KEK service, ``signing_keys``, ``identity/audit_chain.py``'s verification walk, ``backup_policies``,
``backup_snapshots``, ``restore_jobs`` and ``dr_runbooks``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from novacron.compliance.checks import FAIL, NA, Outcome, Scope, outcome
from novacron.db.models import (
    BackupPolicy,
    BackupSnapshot,
    BackupTarget,
    DRRunbook,
    MfaTotp,
    RestoreJob,
    SigningKey,
    User,
)
from novacron.identity.encryption import is_sealed, is_secret_field

SIGNING_KEY_MAX_DAYS = 90
KEK_MAX_DAYS = 365
RESTORE_TEST_DAYS = 30
#: a policy's latest backup may be this many intervals old before the policy counts as missed
MISSED_INTERVALS = 2
_SAMPLE = 50


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


# -- encryption ------------------------------------------------------------------------------------


def secrets_sealed(scope: Scope) -> Outcome:
    """Every secret column of ``identity/sealing.py``'s list holds a sealed value, never clear text;
    in a tenant's scope its users' TOTP secrets and its targets' credentials (the platform's keys
    are the platform's)."""
    from novacron.identity.sealing import _text_rows

    s = scope.session
    tenant_users: set[str] | None = None
    if scope.tenant_id is not None:
        tenant_users = set(s.scalars(select(User.id).where(User.tenant_id == scope.tenant_id)))
    places: dict[str, dict[str, int]] = {}
    clear: list[str] = []
    for row, attr, _aad in _text_rows(s):
        if tenant_users is not None:
            owner = row.user_id if isinstance(row, MfaTotp) else getattr(row, "tenant_id", None)
            if owner not in tenant_users and owner != scope.tenant_id:
                continue
        value = getattr(row, attr)
        if value is None:
            continue
        place = f"{type(row).__tablename__}.{attr}"
        counts = places.setdefault(place, {"sealed": 0, "clear": 0})
        sealed = is_sealed(value)
        counts["sealed" if sealed else "clear"] += 1
        if not sealed:
            clear.append(f"{place} of {_row_id(row)} is stored in clear")
    if scope.tenant_id is None:
        for target in s.scalars(select(BackupTarget)):
            for name, value in (target.config or {}).items():
                if is_secret_field(name) and value and not is_sealed(value):
                    clear.append(f"backup target {target.name}: {name} is stored in clear")
    evidence = {"looked_at": "identity/sealing.py sealed columns, backup_targets.config", "places": places}
    evidence["clear"] = clear[:_SAMPLE]
    return outcome(
        clear, "every stored secret is sealed", "{n} secrets in clear: " + "; ".join(clear[:3]), evidence
    )


def _row_id(row: Any) -> str:
    for attr in ("id", "kid", "user_id", "name"):
        if (value := getattr(row, attr, None)) is not None:
            return str(value)
    return "?"


def backup_encryption(scope: Scope) -> Outcome:
    """Each backup target in use is an encrypted store (its ``config.json`` names an AEAD) and each
    tenant key in it is wrapped by a KEK the platform holds."""
    from novacron.backup.vmstore import open_target
    from novacron.identity.kek import key_service

    s = scope.session
    used = select(BackupSnapshot.target_id).where(scope.owned(BackupSnapshot.tenant_id))
    used_p = select(BackupPolicy.target_id).where(scope.owned(BackupPolicy.tenant_id))
    ids = set(s.scalars(used)) | set(s.scalars(used_p))
    if scope.tenant_id is None:
        ids |= set(s.scalars(select(BackupTarget.id)))
    if not ids:
        return Outcome(NA, "no backup target in use", {"looked_at": "backup_targets", "targets": []})
    keks = set(key_service(scope.ctx.settings).kek_ids())
    targets: list[dict[str, Any]] = []
    failures: list[str] = []
    for row in s.scalars(select(BackupTarget).where(BackupTarget.id.in_(ids)).order_by(BackupTarget.name)):
        info: dict[str, Any] = {"target": row.name, "type": row.type}
        try:
            target = open_target(scope.ctx.settings, row)
            info["aead"] = (
                json.loads(target.get("config.json")).get("aead") if target.has("config.json") else None
            )
            tenants = [scope.tenant_id] if scope.tenant_id else None
            info["tenant_keys"] = _tenant_keys(target, tenants, keks, failures, row.name)
        except Exception as exc:  # noqa: BLE001 - an unreachable target is a finding, not a crash
            failures.append(f"backup target {row.name} cannot be read: {exc}")
            info["error"] = str(exc)[:200]
        targets.append(info)
    evidence = {
        "looked_at": "backup targets' config.json and keys/<tenant>.json, KEK service",
        "targets": targets,
    }
    evidence["failures"] = failures[:_SAMPLE]
    return outcome(
        failures,
        "backups are encrypted under keys the platform holds",
        "{n} backup encryption gaps",
        evidence,
    )


def _tenant_keys(
    target: Any, tenants: list[str] | None, keks: set[str], failures: list[str], name: str
) -> dict[str, str]:
    found: dict[str, str] = {}
    keys = tenants if tenants is not None else [k[5:-5] for k in target.list("keys/") if k.endswith(".json")]
    for tenant in keys:
        okey = f"keys/{tenant}.json"
        if not target.has(okey):
            continue
        kek = json.loads(target.get(okey))["wrapped"]["kek"]
        found[tenant] = kek
        if kek not in keks:
            failures.append(
                f"target {name}: tenant {tenant}'s key is wrapped by {kek}, "
                "which the platform no longer holds"
            )
    return found


def keys_rotated(scope: Scope) -> Outcome:
    """The active JWT signing key is younger than ``SIGNING_KEY_MAX_DAYS``; the current file KEK
    younger than ``KEK_MAX_DAYS`` (backup tenant keys and sealed values are re-wrapped under it)."""
    from novacron.identity.kek import key_service

    failures: list[str] = []
    keys = []
    for key in scope.session.scalars(select(SigningKey).where(SigningKey.active.is_(True))):
        age = (scope.now - key.created_at).days
        keys.append({"kid": key.kid, "alg": key.alg, "created_at": _iso(key.created_at), "age_days": age})
        if age > SIGNING_KEY_MAX_DAYS:
            failures.append(f"signing key {key.kid} is {age} days old (max {SIGNING_KEY_MAX_DAYS})")
    service = key_service(scope.ctx.settings)
    kek: dict[str, Any] = {"provider": service.kind, "current": service.current_id}
    if service.kind == "file" and service.dir is not None:
        path = service.dir / f"{service.current_id}.kek"
        if path.exists():
            made = datetime.fromtimestamp(path.stat().st_mtime, tz=scope.now.tzinfo)
            kek |= {"created_at": made.isoformat(), "age_days": (scope.now - made).days}
            if kek["age_days"] > KEK_MAX_DAYS:
                failures.append(
                    f"KEK {service.current_id} is {kek['age_days']} days old (max {KEK_MAX_DAYS})"
                )
    evidence = {"looked_at": "signing_keys, KEK service", "signing_keys": keys, "kek": kek}
    evidence |= {"max_days": {"signing_key": SIGNING_KEY_MAX_DAYS, "kek": KEK_MAX_DAYS}, "failures": failures}
    return outcome(
        failures, "keys rotated within their age", "{n} keys overdue: " + "; ".join(failures), evidence
    )


def audit_chain(scope: Scope) -> Outcome:
    """The audit log's hash chain and signed checkpoints verify (``novacron audit verify``)."""
    from novacron.identity.audit_chain import AuditChain
    from novacron.identity.principal import Principal

    system = Principal("", "compliance", "system", None, frozenset({"global"}), kind="system")
    report = AuditChain(scope.session, system, scope.ctx).verify()
    problems = [
        {"kind": p.kind, "record_id": p.record_id, "seq": p.seq, "detail": p.detail} for p in report.problems
    ]
    evidence = {
        "looked_at": "audit_log hash chain, audit_checkpoints",
        "records": report.records,
        "head_count": report.head_count,
        "checkpoints": report.checkpoints,
        "last_checkpoint": report.last_checkpoint,
        "problems": problems[:_SAMPLE],
    }
    detail = "; ".join(str(p["detail"]) for p in problems[:3])
    return outcome(
        problems,
        f"audit chain intact ({report.records} records)",
        "{n} audit chain problems: " + detail,
        evidence,
    )


# -- backups ---------------------------------------------------------------------------------------


def backups_taken(scope: Scope) -> Outcome:
    """Every enabled backup policy has an available backup younger than ``MISSED_INTERVALS`` of
    its interval."""
    s = scope.session
    policies = list(
        s.scalars(
            select(BackupPolicy).where(BackupPolicy.enabled.is_(True), scope.owned(BackupPolicy.tenant_id))
        )
    )
    if not policies:
        return Outcome(NA, "no backup policy", {"looked_at": "backup_policies", "policies": []})
    rows, missed = [], []
    for p in policies:
        last = s.scalar(
            select(func.max(BackupSnapshot.completed_at)).where(
                BackupSnapshot.policy_id == p.id, BackupSnapshot.state == "available"
            )
        )
        due = timedelta(seconds=p.interval_s * MISSED_INTERVALS)
        ok = last is not None and scope.now - last <= due
        rows.append(
            {
                "policy": p.name,
                "policy_id": p.id,
                "interval_s": p.interval_s,
                "last_backup": _iso(last),
                "ok": ok,
            }
        )
        if not ok:
            missed.append(f"policy {p.name}: last backup {_iso(last) or 'never'}")
    evidence = {"looked_at": "backup_policies, backup_snapshots", "policies": rows[:_SAMPLE]}
    evidence |= {"max_age": f"{MISSED_INTERVALS} intervals", "missed": missed[:_SAMPLE]}
    return outcome(
        missed,
        "every policy's backups are current",
        "{n} policies missed: " + "; ".join(missed[:3]),
        evidence,
    )


def restore_tested(scope: Scope) -> Outcome:
    """Backups were restore-tested (a test restore or a DR drill) in the last ``RESTORE_TEST_DAYS``
    days, and each DR runbook was drilled in that time."""
    s = scope.session
    since = scope.now - timedelta(days=RESTORE_TEST_DAYS)
    backed_up = s.scalar(
        select(func.count())
        .select_from(BackupSnapshot)
        .where(BackupSnapshot.state == "available", scope.owned(BackupSnapshot.tenant_id))
    )
    runbooks = list(s.scalars(select(DRRunbook).where(scope.owned(DRRunbook.tenant_id))))
    if not backed_up and not runbooks:
        return Outcome(NA, "no backups and no DR runbooks", {"looked_at": "backup_snapshots, dr_runbooks"})
    tests = select(func.max(RestoreJob.finished_at)).where(
        RestoreJob.mode.in_(("test", "drill")),
        RestoreJob.state == "succeeded",
        scope.owned(RestoreJob.tenant_id),
    )
    last_test = s.scalar(tests)
    failures = []
    if backed_up and (last_test is None or last_test < since):
        failures.append(
            f"no successful restore test since {since.date()} (last: {_iso(last_test) or 'never'})"
        )
    drills = []
    for rb in runbooks:
        drills.append({"runbook": rb.name, "last_drill_at": _iso(rb.last_drill_at)})
        if rb.last_drill_at is None or rb.last_drill_at < since:
            failures.append(f"DR runbook {rb.name} not drilled since {since.date()}")
    evidence = {"looked_at": "restore_jobs (test, drill), dr_runbooks", "max_days": RESTORE_TEST_DAYS}
    evidence |= {
        "available_backups": backed_up,
        "last_restore_test": _iso(last_test),
        "runbooks": drills[:_SAMPLE],
    }
    evidence["failures"] = failures[:_SAMPLE]
    return outcome(
        failures,
        "restores tested within policy",
        "{n} restore-test gaps: " + "; ".join(failures[:3]),
        evidence,
    )


def retention_holds(scope: Scope) -> Outcome:
    """Every enabled backup policy has a retention (no backup kept forever by omission), and every
    legal hold names its reason."""
    s = scope.session
    policies = list(
        s.scalars(
            select(BackupPolicy).where(BackupPolicy.enabled.is_(True), scope.owned(BackupPolicy.tenant_id))
        )
    )
    held = list(
        s.scalars(
            select(BackupSnapshot).where(
                BackupSnapshot.legal_hold.is_(True), scope.owned(BackupSnapshot.tenant_id)
            )
        )
    )
    if not policies and not held:
        return Outcome(
            NA, "no backup policy and no legal hold", {"looked_at": "backup_policies, backup_snapshots"}
        )
    failures = [
        f"policy {p.name} has no retention: backups are kept forever"
        for p in policies
        if not any((p.retention or {}).values())
    ]
    failures += [f"backup {b.id} is held without a reason" for b in held if not (b.hold_reason or "").strip()]
    evidence = {
        "looked_at": "backup_policies.retention, backup_snapshots.legal_hold",
        "policies": [
            {"policy": p.name, "retention": p.retention, "immutable_s": p.immutable_s} for p in policies
        ][:_SAMPLE],
        "legal_holds": [{"backup_id": b.id, "vm": b.vm_name, "reason": b.hold_reason} for b in held][
            :_SAMPLE
        ],
        "failures": failures[:_SAMPLE],
    }
    return outcome(
        failures,
        "retention set; legal holds documented",
        "{n} retention gaps: " + "; ".join(failures[:3]),
        evidence,
    )


__all__ = ["FAIL"]

"""GDPR for a tenant: the export of its data (Art. 15/20) and the erasure of its personal data (Art. 17).

**Export** (``export``): a zip with one JSON file per table holding the tenant's rows (every
table with a ``tenant_id`` column, and the tenant itself), the audit records about the tenant, and
a manifest. Secrets stay secret: sealed values and password hashes are written as ``"[sealed]"``;
VM disks and backup contents are not in it (they are exported by the image and backup tools).
It is built in memory in the request: ``EXPORT_MAX_ROWS`` bounds it (a larger tenant is refused
with the count, rather than holding the API for minutes).

**Erasure** (``erase``): every user of the tenant is anonymised (username ``erased-<hash>``,
password unusable, disabled, every token, API key and second factor deleted); then the tenant is
deleted with the tenant service's own deletion (which requires a step-up code and refuses while the
tenant still has projects: their VMs and volumes are deleted first, with their own tools). The audit
log keeps the names its records were written with: it is a hash chain kept for accountability
(GDPR Art. 17(3)(b), (e)), and editing it would break the chain.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.orm import Session

from novacron import events
from novacron.db.base import Base, utcnow
from novacron.db.models import (
    ApiKey,
    AuditRecord,
    MfaPasskey,
    MfaRecoveryCode,
    MfaTotp,
    RefreshToken,
    Task,
    Tenant,
    User,
)
from novacron.db.resolve import resolve
from novacron.errors import Conflict, Forbidden, InvalidInput, NotFound
from novacron.identity.encryption import is_sealed
from novacron.identity.tenants import TenantService
from novacron.service import Service
from novacron.tasks.runner import create_task

EXPORT_MAX_ROWS = 200_000
_SECRET_COLUMNS = frozenset(
    {"password_hash", "token_hash", "secret_hash", "key_hash", "private_pem", "code_hash"}
)


def _value(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _SECRET_COLUMNS or is_sealed(value):
        return "[sealed]"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return "[binary]"
    return value


def _tables_of(session: Session, tenant_id: str) -> list[tuple[Table, int]]:
    """Every table holding rows of the tenant (``tenant_id`` column), with how many."""
    found = []
    for table in Base.metadata.sorted_tables:
        if "tenant_id" not in table.c or table.name == "audit_log":
            continue
        count = session.scalar(select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id))
        if count:
            found.append((table, int(count)))
    return found


def _dump(rows: Any) -> str:
    return json.dumps(rows, indent=1, default=str)


def write_export(
    session: Session, tenant: Tenant, by: str, out: Any, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Write the tenant's export zip to ``out`` table by table (``progress``: percent done); returns
    its manifest. Reads only: the caller publishes ``exported`` in a write transaction."""
    tables = _tables_of(session, tenant.id)
    counts: dict[str, int] = {"tenants": 1}
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("tenants.json", _dump([_row(Tenant.__table__, tenant)]))
        for n, (table, _count) in enumerate(tables):
            found = session.execute(select(table).where(table.c.tenant_id == tenant.id)).mappings()
            rows = [{k: _value(k, v) for k, v in r.items()} for r in found]
            counts[table.name] = len(rows)
            z.writestr(f"{table.name}.json", _dump(rows))
            if progress is not None:
                progress(int(90 * (n + 1) / (len(tables) + 1)))
        audit = session.scalars(
            select(AuditRecord).where(AuditRecord.tenant_id == tenant.id).order_by(AuditRecord.id)
        )
        records = [_row(AuditRecord.__table__, a) for a in audit]
        counts["audit_log"] = len(records)
        z.writestr("audit_log.json", _dump(records))
        manifest = {
            "tenant": {"id": tenant.id, "name": tenant.name},
            "exported_at": utcnow().isoformat(),
            "exported_by": by,
            "tables": counts,
            "not_included": "VM disks and backup contents; secrets (written as [sealed])",
        }
        z.writestr("manifest.json", json.dumps(manifest, indent=2))
    return manifest


def exported(session: Session, tenant_id: str, manifest: dict[str, Any]) -> None:
    """The ``tenant.exported`` event of a finished export."""
    by, tables = manifest["exported_by"], manifest["tables"]
    events.publish(session, "tenant.exported", "tenant", tenant_id, tenant_id=tenant_id, tables=tables, by=by)


def _row(table: Any, obj: Any) -> dict[str, Any]:
    return {c.name: _value(c.name, getattr(obj, c.key, None)) for c in table.columns}


class GdprService(Service):
    """Export and erase a tenant: its own administrators export (``compliance:run``); erasure is
    for platform administrators (``tenant:write``), like deleting a tenant."""

    raises = (Forbidden,)

    def _tenant(self, ref: str) -> Tenant:
        return resolve(self.session, self.principal, Tenant, ref)

    def export(self, ref: str) -> tuple[str, bytes]:
        """(file name, zip bytes) of the tenant's rows and audit records, built in this request
        (a tenant of more than ``EXPORT_MAX_ROWS`` rows: ``start_export``, a durable task)."""
        tenant = self._tenant(ref)
        total = sum(count for _table, count in _tables_of(self.session, tenant.id))
        if total > EXPORT_MAX_ROWS:
            raise InvalidInput(
                "tenant_id",
                f"holds {total} rows, more than {EXPORT_MAX_ROWS}: export it with a task (POST .../exports)",
            )
        buf = io.BytesIO()
        exported(self.session, tenant.id, write_export(self.session, tenant, self.principal.username, buf))
        return f"novacron-export-{tenant.name}.zip", buf.getvalue()

    def start_export(self, ref: str) -> Task:
        """The durable task that writes the tenant's export to the state directory, with progress."""
        from novacron.compliance.export_task import TenantExport

        tenant = self._tenant(ref)
        task = create_task(
            self.session,
            TenantExport,
            "tenant",
            tenant.id,
            tenant_id=tenant.id,
            project_id=None,
            params={"by": self.principal.username},
        )
        if self._ctx is not None and self._ctx.tasks is not None:
            self._ctx.tasks.wake()
        return task

    def export_file(self, ref: str, task_id: str) -> tuple[str, Path]:
        """(file name, path) of the export a finished task wrote."""
        from novacron.compliance.export_task import TenantExport, export_path

        tenant = self._tenant(ref)
        task = self.session.get(Task, task_id)
        if task is None or task.kind != TenantExport.kind or task.resource_id != tenant.id:
            raise NotFound("export", task_id)
        path = export_path(self.ctx.settings, task.id)
        if task.state != "succeeded" or not path.exists():
            raise Conflict(
                f"Export {task_id} is {task.state}, not ready: follow it with novacron task watch {task_id}."
            )
        return f"novacron-export-{tenant.name}.zip", path

    def erase(self, ref: str) -> dict[str, Any]:
        """Anonymise the tenant's users, then delete the tenant (see the module docstring)."""
        if not self.principal.is_global:
            raise Forbidden("Erasing a tenant is for platform administrators.")
        tenant = self._tenant(ref)
        users = list(self.session.scalars(select(User).where(User.tenant_id == tenant.id)))
        ids = [u.id for u in users]
        for model in (MfaTotp, MfaPasskey, MfaRecoveryCode, RefreshToken, ApiKey):
            self.session.execute(delete(model).where(model.user_id.in_(ids)))
        for u in users:
            alias = "erased-" + hashlib.sha256(u.id.encode()).hexdigest()[:12]
            self.session.execute(
                update(User)
                .where(User.id == u.id)
                .values(
                    username=alias,
                    password_hash="!erased",
                    disabled=True,
                    tokens_valid_after=utcnow(),
                    last_login_at=None,
                )
            )
        self.session.flush()
        deleted, reason = True, None
        try:
            TenantService(self.session, self.principal, self._ctx).delete(tenant.id)
        except Conflict as exc:
            deleted, reason = False, str(exc)
        result: dict[str, Any] = {
            "tenant_id": tenant.id,
            "users_anonymised": len(ids),
            "tenant_deleted": deleted,
            "kept_because": reason,
        }
        events.publish(
            self.session,
            "tenant.erased",
            "tenant",
            tenant.id,
            tenant_id=None,
            by=self.principal.username,
            **{k: v for k, v in result.items() if k != "tenant_id"},
        )
        return result

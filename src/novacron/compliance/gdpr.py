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
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from novacron import events
from novacron.db.base import Base, utcnow
from novacron.db.models import (
    ApiKey,
    AuditRecord,
    MfaPasskey,
    MfaRecoveryCode,
    MfaTotp,
    RefreshToken,
    Tenant,
    User,
)
from novacron.db.resolve import resolve
from novacron.errors import Conflict, Forbidden, InvalidInput
from novacron.identity.encryption import is_sealed
from novacron.identity.tenants import TenantService
from novacron.service import Service

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


class GdprService(Service):
    """Export and erase a tenant: its own administrators export (``compliance:run``); erasure is
    for platform administrators (``tenant:write``), like deleting a tenant."""

    raises = (Forbidden,)

    def _tenant(self, ref: str) -> Tenant:
        return resolve(self.session, self.principal, Tenant, ref)

    def export(self, ref: str) -> tuple[str, bytes]:
        """(file name, zip bytes) of the tenant's rows and audit records."""
        tenant = self._tenant(ref)
        tables: dict[str, list[dict[str, Any]]] = {"tenants": [self._row(tenant.__table__, tenant)]}
        total = 0
        for table in Base.metadata.sorted_tables:
            if "tenant_id" not in table.c or table.name == "audit_log":
                continue
            count = (
                self.session.scalar(
                    select(func.count()).select_from(table).where(table.c.tenant_id == tenant.id)
                )
                or 0
            )
            total += count
            if total > EXPORT_MAX_ROWS:
                raise InvalidInput(
                    "tenant_id", f"holds more than {EXPORT_MAX_ROWS} rows: too large to export in one request"
                )
            if count:
                found = self.session.execute(select(table).where(table.c.tenant_id == tenant.id)).mappings()
                tables[table.name] = [{k: _value(k, v) for k, v in r.items()} for r in found]
        audit = self.session.scalars(
            select(AuditRecord).where(AuditRecord.tenant_id == tenant.id).order_by(AuditRecord.id)
        )
        tables["audit_log"] = [self._row(AuditRecord.__table__, a) for a in audit]
        manifest = {
            "tenant": {"id": tenant.id, "name": tenant.name},
            "exported_at": utcnow().isoformat(),
            "exported_by": self.principal.username,
            "tables": {name: len(rows) for name, rows in tables.items()},
            "not_included": "VM disks and backup contents; secrets (written as [sealed])",
        }
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("manifest.json", json.dumps(manifest, indent=2))
            for name, rows in tables.items():
                z.writestr(f"{name}.json", json.dumps(rows, indent=1, default=str))
        events.publish(
            self.session,
            "tenant.exported",
            "tenant",
            tenant.id,
            tenant_id=tenant.id,
            tables=manifest["tables"],
            by=self.principal.username,
        )
        return f"novacron-export-{tenant.name}.zip", buf.getvalue()

    @staticmethod
    def _row(table: Any, obj: Any) -> dict[str, Any]:
        return {c.name: _value(c.name, getattr(obj, c.key, None)) for c in table.columns}

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

"""Exporting the audit log for a SIEM: JSON lines, or syslog lines (RFC 5424), oldest first.

Both carry each record's chain position and hash, so what the SIEM keeps can be checked against
the platform's chain later. A tenant-admin's export holds its tenant's records only; a record
there made by a platform administrator (a user of no tenant) acting on the tenant's resources is
marked ``platform_admin``. The export reads in pages of ``_BATCH`` records, each in a read-only
transaction of its own, so a long download holds no transaction and no write lock.

Syslog: facility 13 (log audit), severity notice for a success and warning otherwise,
APP-NAME ``novacron``, MSGID the action, the fields as structured data ``audit@32473`` (32473
is the private enterprise number RFC 5612 sets aside for examples: no number is registered).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select

from novacron.db.base import Database
from novacron.db.models import AuditRecord, User
from novacron.identity.principal import Principal

FORMATS = ("jsonl", "syslog")
_BATCH = 500
_FACILITY_AUDIT = 13
_SD_ID = "audit@32473"


def record_doc(r: AuditRecord, platform_admin: bool) -> dict[str, Any]:
    """A record as the export's JSON object."""
    return {
        "id": r.id,
        "seq": r.seq,
        "time": r.time.isoformat(),
        "actor_id": r.actor_id,
        "actor_name": r.actor_name,
        "platform_admin": platform_admin,
        "tenant_id": r.tenant_id,
        "action": r.action,
        "method": r.method,
        "path": r.path,
        "resource_id": r.resource_id,
        "source_ip": r.source_ip,
        "status_code": r.status_code,
        "outcome": r.outcome,
        "detail": r.detail,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
    }


def _sd_value(value: object) -> str:
    """An SD-PARAM value: ``"``, ``\\`` and ``]`` escaped (RFC 5424 section 6.3.3)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _token(value: str | None, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, or the nil value ``-``."""
    text = "".join(c for c in (value or "") if 33 <= ord(c) <= 126)[:limit]
    return text or "-"


def syslog_line(r: AuditRecord, platform_admin: bool, hostname: str) -> str:
    """One RFC 5424 message for a record (no trailing newline)."""
    severity = 5 if r.outcome == "success" else 4
    doc = record_doc(r, platform_admin)
    params = " ".join(
        f'{name}="{_sd_value(value)}"'
        for name, value in doc.items()
        if value is not None and name not in {"time", "detail"}
    )
    time = r.time.isoformat(timespec="microseconds").replace("+00:00", "Z")
    msg = f"{r.actor_name or '-'} {r.method} {r.path} -> {r.status_code} {r.outcome}"
    if r.detail:
        msg += f" {r.detail}"
    pri = _FACILITY_AUDIT * 8 + severity
    header = f"<{pri}>1 {time} {_token(hostname, 255)} novacron - {_token(r.action, 32)}"
    # a request's path is what the client sent: lone surrogates and the like are written escaped,
    # or the stream would break at the first line UTF-8 cannot encode
    return f"{header} [{_SD_ID} {params}] {msg}".encode(errors="backslashreplace").decode()


def export_lines(db: Database, principal: Principal, fmt: str) -> Iterator[str]:
    """The records ``principal`` may read, oldest first, one line (with its newline) each."""
    hostname = socket.gethostname()
    with db.read_session() as session:
        platform = set(session.scalars(select(User.id).where(User.tenant_id.is_(None))))
    after = 0
    while True:
        stmt = select(AuditRecord).where(AuditRecord.id > after)
        if not principal.is_global:
            stmt = stmt.where(AuditRecord.tenant_id == principal.tenant_id)
        with db.read_session() as session:
            page = list(session.scalars(stmt.order_by(AuditRecord.id).limit(_BATCH)))
            for r in page:
                marked = not principal.is_global and r.actor_id in platform
                if fmt == "syslog":
                    yield syslog_line(r, marked, hostname) + "\n"
                else:
                    yield json.dumps(record_doc(r, marked), separators=(",", ":")) + "\n"
            # read before the session ends: its rollback expires the rows
            after = page[-1].id if page else after
        if len(page) < _BATCH:
            return

"""Audit export lines: whatever a client put in a request's path, a syslog line is valid UTF-8; an
export longer than one read batch streams every record (its second batch once failed on rows the
first batch's session had expired, breaking the stream: found by the API fuzz run)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from novacron.db.base import Database
from novacron.db.migrate import upgrade
from novacron.db.models import AuditRecord
from novacron.identity import audit_export
from novacron.identity.audit_export import syslog_line
from novacron.identity.principal import Principal


def test_a_path_utf8_cannot_encode_is_written_escaped() -> None:
    record = AuditRecord(
        id=7, seq=7, time=datetime(2026, 12, 7, tzinfo=UTC), actor_id="user-1", actor_name="admin",
        tenant_id=None, action="vm.get", method="GET", path="/v1/vms/\\udcff-\udcff", resource_id=None,
        source_ip="127.0.0.1", status_code=404, outcome="failed", detail=None,
    )  # fmt: skip
    line = syslog_line(record, False, "node-1")
    line.encode()  # raises if anything is left that UTF-8 cannot encode
    assert line.startswith("<108>1 2026-12-07T00:00:00.000000Z node-1 novacron - vm.get [audit@32473 ")
    assert "/v1/vms/\\\\udcff-\\udcff" in line


def test_an_export_longer_than_one_batch_streams_every_record(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/a.db")
    upgrade(db)
    with db.session() as s:
        s.add_all(
            AuditRecord(
                actor_name="admin",
                action="vm.get",
                method="GET",
                path=f"/v1/vms/vm-{i}",
                source_ip="127.0.0.1",
                status_code=200,
                outcome="success",
            )  # fmt: skip
            for i in range(audit_export._BATCH + 3)
        )
    admin = Principal("u", "admin", "admin", None, frozenset({"global", "audit:read"}))
    lines = list(audit_export.export_lines(db, admin, "jsonl"))
    assert [json.loads(x)["path"] for x in lines] == [
        f"/v1/vms/vm-{i}" for i in range(audit_export._BATCH + 3)
    ]

"""Audit export lines: whatever a client put in a request's path, a syslog line is valid UTF-8 (a
lone surrogate from a fuzzer broke the export's stream in the middle)."""

from __future__ import annotations

from datetime import UTC, datetime

from novacron.db.models import AuditRecord
from novacron.identity.audit_export import syslog_line


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

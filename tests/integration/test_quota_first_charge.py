"""Two first charges of a counter at once on PostgreSQL (found by bench/bench_scale.py).

A counter row (node, resource) is made on its first charge. When two charges both found it
missing, the one whose insert lost the race (``ON CONFLICT DO NOTHING``: nothing inserted) took the
missing row for a full counter and failed with a KeyError: a 500 to ``POST /v1/vms``, six of the
first creates of the scale run. The race is injected: the other charge's row is committed between
this charge's UPDATE and its insert.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, select

from novacron.db.base import Database, utcnow
from novacron.db.migrate import upgrade
from novacron.db.models import QuotaUsage
from novacron.quota import enforce
from novacron.quota.tree import _SYSTEM_SPEC, SYSTEM, ensure_nodes


def test_a_charge_that_loses_the_first_insert_race_still_counts(
    postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(postgres.create_database("quota_first_charge"))
    try:
        upgrade(db)
        with db.session() as s:
            ensure_nodes(s, [_SYSTEM_SPEC])
            s.execute(
                delete(QuotaUsage).where(QuotaUsage.node_id == SYSTEM, QuotaUsage.resource == "disk_gb")
            )
        real = enforce._ensure_usage_pairs

        def concurrent_first(session: Any, rows: list[Any]) -> bool:
            with db.session() as other:  # the other charge made the row and committed first
                other.add(QuotaUsage(node_id=SYSTEM, resource="disk_gb", used=3))
            return real(session, rows)

        monkeypatch.setattr(enforce, "_ensure_usage_pairs", concurrent_first)
        with db.session() as s:
            enforce.apply(s, [SYSTEM], {"disk_gb": 5}, enforce=False, now=utcnow())
        with db.session() as s:
            used = s.scalar(
                select(QuotaUsage.used).where(QuotaUsage.node_id == SYSTEM, QuotaUsage.resource == "disk_gb")
            )
        assert used == 8  # both charges counted
    finally:
        db.engine.dispose()

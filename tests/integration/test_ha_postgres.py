"""The HA monitor's pass on PostgreSQL (found by bench/bench_scale.py, the scale simulation).

Its load-balancer step read the ACTIVE load balancers with lost legs by JOIN + DISTINCT, which
PostgreSQL refuses (no equality operator for the JSON columns DISTINCT compares): the whole pass
failed every second, so on PostgreSQL no HA VM of a failed host was ever restarted.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from novacron.db.base import Database, utcnow
from novacron.db.migrate import upgrade
from novacron.lbaas import failover


def test_the_ha_pass_runs_on_postgresql(postgres: Any) -> None:
    db = Database(postgres.create_database("ha_pass"))
    try:
        upgrade(db)
        ctx = cast(Any, SimpleNamespace(db=db))
        # nothing to fail over, and no error: before the fix this raised ProgrammingError
        assert failover.recover(ctx, [], utcnow()) is False
    finally:
        db.engine.dispose()

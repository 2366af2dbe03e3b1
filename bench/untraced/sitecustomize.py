"""Imported at start-up by the server process bench/bench_tracing.py runs with this directory on its
PYTHONPATH: the same server with tracing never set up (the baseline of the overhead measured)."""

from __future__ import annotations

from novacron.config import Settings
from novacron.db.base import Database
from novacron.monitoring import tracestore


def _untraced(settings: Settings, db: Database) -> None:
    return None


tracestore.start_node_tracing = _untraced  # type: ignore[assignment]

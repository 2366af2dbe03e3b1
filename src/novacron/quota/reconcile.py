"""Reconciliation: counted usage against what really exists.

Three kinds of drift: a charge whose row is gone (removed behind the platform's back), a row that
holds quota with no charge, and a charge whose amounts differ from the row; then counters that
differ from the sum of the charges below them. ``repair`` fixes all of them (the counters are
locked first on PostgreSQL, in the global order, so concurrent charges wait instead of being lost).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from novacron.db.models import QuotaCharge, QuotaNode, QuotaUsage
from novacron.quota import enforce
from novacron.quota.registry import COUNTERS
from novacron.quota.tree import project_node


def reconcile(session: Session, repair: bool = False) -> dict[str, Any]:
    charges = {(c.kind, c.resource_id): c for c in session.scalars(select(QuotaCharge))}
    missing, orphans, changed = [], [], []
    seen: set[tuple[str, str]] = set()
    for kind, counter in COUNTERS.items():
        for e in counter(session):
            key = (kind, e.resource_id)
            seen.add(key)
            c = charges.get(key)
            if c is None:
                missing.append(
                    {"kind": kind, "id": e.resource_id, "project_id": e.project_id, "amounts": e.amounts}
                )
                if repair:
                    node = project_node(e.project_id)
                    if session.get(QuotaNode, node) is not None:
                        enforce.charge_node(session, node, kind, e.resource_id, e.amounts)
            elif {r: int(v) for r, v in c.amounts.items()} != e.amounts:
                changed.append({"kind": kind, "id": e.resource_id, "charged": c.amounts, "actual": e.amounts})
                if repair:
                    c.amounts = dict(e.amounts)
    for key, c in charges.items():
        if key[0] in COUNTERS and key not in seen:
            orphans.append({"kind": c.kind, "id": c.resource_id, "node": c.node_id, "amounts": c.amounts})
            if repair:
                session.execute(
                    delete(QuotaCharge).where(
                        QuotaCharge.kind == c.kind, QuotaCharge.resource_id == c.resource_id
                    )
                )
    session.flush()
    counters = _counter_drift(session, repair)
    return {
        "repaired": repair,
        "drift": bool(missing or orphans or changed or counters),
        "missing_charges": missing,
        "orphan_charges": orphans,
        "changed_charges": changed,
        "counters": counters,
    }


def _counter_drift(session: Session, repair: bool) -> list[dict[str, Any]]:
    """Each node's counter must equal its own charges plus its descendants' (recomputed bottom-up)."""
    parents = dict(session.execute(select(QuotaNode.id, QuotaNode.parent_id)).all())
    expected: dict[tuple[str, str], int] = defaultdict(int)
    for node_id, amounts in session.execute(select(QuotaCharge.node_id, QuotaCharge.amounts)):
        cur: str | None = node_id
        while cur is not None:
            for r, v in amounts.items():
                expected[(cur, r)] += int(v)
            cur = parents.get(cur)
    # the charges' lock order (resource, then root first), so a repair never deadlocks with them
    stmt = (
        select(QuotaUsage)
        .join(QuotaNode, QuotaNode.id == QuotaUsage.node_id)
        .order_by(QuotaUsage.resource, QuotaNode.depth, QuotaNode.id)
    )
    if repair and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    out = []
    for u in session.scalars(stmt):
        want = expected.pop((u.node_id, u.resource), 0)
        if u.used != want:
            out.append({"node": u.node_id, "resource": u.resource, "counted": u.used, "actual": want})
            if repair:
                session.execute(
                    update(QuotaUsage)
                    .where(QuotaUsage.node_id == u.node_id, QuotaUsage.resource == u.resource)
                    .values(used=want)
                    .execution_options(synchronize_session=False)
                )
    for (node, resource), want in expected.items():
        if want:
            out.append({"node": node, "resource": resource, "counted": 0, "actual": want})
            if repair:
                session.add(QuotaUsage(node_id=node, resource=resource, used=want))
    session.flush()
    return out

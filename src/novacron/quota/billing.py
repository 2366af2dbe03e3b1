"""Prices, monthly budgets, metering into the ledger and the usage report.

Metering reads the real state of resources (the registry's counters: a VM's vCPU and RAM while it
runs, its disk while it exists) and adds unit-hours for the time since the previous run, split at
hour boundaries, into one ledger row per project, resource and hour. The time of the last run is
stored in the same transaction, so a restart or a new leader never counts a second twice.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from novacron.db.base import utcnow
from novacron.db.models import Budget, LedgerEntry, MeterState, Price, Project, QuotaNode
from novacron.errors import FieldError, Forbidden
from novacron.identity.principal import Principal
from novacron.quota import policy
from novacron.quota.policy import Decisions
from novacron.quota.registry import COUNTERS, RESOURCES, RUNTIME_ONLY
from novacron.quota.tree import subtree

BUDGET_RULE = "budget"


def month_of(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def prices(session: Session) -> dict[str, float]:
    return {r: float(p) for r, p in session.execute(select(Price.resource, Price.per_hour))}


def hourly_cost(amounts: dict[str, int], price_list: dict[str, float]) -> float:
    return sum(
        price_list.get(r, 0.0) * n * RESOURCES[r].billing_factor for r, n in amounts.items() if r in RESOURCES
    )


def _projects_under(session: Session, node_id: str) -> list[str]:
    return [n.ref_id for n in subtree(session, node_id) if n.kind == "project" and n.ref_id]


def spent(session: Session, node_id: str, month: str) -> float:
    start, end = month_bounds(month)
    projects = _projects_under(session, node_id)
    if not projects:
        return 0.0
    total = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.cost), 0.0)).where(
            LedgerEntry.project_id.in_(projects), LedgerEntry.hour >= start, LedgerEntry.hour < end
        )
    )
    return float(total or 0.0)


def budget_for(session: Session, node_id: str, month: str) -> Budget | None:
    rows = {
        b.month: b
        for b in session.scalars(
            select(Budget).where(Budget.node_id == node_id, (Budget.month == month) | Budget.month.is_(None))
        )
    }
    return rows.get(month) or rows.get(None)


_ANY_BUDGET = (
    select(Budget.id)
    .where(
        Budget.node_id.in_(bindparam("nodes", expanding=True)),
        (Budget.month == bindparam("month")) | Budget.month.is_(None),
    )
    .limit(1)
)


def check_budget(
    session: Session,
    chain: list[str],
    amounts: dict[str, int],
    principal: Principal,
    override: bool,
    decisions: Decisions,
) -> None:
    """Refuse a create whose first hour would take a tenant's or project's month past its budget,
    unless the caller asked to override and holds ``budget:override``."""
    month = month_of(utcnow())
    scoped = [n for n in chain if n.startswith(("tenant:", "project:"))]
    # most charges meet no budget: one cheap prebuilt query says so before any row is loaded
    if session.connection().execute(_ANY_BUDGET, {"nodes": scoped, "month": month}).first() is None:
        return
    found: dict[str, Budget] = {}
    for b in session.scalars(
        select(Budget).where(Budget.node_id.in_(scoped), (Budget.month == month) | Budget.month.is_(None))
    ):
        if b.node_id not in found or b.month == month:  # this month's budget wins over the standing one
            found[b.node_id] = b
    cost = hourly_cost(amounts, prices(session))
    for node_id in scoped:
        budget = found.get(node_id)
        if budget is None:
            continue
        used = spent(session, node_id, month)
        if used + cost <= budget.amount:
            continue
        numbers = {
            "node": node_id,
            "month": month,
            "spent": round(used, 4),
            "cost_per_hour": round(cost, 4),
            "budget": budget.amount,
        }
        message = (
            f"Rule '{BUDGET_RULE}': node '{node_id}' has spent {used:.2f} of its {month} budget "
            f"{budget.amount:.2f}; this request costs {cost:.2f} per hour."
        )
        if not override:
            raise policy.refused(
                decisions, BUDGET_RULE, message + " A role with budget:override may override.", **numbers
            )
        if not principal.can("budget:override"):
            decisions.add("deny", BUDGET_RULE, message + " Overriding needs budget:override.", **numbers)
            raise Forbidden(
                message + f" Overriding needs the permission budget:override (your role: {principal.role}).",
                fields=[FieldError("budget_override", "needs budget:override")],
                extra={"policy": {"rule": BUDGET_RULE, **numbers}},
            )
        decisions.add(
            "override",
            BUDGET_RULE,
            message + f" Overridden by {principal.username} ({principal.role}).",
            **numbers,
        )


def _hours(start: datetime, end: datetime) -> list[tuple[datetime, float]]:
    """(hour bucket, hours within it) covering [start, end)."""
    out = []
    cur = start
    while cur < end:
        bucket = cur.replace(minute=0, second=0, microsecond=0)
        nxt = min(end, bucket + timedelta(hours=1))
        out.append((bucket, (nxt - cur).total_seconds() / 3600))
        cur = nxt
    return out


def meter(session: Session, now: datetime | None = None) -> dict[str, Any]:
    """Add the consumption since the previous run to the ledger; the first run only starts the clock."""
    now = now or utcnow()
    stmt = select(MeterState).where(MeterState.id == "meter")
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    state = session.scalar(stmt)
    if state is None:
        session.add(MeterState(id="meter", last_at=now))
        session.flush()
        return {"from": None, "to": now.isoformat(), "rows": 0}
    start = state.last_at
    if now <= start:
        return {"from": start.isoformat(), "to": now.isoformat(), "rows": 0}
    spans = _hours(start, now)
    price_list = prices(session)
    acc: dict[tuple[str, str, str, datetime], float] = defaultdict(float)
    for counter in COUNTERS.values():
        for e in counter(session):
            for resource, amount in e.amounts.items():
                if resource not in RESOURCES or (resource in RUNTIME_ONLY and not e.running):
                    continue
                units = amount * RESOURCES[resource].billing_factor
                for bucket, hours in spans:
                    acc[(e.tenant_id, e.project_id, resource, bucket)] += units * hours
    for (tenant_id, project_id, resource, bucket), qty in sorted(acc.items()):
        row = session.scalar(
            select(LedgerEntry).where(
                LedgerEntry.project_id == project_id,
                LedgerEntry.resource == resource,
                LedgerEntry.hour == bucket,
            )
        )
        if row is None:
            row = LedgerEntry(
                tenant_id=tenant_id,
                project_id=project_id,
                resource=resource,
                hour=bucket,
                quantity=0.0,
                cost=0.0,
            )
            session.add(row)
        row.quantity += qty
        row.cost += qty * price_list.get(resource, 0.0)
    state.last_at = now
    session.flush()
    return {"from": start.isoformat(), "to": now.isoformat(), "rows": len(acc)}


def report(session: Session, tenant_id: str, month: str) -> dict[str, Any]:
    start, end = month_bounds(month)
    names = dict(
        session.execute(select(Project.id, Project.name).where(Project.tenant_id == tenant_id)).all()
    )
    rows = session.execute(
        select(
            LedgerEntry.project_id,
            LedgerEntry.resource,
            func.sum(LedgerEntry.quantity),
            func.sum(LedgerEntry.cost),
        )
        .where(LedgerEntry.tenant_id == tenant_id, LedgerEntry.hour >= start, LedgerEntry.hour < end)
        .group_by(LedgerEntry.project_id, LedgerEntry.resource)
        .order_by(LedgerEntry.project_id, LedgerEntry.resource)
    )
    items: list[dict[str, Any]] = []
    for project_id, resource, qty, cost in rows:
        res = RESOURCES.get(resource)
        items.append(
            {
                "project_id": project_id,
                "project": names.get(project_id, project_id),
                "resource": resource,
                "unit": f"{res.billing_unit}-hours" if res else "unit-hours",
                "quantity": round(float(qty), 6),
                "cost": round(float(cost), 6),
            }
        )
    total = round(sum(float(i["cost"]) for i in items), 6)
    node = session.get(QuotaNode, f"tenant:{tenant_id}")
    budget = budget_for(session, node.id, month) if node is not None else None
    return {
        "tenant_id": tenant_id,
        "month": month,
        "items": items,
        "total_cost": total,
        "budget": budget.amount if budget is not None else None,
    }

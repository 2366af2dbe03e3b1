"""Prices, budgets and the usage report as the API offers them (``billing.py`` does the counting)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from novacron.autoscaling.cost import currency_of
from novacron.db.base import new_id, utcnow
from novacron.db.listing import ListParams, paginate
from novacron.db.models import Budget, Price, Project, Tenant
from novacron.db.resolve import resolve, scoped
from novacron.errors import Forbidden, InvalidInput, NotFound, on_field
from novacron.quota import billing, tree
from novacron.quota.registry import RESOURCES
from novacron.service import Service


class UsageService(Service):
    """The price list, metering on demand, and a tenant's monthly usage report."""

    def prices(self) -> list[dict[str, Any]]:
        """Every registered resource's hourly price per billing unit (0 when none is set), in the
        platform's currency."""
        found = billing.prices(self.session)
        currency = currency_of(self._ctx)
        return [
            {
                "resource": r.name,
                "billing_unit": r.billing_unit,
                "per_hour": found.get(r.name, 0.0),
                "currency": currency,
            }
            for r in sorted(RESOURCES.values(), key=lambda r: r.name)
        ]

    def set_price(self, resource: str, per_hour: float) -> None:
        """Set a registered resource's price; metering from now on counts it."""
        if resource not in RESOURCES:
            reason = f"unknown resource; registered: {', '.join(sorted(RESOURCES))}"
            raise on_field(NotFound, "resource", reason, part="path")
        row = self.session.get(Price, resource)
        if row is None:
            self.session.add(Price(resource=resource, per_hour=per_hour))
        else:
            row.per_hour = per_hour

    def report(self, tenant_ref: str | None, month: str | None) -> dict[str, Any]:
        """Metered consumption and cost of a tenant's projects in a month (default: the caller's
        tenant, this month)."""
        ref = tenant_ref or self.principal.tenant_id
        if ref is None:
            raise InvalidInput("tenant_id", "required for platform administrators", part="query")
        tenant = resolve(self.session, self.principal, Tenant, ref)
        report = billing.report(self.session, tenant.id, month or billing.month_of(utcnow()))
        return {**report, "currency": currency_of(self._ctx)}

    def meter(self) -> dict[str, Any]:
        """Meter now instead of at the next hourly run (the ledger covers the time since the last)."""
        return billing.meter(self.session)


@dataclass(frozen=True)
class BudgetSpec:
    """A monthly budget of exactly one of a tenant and a project; ``month`` None: every month."""

    amount: float
    tenant_id: str | None = None
    project_id: str | None = None
    month: str | None = None


@dataclass(frozen=True)
class BudgetState:
    """A budget and what its node has spent in the month it covers (this month for a standing one)."""

    budget: Budget
    spent: float


class BudgetService(Service):
    """Monthly budgets of tenants (set by platform admins) and projects (by their tenant's admins)."""

    def list(self, params: ListParams) -> tuple[list[BudgetState], str | None]:
        """One page of the budgets the caller sees, with what each has spent."""
        stmt = scoped(select(Budget), Budget, self.principal)
        rows, nxt = paginate(self.session, stmt, Budget, params)
        return [self._state(b) for b in rows], nxt

    def set(self, spec: BudgetSpec) -> BudgetState:
        """Set (create or change) the budget of a tenant or a project for a month or every month."""
        node_id, tenant_id = self._node_of(spec)
        month = Budget.month == spec.month if spec.month else Budget.month.is_(None)
        budget = self.session.scalar(select(Budget).where(Budget.node_id == node_id, month))
        if budget is None:
            budget = Budget(
                id=new_id("budget"),
                node_id=node_id,
                tenant_id=tenant_id,
                month=spec.month,
                amount=spec.amount,
            )
            self.session.add(budget)
        else:
            budget.amount = spec.amount
        self.session.flush()
        return self._state(budget)

    def _node_of(self, spec: BudgetSpec) -> tuple[str, str]:
        """The quota node and tenant of the budget's owner, once the caller may set its budget."""
        if (spec.tenant_id is None) == (spec.project_id is None):
            raise InvalidInput("project_id", "name exactly one of tenant_id and project_id")
        if spec.project_id is not None:
            project = self.session.get(Project, spec.project_id)
            if project is None or not self.principal.sees_tenant(project.tenant_id):
                raise on_field(NotFound, "project_id", f"no project '{spec.project_id}' is visible to you")
            return tree.node_for_ref(self.session, project_id=project.id), project.tenant_id
        assert spec.tenant_id is not None
        if not self.principal.is_global:
            raise on_field(Forbidden, "tenant_id", "only platform administrators set a tenant's budget")
        if self.session.get(Tenant, spec.tenant_id) is None:
            raise on_field(NotFound, "tenant_id", f"no tenant '{spec.tenant_id}'")
        return tree.node_for_ref(self.session, tenant_id=spec.tenant_id), spec.tenant_id

    def _state(self, budget: Budget) -> BudgetState:
        month = budget.month or billing.month_of(utcnow())
        return BudgetState(budget, round(billing.spent(self.session, budget.node_id, month), 6))

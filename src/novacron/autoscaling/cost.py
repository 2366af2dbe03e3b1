"""What VMs cost: per VM, per scaling group (a set of VM ids) and per tenant, from the platform's
price list (``quota/billing.py``), and what the same shapes would cost on AWS, Azure and Google Cloud.

A VM's hourly cost is what metering charges for it (``billing.hourly_cost`` of its vCPUs, RAM, disk
and the VM itself); a stopped VM pays for its disk and the VM only, as metering counts it. A month
is 730 hours (the clouds' convention). The cloud side compares compute only: each VM's vCPUs and RAM
are mapped to the cheapest on-demand shape of each cloud with at least as many vCPUs and GiB (a
stopped VM costs nothing there), from the dated list-price tables in ``prices/*.json``; disks are left out of
both sides of that comparison. The tables are in US dollars; when the platform's currency is not,
the figures are printed side by side unconverted and the report says so.

``within_budget`` answers whether a tenant can afford more VMs: the month's spend so far plus its
current hourly run rate (and the extra VMs') until the month ends must stay within the tenant's
monthly budget (the quota area's ``Budget``), and the run rate within an optional maximum per hour.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.db.base import utcnow
from novacron.db.models import VM, Flavor, Tenant
from novacron.db.resolve import resolve, scoped
from novacron.errors import InvalidInput
from novacron.quota import billing
from novacron.quota.registry import COUNTERS, METERED_STATES, RESOURCES, RUNTIME_ONLY, vm_amounts, vm_counts
from novacron.service import Service

if TYPE_CHECKING:
    from novacron.context import Context

HOURS_PER_MONTH = 730.0
CLOUDS = ("aws", "azure", "gcp")
#: the currency the cloud price tables are in
CLOUD_CURRENCY = "USD"


@dataclass(frozen=True)
class Shape:
    """A VM's size."""

    vcpus: int
    ram_mb: int
    disk_gb: int = 0


@dataclass(frozen=True)
class CloudShape:
    """One row of a cloud's price table: an instance type and its on-demand list price."""

    provider: str
    type: str
    vcpus: int
    ram_gib: float
    region: str
    per_hour: float
    as_of: str
    source: str


@functools.cache
def cloud_shapes(provider: str) -> tuple[CloudShape, ...]:
    """The shipped price table of ``provider`` (``aws``, ``azure``, ``gcp``), cheapest first."""
    text = resources.files("novacron.autoscaling").joinpath("prices", f"{provider}.json").read_text()
    rows = json.loads(text)["shapes"]
    shapes = (
        CloudShape(
            provider,
            r["type"],
            int(r["vcpus"]),
            float(r["ram_gib"]),
            r["region"],
            float(r["per_hour"]),
            r["as_of"],
            r["source"],
        )
        for r in rows
    )
    return tuple(sorted(shapes, key=lambda s: (s.per_hour, s.vcpus, s.ram_gib)))


def cheapest_fit(provider: str, shape: Shape) -> CloudShape | None:
    """The cheapest shape of ``provider`` with at least the VM's vCPUs and RAM (None: none is big enough)."""
    need_gib = shape.ram_mb / 1024
    return next((s for s in cloud_shapes(provider) if s.vcpus >= shape.vcpus and s.ram_gib >= need_gib), None)


def hourly(shape: Shape, price_list: dict[str, float], *, running: bool = True) -> float:
    """What metering charges for one VM of ``shape`` per hour (no vCPU and RAM while it is stopped)."""
    amounts = vm_amounts(shape.vcpus, shape.ram_mb, shape.disk_gb)
    if not running:
        amounts = {r: n for r, n in amounts.items() if r not in RUNTIME_ONLY}
    return billing.hourly_cost(amounts, price_list)


def compute_hourly(shape: Shape, price_list: dict[str, float], *, running: bool = True) -> float:
    """The part of ``hourly`` the clouds' instance prices compare with: everything but the disk."""
    return hourly(Shape(shape.vcpus, shape.ram_mb, 0), price_list, running=running)


@dataclass(frozen=True)
class VMCost:
    """One VM's cost per hour and month, and its cheapest fitting shape on each cloud."""

    vm_id: str
    name: str
    tenant_id: str
    project_id: str
    state: str
    flavor: str | None
    shape: Shape
    per_hour: float
    compute_per_hour: float
    clouds: dict[str, CloudShape | None]

    @property
    def running(self) -> bool:
        return self.state in METERED_STATES

    @property
    def per_month(self) -> float:
        return self.per_hour * HOURS_PER_MONTH


@dataclass
class CloudTotal:
    """What the VMs of a report would cost on one cloud (compute), and how many fit no shape."""

    provider: str
    per_hour: float = 0.0
    unmatched: int = 0

    @property
    def per_month(self) -> float:
        return self.per_hour * HOURS_PER_MONTH


@dataclass
class CostReport:
    """The cost of a set of VMs, in the platform's currency, with the clouds' side by side."""

    currency: str
    items: list[VMCost]
    clouds: dict[str, CloudTotal] = field(default_factory=dict)

    @property
    def per_hour(self) -> float:
        return sum(i.per_hour for i in self.items)

    @property
    def compute_per_hour(self) -> float:
        return sum(i.compute_per_hour for i in self.items)

    @property
    def per_month(self) -> float:
        return self.per_hour * HOURS_PER_MONTH

    @property
    def note(self) -> str:
        base = (
            f"Cloud figures are on-demand list prices in {CLOUD_CURRENCY} for vCPUs and RAM only "
            "(no disk, traffic or discounts), as dated in each shape; a month is 730 hours."
        )
        if self.currency != CLOUD_CURRENCY:
            base += f" The platform's prices are in {self.currency}: the two are not converted."
        return base


def vm_cost(vm: VM, flavor: str | None, price_list: dict[str, float]) -> VMCost:
    """One VM's costs as metering counts them, and the cheapest fitting shape of each cloud."""
    shape = Shape(vm.vcpus, vm.ram_mb, vm.disk_gb)
    running = vm.state in METERED_STATES
    return VMCost(
        vm_id=vm.id,
        name=vm.name,
        tenant_id=vm.tenant_id,
        project_id=vm.project_id,
        state=vm.state,
        flavor=flavor,
        shape=shape,
        per_hour=hourly(shape, price_list, running=running),
        compute_per_hour=compute_hourly(shape, price_list, running=running),
        clouds={p: cheapest_fit(p, shape) for p in CLOUDS},
    )


def report_of(vms: Iterable[VMCost], currency: str) -> CostReport:
    """A report over ``vms`` with each cloud's total (a stopped VM costs no compute on a cloud)."""
    items = list(vms)
    totals = {p: CloudTotal(p) for p in CLOUDS}
    for item in items:
        for provider, match in item.clouds.items():
            if match is None:
                totals[provider].unmatched += 1
            elif item.running:
                totals[provider].per_hour += match.per_hour
    return CostReport(currency, items, totals)


def costs_of(session: Session, vms: Sequence[VM], currency: str) -> CostReport:
    """The report of these VM rows (those holding quota: a deleted or failed create costs nothing)."""
    price_list = billing.prices(session)
    flavor_ids = {vm.flavor_id for vm in vms if vm.flavor_id}
    names = dict(session.execute(select(Flavor.id, Flavor.name).where(Flavor.id.in_(flavor_ids))).all())
    counted = [vm for vm in vms if vm_counts(vm.state, vm.host_id, vm.desired_state)]
    counted.sort(key=lambda vm: (vm.project_id, vm.name))
    return report_of((vm_cost(vm, names.get(vm.flavor_id or ""), price_list) for vm in counted), currency)


def tenant_hourly(session: Session, tenant_id: str, price_list: dict[str, float]) -> float:
    """What everything of a tenant costs per hour now, as metering would charge it."""
    total = 0.0
    for counter in COUNTERS.values():
        for e in counter(session):
            if e.tenant_id != tenant_id:
                continue
            amounts = {
                r: n for r, n in e.amounts.items() if r in RESOURCES and (e.running or r not in RUNTIME_ONLY)
            }
            total += billing.hourly_cost(amounts, price_list)
    return total


@dataclass(frozen=True)
class BudgetCheck:
    """Whether a tenant can afford extra VMs, why (or why not), and the numbers it was decided on."""

    ok: bool
    reason: str
    numbers: dict[str, Any]


def within_budget(
    session: Session,
    tenant_id: str,
    extra_vms: Sequence[Shape],
    max_cost_per_hour: float | None = None,
    now: datetime | None = None,
) -> BudgetCheck:
    """Whether ``extra_vms`` (running) keep the tenant within its maximum cost per hour (when one is
    given) and its month's budget: the month's spend so far plus the new hourly run rate until the
    month ends. No budget and no maximum: always within."""
    now = now or utcnow()
    price_list = billing.prices(session)
    rate = tenant_hourly(session, tenant_id, price_list)
    extra = sum(hourly(s, price_list) for s in extra_vms)
    numbers: dict[str, Any] = {"cost_per_hour": round(rate, 6), "extra_per_hour": round(extra, 6)}
    if max_cost_per_hour is not None:
        numbers["max_cost_per_hour"] = max_cost_per_hour
        if rate + extra > max_cost_per_hour:
            return BudgetCheck(
                False,
                f"{rate + extra:.4f} per hour with {len(extra_vms)} more VMs is over the maximum "
                f"{max_cost_per_hour:.4f} per hour",
                numbers,
            )
    month = billing.month_of(now)
    budget = billing.budget_for(session, f"tenant:{tenant_id}", month)
    if budget is None:
        cap = "within the maximum per hour" if max_cost_per_hour is not None else "no maximum per hour"
        return BudgetCheck(True, f"{cap}, and the tenant has no budget", numbers)
    spent = billing.spent(session, f"tenant:{tenant_id}", month)
    hours_left = (billing.month_bounds(month)[1] - now).total_seconds() / 3600
    projected = spent + (rate + extra) * hours_left
    numbers |= {
        "month": month,
        "budget": budget.amount,
        "spent": round(spent, 6),
        "hours_left": round(hours_left, 3),
        "projected": round(projected, 6),
    }
    if projected > budget.amount:
        return BudgetCheck(
            False,
            f"the {month} spend would reach {projected:.2f} of the budget {budget.amount:.2f} "
            f"({spent:.2f} spent, {rate + extra:.4f} per hour for {hours_left:.1f} more hours)",
            numbers,
        )
    return BudgetCheck(True, f"the {month} spend would reach {projected:.2f} of {budget.amount:.2f}", numbers)


def currency_of(ctx: Context | None) -> str:
    """The price list's currency (the ``currency`` setting; US dollars without a context)."""
    return ctx.settings.currency if ctx is not None else CLOUD_CURRENCY


class CostService(Service):
    """Costs of the caller's VMs, of a set of VMs (a scaling group) and of a tenant."""

    @property
    def currency(self) -> str:
        return currency_of(self._ctx)

    def _tenant(self, ref: str | None) -> Tenant:
        ref = ref or self.principal.tenant_id
        if ref is None:
            raise InvalidInput("tenant_id", "required for platform administrators", part="query")
        return resolve(self.session, self.principal, Tenant, ref)

    def tenant(
        self, tenant_ref: str | None, project_id: str | None = None, vm_ids: Sequence[str] | None = None
    ) -> CostReport:
        """The VMs of a tenant (default: the caller's), optionally only those of one project or
        only ``vm_ids`` among them (a scaling group's members)."""
        tenant = self._tenant(tenant_ref)
        stmt = scoped(select(VM), VM, self.principal).where(VM.tenant_id == tenant.id)
        if project_id is not None:
            stmt = stmt.where(VM.project_id == project_id)
        if vm_ids is not None:
            stmt = stmt.where(VM.id.in_(list(vm_ids)))
        return costs_of(self.session, list(self.session.scalars(stmt)), self.currency)

    def within_budget(
        self, tenant_ref: str | None, extra_vms: Sequence[Shape], max_cost_per_hour: float | None = None
    ) -> BudgetCheck:
        """``within_budget`` for a tenant the caller sees (default: its own)."""
        return within_budget(self.session, self._tenant(tenant_ref).id, extra_vms, max_cost_per_hour)

"""/v1/cost: what a tenant's VMs cost (and on the clouds), rightsizing, and the budget check."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from novacron.api.deps import service
from novacron.autoscaling.cost import (
    HOURS_PER_MONTH,
    BudgetCheck,
    CloudShape,
    CostReport,
    CostService,
    Shape,
    VMCost,
)
from novacron.autoscaling.rightsizing import GroupROI, Recommendation, RightsizingReport, RightsizingService

router = APIRouter(prefix="/v1/cost", tags=["cost"])

CostReader = Annotated[CostService, Depends(service(CostService, "usage:read", write=False))]
RightsizingReader = Annotated[
    RightsizingService, Depends(service(RightsizingService, "usage:read", write=False))
]
TenantRef = Annotated[
    str | None, Query(max_length=64, description="a tenant (administrators); default: yours")
]


class CloudShapeOut(BaseModel):
    provider: str
    type: str
    vcpus: int
    ram_gib: float
    region: str
    per_hour: float
    per_month: float
    as_of: str
    source: str

    @classmethod
    def of(cls, s: CloudShape) -> CloudShapeOut:
        return cls(
            provider=s.provider,
            type=s.type,
            vcpus=s.vcpus,
            ram_gib=s.ram_gib,
            region=s.region,
            per_hour=s.per_hour,
            per_month=round(s.per_hour * HOURS_PER_MONTH, 4),
            as_of=s.as_of,
            source=s.source,
        )


class VMCostOut(BaseModel):
    vm_id: str
    name: str
    project_id: str
    state: str
    flavor: str | None
    vcpus: int
    ram_mb: int
    disk_gb: int
    per_hour: float
    per_month: float
    compute_per_hour: float
    clouds: dict[str, CloudShapeOut | None]

    @classmethod
    def of(cls, c: VMCost) -> VMCostOut:
        return cls(
            vm_id=c.vm_id,
            name=c.name,
            project_id=c.project_id,
            state=c.state,
            flavor=c.flavor,
            vcpus=c.shape.vcpus,
            ram_mb=c.shape.ram_mb,
            disk_gb=c.shape.disk_gb,
            per_hour=round(c.per_hour, 6),
            per_month=round(c.per_month, 4),
            compute_per_hour=round(c.compute_per_hour, 6),
            clouds={p: CloudShapeOut.of(s) if s else None for p, s in c.clouds.items()},
        )


class CloudTotalOut(BaseModel):
    per_hour: float
    per_month: float
    unmatched: int


class CostOut(BaseModel):
    currency: str
    per_hour: float
    per_month: float
    compute_per_hour: float
    items: list[VMCostOut]
    clouds: dict[str, CloudTotalOut]
    note: str

    @classmethod
    def of(cls, r: CostReport) -> CostOut:
        return cls(
            currency=r.currency,
            per_hour=round(r.per_hour, 6),
            per_month=round(r.per_month, 4),
            compute_per_hour=round(r.compute_per_hour, 6),
            items=[VMCostOut.of(i) for i in r.items],
            clouds={
                p: CloudTotalOut(
                    per_hour=round(t.per_hour, 6), per_month=round(t.per_month, 4), unmatched=t.unmatched
                )
                for p, t in r.clouds.items()
            },
            note=r.note,
        )


@router.get("", response_model=CostOut)
def tenant_cost(
    costs: CostReader,
    tenant_id: TenantRef = None,
    project_id: Annotated[str | None, Query(max_length=40)] = None,
    vm_id: Annotated[list[str] | None, Query(max_length=1000, description="only these VMs (a group)")] = None,
) -> CostOut:
    """What a tenant's VMs (or some of them) cost per hour and month, VM by VM, and what the same
    shapes would cost on AWS, Azure and Google Cloud (on-demand list prices, dated)."""
    return CostOut.of(costs.tenant(tenant_id, project_id, vm_id))


class RecommendationOut(BaseModel):
    vm_id: str
    name: str
    vcpus: int
    ram_mb: int
    cpu_p95_cores: float | None
    memory_p95_mb: float | None
    status: str
    flavor: str | None
    saving_per_month: float
    reason: str

    @classmethod
    def of(cls, r: Recommendation) -> RecommendationOut:
        return cls(
            vm_id=r.vm_id,
            name=r.name,
            vcpus=r.shape.vcpus,
            ram_mb=r.shape.ram_mb,
            cpu_p95_cores=None if r.usage.cpu_cores is None else round(r.usage.cpu_cores, 4),
            memory_p95_mb=None if r.usage.memory_mb is None else round(r.usage.memory_mb, 1),
            status=r.status,
            flavor=r.flavor,
            saving_per_month=round(r.saving_per_month, 4),
            reason=r.reason,
        )


class RightsizingOut(BaseModel):
    currency: str
    window_s: int
    saving_per_month: float
    items: list[RecommendationOut]

    @classmethod
    def of(cls, r: RightsizingReport) -> RightsizingOut:
        return cls(
            currency=r.currency,
            window_s=r.window_s,
            saving_per_month=round(r.saving_per_month, 4),
            items=[RecommendationOut.of(i) for i in r.items],
        )


@router.get("/rightsizing", response_model=RightsizingOut)
def rightsizing(
    sizing: RightsizingReader,
    tenant_id: TenantRef = None,
    window: Annotated[str, Query(max_length=16, description="how far back: 7d, 12h, seconds")] = "7d",
    vm_id: Annotated[list[str] | None, Query(max_length=1000, description="only these VMs (a group)")] = None,
) -> RightsizingOut:
    """Over- and under-sized running VMs by their p95 CPU and memory over the window, the flavor
    that fits each with headroom, and what changing them saves a month."""
    return RightsizingOut.of(sizing.tenant(tenant_id, window, vm_ids=vm_id))


class ProvisioningOut(BaseModel):
    vm_hours: float
    cost: float
    peak_vms: int


class ROIOut(BaseModel):
    currency: str
    window_s: int
    step_s: int
    steps: int
    members: int
    vcpus_per_vm: int
    per_vm_hour: float
    static: ProvisioningOut
    scaled: ProvisioningOut
    saving: float
    saving_share: float

    @classmethod
    def of(cls, g: GroupROI) -> ROIOut:
        r = g.roi
        hours = r.static.vm_hours or 1.0
        return cls(
            currency=g.currency,
            window_s=g.window_s,
            step_s=g.step_s,
            steps=g.steps,
            members=g.members,
            vcpus_per_vm=g.shape.vcpus,
            per_vm_hour=round(r.static.cost / hours, 6),
            static=ProvisioningOut(
                vm_hours=round(r.static.vm_hours, 4), cost=round(r.static.cost, 4), peak_vms=r.static.peak_vms
            ),
            scaled=ProvisioningOut(
                vm_hours=round(r.scaled.vm_hours, 4), cost=round(r.scaled.cost, 4), peak_vms=r.scaled.peak_vms
            ),
            saving=round(r.saving, 4),
            saving_share=round(r.saving_share, 4),
        )


@router.get("/roi", response_model=ROIOut)
def scaling_roi(
    sizing: RightsizingReader,
    vm_id: Annotated[list[str], Query(min_length=1, max_length=1000, description="the group's VMs")],
    tenant_id: TenantRef = None,
    window: Annotated[str, Query(max_length=16, description="how far back: 7d, 12h, seconds")] = "7d",
    target_util: Annotated[float, Query(gt=0, le=1, description="how busy each VM is run")] = 0.6,
) -> ROIOut:
    """What scaling these VMs to their summed CPU load would have saved over the window against
    running the peak's VMs throughout (VM-hours and cost of each)."""
    return ROIOut.of(sizing.roi(tenant_id, vm_id, window, target_util))


class BudgetCheckOut(BaseModel):
    ok: bool
    reason: str
    numbers: dict[str, Any]

    @classmethod
    def of(cls, c: BudgetCheck) -> BudgetCheckOut:
        return cls(ok=c.ok, reason=c.reason, numbers=c.numbers)


@router.get("/budget-check", response_model=BudgetCheckOut)
def budget_check(  # noqa: PLR0913 - the shape of the VMs asked about
    costs: CostReader,
    vcpus: Annotated[int, Query(ge=1, le=1024)],
    ram_mb: Annotated[int, Query(ge=1, le=1 << 24)],
    disk_gb: Annotated[int, Query(ge=0, le=1 << 20)] = 0,
    count: Annotated[int, Query(ge=0, le=10_000)] = 1,
    max_cost_per_hour: Annotated[float | None, Query(ge=0, le=1e9)] = None,
    tenant_id: TenantRef = None,
) -> BudgetCheckOut:
    """Whether ``count`` more running VMs of this shape keep the tenant within its month's budget
    (spent so far plus the run rate until the month ends) and the maximum cost per hour."""
    return BudgetCheckOut.of(
        costs.within_budget(tenant_id, [Shape(vcpus, ram_mb, disk_gb)] * count, max_cost_per_hour)
    )

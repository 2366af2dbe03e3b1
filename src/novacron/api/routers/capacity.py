"""/v1/capacity/forecast: when the cluster's host groups and subnets run out (administrators)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from novacron.api.deps import service
from novacron.autoscaling.capacity import CapacityService, Forecast, Group, Pool, WhatIf

router = APIRouter(prefix="/v1/capacity", tags=["capacity"])

CapacityReader = Annotated[CapacityService, Depends(service(CapacityService, "host:read", write=False))]


class PoolOut(BaseModel):
    resource: str
    unit: str
    capacity: float
    used: float
    utilisation: float
    history_points: int
    model: str
    exhausted_earliest: datetime | None
    exhausted_expected: datetime | None
    exhausted_latest: datetime | None

    @classmethod
    def of(cls, p: Pool) -> PoolOut:
        return cls(
            resource=p.resource,
            unit=p.unit,
            capacity=round(p.capacity, 3),
            used=round(p.used, 3),
            utilisation=round(p.utilisation, 4),
            history_points=p.history_points,
            model=p.model,
            exhausted_earliest=p.earliest,
            exhausted_expected=p.expected,
            exhausted_latest=p.latest,
        )


class GroupOut(BaseModel):
    name: str
    kind: str
    bottleneck: str | None
    pools: list[PoolOut]

    @classmethod
    def of(cls, g: Group) -> GroupOut:
        return cls(name=g.name, kind=g.kind, bottleneck=g.bottleneck, pools=[PoolOut.of(p) for p in g.pools])


class ForecastOut(BaseModel):
    now: datetime
    horizon_hours: int
    coverage: float
    groups: list[GroupOut]

    @classmethod
    def of(cls, f: Forecast) -> ForecastOut:
        groups = [GroupOut.of(g) for g in f.groups]
        return cls(now=f.now, horizon_hours=f.horizon_hours, coverage=f.coverage, groups=groups)


@router.get("/forecast", response_model=ForecastOut)
def capacity_forecast(  # noqa: PLR0913 - the what-if's questions
    capacity: CapacityReader,
    horizon_days: Annotated[float, Query(gt=0, le=730)] = 90,
    add_hosts: Annotated[int, Query(ge=0, le=10_000, description="what if this many hosts join")] = 0,
    host_cpus: Annotated[int, Query(ge=0, le=4096)] = 0,
    host_ram_mb: Annotated[int, Query(ge=0, le=1 << 30)] = 0,
    host_disk_gb: Annotated[int, Query(ge=0, le=1 << 30)] = 0,
    aggregate: Annotated[str | None, Query(max_length=64, description="the group they join")] = None,
    tenant_id: Annotated[str | None, Query(max_length=40, description="what if this tenant grows")] = None,
    growth_pct_per_month: Annotated[float, Query(ge=-100, le=1000)] = 0,
) -> ForecastOut:
    """When each host group runs out of vCPUs, RAM and disk and each subnet of addresses (earliest,
    expected and latest within the horizon), its bottleneck, and what-if hosts are added or a
    tenant grows by a share a month."""
    whatif = WhatIf(
        add_hosts, host_cpus, host_ram_mb, host_disk_gb, aggregate, tenant_id, growth_pct_per_month / 100
    )
    return ForecastOut.of(capacity.forecast(horizon_days, whatif))

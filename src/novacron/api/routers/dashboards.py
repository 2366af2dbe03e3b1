"""/v1/dashboards: a user's own custom dashboards (panels of tenant-scoped PromQL queries)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.db.listing import ListParams
from novacron.db.models import Dashboard
from novacron.monitoring.dashboards import MAX_PANELS, DashboardService, DashboardSpec, Panel

router = APIRouter(prefix="/v1/dashboards", tags=["dashboards"])
DashboardReader = Annotated[DashboardService, Depends(service(DashboardService, "metrics:read", write=False))]
DashboardWriter = Annotated[DashboardService, Depends(service(DashboardService, "dashboard:write"))]
Listing = Annotated[ListParams, Depends(list_query(("name", "created_at"), "name"))]
NAME = r"^[a-zA-Z0-9][a-zA-Z0-9 _.-]{0,62}$"


class PanelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=100)
    query: str = Field(min_length=1, max_length=2000, description="PromQL over your tenant's series")
    unit: Literal["", "cores", "bytes", "bytes/s", "ops/s", "percent", "seconds", "load", "count"] = ""
    chart: Literal["line", "area", "stat"] = Field(
        default="line", description="line or area chart over time, or stat: the latest value"
    )


class DashboardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    panels: list[PanelIn] = Field(min_length=1, max_length=MAX_PANELS)

    def spec(self) -> DashboardSpec:
        return DashboardSpec(self.name, [Panel(**p.model_dump()) for p in self.panels])


class PanelOut(BaseModel):
    title: str
    query: str
    unit: str
    chart: str


class DashboardOut(BaseModel):
    id: str
    tenant_id: str | None
    user_id: str
    name: str
    panels: list[PanelOut]
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, row: Dashboard) -> DashboardOut:
        return cls.model_validate(row, from_attributes=True)


@router.post("", status_code=201, response_model=DashboardOut)
def create_dashboard(body: DashboardIn, dashboards: DashboardWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    row = dashboards.create(body.spec())
    return idem.created(DashboardOut.of(row), row)


@router.get("", response_model=Page[DashboardOut])
def list_dashboards(
    dashboards: DashboardReader, page: Listing, name: str | None = None
) -> Page[DashboardOut]:
    rows, nxt = dashboards.list(page, name=name)
    return Page[DashboardOut](items=[DashboardOut.of(r) for r in rows], next_cursor=nxt)


@router.get("/{dashboard_id}", response_model=DashboardOut)
def get_dashboard(dashboard_id: str, response: Response, dashboards: DashboardReader) -> DashboardOut:
    row = dashboards.get(dashboard_id)
    set_etag(response, row)
    return DashboardOut.of(row)


@router.put("/{dashboard_id}", response_model=DashboardOut)
def replace_dashboard(
    dashboard_id: str, body: DashboardIn, request: Request, response: Response, dashboards: DashboardWriter
) -> DashboardOut:
    row = dashboards.get(dashboard_id)
    check_if_match(request, row)
    row = dashboards.replace(row, body.spec())
    set_etag(response, row)
    return DashboardOut.of(row)


@router.delete("/{dashboard_id}", status_code=204)
def delete_dashboard(dashboard_id: str, request: Request, dashboards: DashboardWriter) -> Response:
    row = dashboards.get(dashboard_id)
    check_if_match(request, row)
    dashboards.delete(row)
    return Response(status_code=204)

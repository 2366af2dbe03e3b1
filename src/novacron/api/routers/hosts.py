"""/v1/hosts: hypervisor hosts with their capacity, allocation, labels, traits and maintenance state.

Hosts are shared by every tenant: platform administrators see all of a host; tenant roles see a
capacity summary (size, state, free capacity in coarse steps) and never the allocation counters,
heartbeats or underlay addresses, which would show other tenants' VMs coming and going."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.deps import service
from novacron.api.errors import Problem
from novacron.api.listing import Page, list_query
from novacron.api.routers.metrics_query import (
    LIVE_CHART_RESPONSES,
    ChartOut,
    ChartRange,
    ChartReader,
    live_chart_response,
)
from novacron.compute.hosts import HostService, HostSettings, HostView, free_percent
from novacron.db.listing import ListParams
from novacron.db.models import Host

router = APIRouter(prefix="/v1/hosts", tags=["hosts"])

HostReader = Annotated[HostService, Depends(service(HostService, "host:read", write=False))]
HostWriter = Annotated[HostService, Depends(service(HostService, "host:write"))]
HostList = Annotated[ListParams, Depends(list_query(("name", "created_at", "state"), "name"))]

LABEL_KEY = r"^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$"
TRAIT = r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}$"
Labels = dict[Annotated[str, Field(pattern=LABEL_KEY)], Annotated[str, Field(max_length=63)]]
Trait = Annotated[str, Field(pattern=TRAIT)]


class HostOut(BaseModel):
    id: str
    name: str
    state: str
    driver: str
    accelerator: str
    cpus: int
    cpu_model: str
    ram_mb: int
    disk_gb: int
    vcpus_used: int
    ram_mb_used: int
    cpu_allocation_ratio: float
    ram_allocation_ratio: float
    labels: dict[str, str]
    traits: list[str]
    aggregates: list[str]
    last_heartbeat: datetime | None
    underlay_ip: str | None = None

    @classmethod
    def of(cls, view: HostView) -> HostOut:
        h = view.host
        return cls(
            id=h.id,
            name=h.name,
            state=h.state,
            driver=h.driver,
            accelerator=h.accelerator,
            cpus=h.cpus,
            cpu_model=h.cpu_model,
            ram_mb=h.ram_mb,
            disk_gb=h.disk_gb,
            vcpus_used=h.vcpus_used,
            ram_mb_used=h.ram_mb_used,
            cpu_allocation_ratio=h.cpu_allocation_ratio,
            ram_allocation_ratio=h.ram_allocation_ratio,
            labels=dict(h.labels or {}),
            traits=sorted(h.traits or []),
            aggregates=view.aggregates,
            last_heartbeat=h.last_heartbeat,
            underlay_ip=h.underlay_ip,
        )


class HostSummary(BaseModel):
    """What a tenant role sees of a shared host: its size and state, and how free it is in steps of
    25 % (not the allocation counters, which follow other tenants' VMs)."""

    id: str
    name: str
    state: str
    accelerator: str
    cpus: int
    ram_mb: int
    disk_gb: int
    vcpus_free_percent: int
    ram_free_percent: int
    labels: dict[str, str]
    traits: list[str]
    aggregates: list[str]

    @classmethod
    def of(cls, view: HostView) -> HostSummary:
        full, h = HostOut.of(view), view.host
        return cls(
            **full.model_dump(include=set(cls.model_fields) & set(HostOut.model_fields)),
            vcpus_free_percent=free_percent(h.vcpus_used, h.cpus, h.cpu_allocation_ratio),
            ram_free_percent=free_percent(h.ram_mb_used, h.ram_mb, h.ram_allocation_ratio),
        )


class HostUpdate(BaseModel):
    """Administrators' settings of a host; every field is optional and replaces the stored value."""

    model_config = ConfigDict(extra="forbid")
    state: Literal["up", "maintenance"] | None = Field(
        default=None, description="maintenance: the host keeps its VMs but gets no new ones"
    )
    labels: Labels | None = Field(default=None, max_length=64)
    traits: list[Trait] | None = Field(default=None, max_length=64)
    cpu_allocation_ratio: float | None = Field(default=None, gt=0, le=64)
    ram_allocation_ratio: float | None = Field(default=None, gt=0, le=16)


def host_etag(h: Host) -> str:
    """The ETag covers what an administrator sets, not heartbeats and counters that change every second."""
    config = json.dumps(
        [h.state, h.labels or {}, sorted(h.traits or []), h.cpu_allocation_ratio, h.ram_allocation_ratio],
        sort_keys=True,
    )
    return f'"{h.id}.{hashlib.sha256(config.encode()).hexdigest()[:16]}"'


def _check_if_match(request: Request, h: Host) -> None:
    expected = request.headers.get("if-match")
    if expected is None or expected.strip() == "*":
        return
    if host_etag(h) not in {tag.strip().removeprefix("W/") for tag in expected.split(",")}:
        raise Problem(
            412,
            "Precondition Failed",
            f"Host '{h.name}' changed since you read it (now {host_etag(h)}); GET it again and retry.",
        )


@router.get("", response_model=Page[HostOut] | Page[HostSummary])
def list_hosts(
    hosts: HostReader, page: HostList, state: str | None = None
) -> Page[HostOut] | Page[HostSummary]:
    rows, nxt = hosts.list(page, state=state)
    if hosts.sees_all:
        return Page[HostOut](items=[HostOut.of(h) for h in rows], next_cursor=nxt)
    return Page[HostSummary](items=[HostSummary.of(h) for h in rows], next_cursor=nxt)


@router.get("/{host_id}", response_model=HostOut | HostSummary)
def get_host(host_id: str, response: Response, hosts: HostReader) -> HostOut | HostSummary:
    view = hosts.get(host_id)
    response.headers["ETag"] = host_etag(view.host)
    # platform administrators see the whole host; every other role a capacity summary
    return HostOut.of(view) if hosts.sees_all else HostSummary.of(view)


@router.patch("/{host_id}", response_model=HostOut)
def update_host(
    host_id: str, body: HostUpdate, request: Request, response: Response, hosts: HostWriter
) -> HostOut:
    """Labels, traits, allocation ratios and maintenance; honours ``If-Match``."""
    host = hosts.get(host_id).host
    _check_if_match(request, host)
    view = hosts.update(host, HostSettings(**body.model_dump(exclude_unset=True, exclude_none=True)))
    response.headers["ETag"] = host_etag(view.host)
    return HostOut.of(view)


@router.get("/{host_id}/metrics", response_model=ChartOut)
def host_metrics(host_id: str, charts: ChartReader, chart_range: ChartRange = "1h") -> Response:
    """The host's chart over ``range`` from the metrics store (platform administrators)."""
    return ChartOut.response(charts.host_chart(host_id, chart_range or "1h"))


@router.get("/{host_id}/metrics/live", response_class=StreamingResponse, responses=LIVE_CHART_RESPONSES)
def host_metrics_live(host_id: str, charts: ChartReader) -> StreamingResponse:
    """The host's live 5-minute chart pushed as server-sent events, as for a VM (platform
    administrators)."""
    return live_chart_response(charts.host_live(host_id))

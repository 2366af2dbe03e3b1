"""/v1/hosts: hypervisor hosts with their capacity and allocation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.api.deps import SessionDep, require
from novacron.api.errors import not_found
from novacron.api.listing import ListParams, Page, paginate
from novacron.compute.scheduler import host_usage
from novacron.db.models import Host
from novacron.identity.principal import Principal

router = APIRouter(prefix="/v1/hosts", tags=["hosts"])

CanHostRead = Annotated[Principal, Depends(require("host:read"))]


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
    last_heartbeat: datetime | None

    @classmethod
    def of(cls, session: Session, h: Host) -> HostOut:
        usage = host_usage(session, h)
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
            vcpus_used=usage.vcpus_used,
            ram_mb_used=usage.ram_mb_used,
            cpu_allocation_ratio=h.cpu_allocation_ratio,
            ram_allocation_ratio=h.ram_allocation_ratio,
            last_heartbeat=h.last_heartbeat,
        )


@router.get("", response_model=Page[HostOut])
def list_hosts(
    session: SessionDep,
    principal: CanHostRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "name",
    state: str | None = None,
) -> Page[HostOut]:
    stmt = select(Host)
    if state is not None:
        stmt = stmt.where(Host.state == state)
    rows, nxt = paginate(
        session, stmt, Host, ListParams(limit, cursor, sort), ("name", "created_at", "state")
    )
    return Page[HostOut](items=[HostOut.of(session, h) for h in rows], next_cursor=nxt)


@router.get("/{host_id}", response_model=HostOut)
def get_host(host_id: str, session: SessionDep, principal: CanHostRead) -> HostOut:
    host = session.scalar(select(Host).where((Host.id == host_id) | (Host.name == host_id)))
    if host is None:
        raise not_found("host", host_id)
    return HostOut.of(session, host)

"""/v1/flavors: VM sizes, defined by administrators, readable by all."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from novacron import events
from novacron.api.concurrency import Idempotency, set_etag
from novacron.api.deps import ReadSessionDep, SessionDep, require
from novacron.api.errors import Problem, invalid, name_taken, not_found
from novacron.api.listing import ListParams, Page, paginate
from novacron.api.routers.hosts import Trait
from novacron.db.base import new_id
from novacron.db.models import VM, Flavor
from novacron.identity.principal import Principal

router = APIRouter(prefix="/v1/flavors", tags=["flavors"])

CanFlavorRead = Annotated[Principal, Depends(require("flavor:read"))]
CanFlavorWrite = Annotated[Principal, Depends(require("flavor:write"))]


class FlavorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    vcpus: int = Field(ge=1, le=64)
    ram_mb: int = Field(ge=64, le=262144)
    disk_gb: int = Field(ge=0, le=16384)
    required_traits: list[Trait] = Field(
        default_factory=list,
        max_length=32,
        description="host traits a VM of this flavor needs (gpu, hw:avx512)",
    )
    forbidden_traits: list[Trait] = Field(
        default_factory=list, max_length=32, description="host traits a VM of this flavor must not land on"
    )


class FlavorOut(BaseModel):
    id: str
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    required_traits: list[str]
    forbidden_traits: list[str]
    created_at: datetime

    @classmethod
    def of(cls, f: Flavor) -> FlavorOut:
        return cls(
            id=f.id,
            name=f.name,
            vcpus=f.vcpus,
            ram_mb=f.ram_mb,
            disk_gb=f.disk_gb,
            required_traits=list(f.required_traits or []),
            forbidden_traits=list(f.forbidden_traits or []),
            created_at=f.created_at,
        )


@router.get("", response_model=Page[FlavorOut])
def list_flavors(
    session: ReadSessionDep,
    principal: CanFlavorRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "name",
    name: str | None = None,
) -> Page[FlavorOut]:
    stmt = select(Flavor)
    if name is not None:
        stmt = stmt.where(Flavor.name == name)
    rows, nxt = paginate(
        session, stmt, Flavor, ListParams(limit, cursor, sort), ("name", "created_at", "vcpus", "ram_mb")
    )
    return Page[FlavorOut](items=[FlavorOut.of(f) for f in rows], next_cursor=nxt)


@router.post("", status_code=201, response_model=FlavorOut)
def create_flavor(
    body: FlavorCreate, request: Request, session: SessionDep, principal: CanFlavorWrite
) -> Response:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    if session.scalar(select(Flavor.id).where(Flavor.name == body.name)):
        raise name_taken("flavor", body.name, "body.name", scope="in this platform")
    both = set(body.required_traits) & set(body.forbidden_traits)
    if both:
        raise invalid("body.forbidden_traits", f"also required: {', '.join(sorted(both))}")
    fields = body.model_dump()
    fields["required_traits"] = sorted(set(body.required_traits))
    fields["forbidden_traits"] = sorted(set(body.forbidden_traits))
    flavor = Flavor(id=new_id("flv"), **fields)
    session.add(flavor)
    session.flush()
    events.publish(session, "flavor.created", "flavor", flavor.id, tenant_id=None, name=flavor.name)
    out = FlavorOut.of(flavor).model_dump(mode="json")
    idem.remember(201, out)
    return JSONResponse(out, status_code=201)


@router.get("/{flavor_id}", response_model=FlavorOut)
def get_flavor(
    flavor_id: str, response: Response, session: ReadSessionDep, principal: CanFlavorRead
) -> FlavorOut:
    flavor = session.scalar(select(Flavor).where((Flavor.id == flavor_id) | (Flavor.name == flavor_id)))
    if flavor is None:
        raise not_found("flavor", flavor_id)
    set_etag(response, flavor)
    return FlavorOut.of(flavor)


@router.delete("/{flavor_id}", status_code=204)
def delete_flavor(flavor_id: str, session: SessionDep, principal: CanFlavorWrite) -> Response:
    flavor = session.scalar(select(Flavor).where((Flavor.id == flavor_id) | (Flavor.name == flavor_id)))
    if flavor is None:
        raise not_found("flavor", flavor_id)
    if session.scalar(select(VM.id).where(VM.flavor_id == flavor.id).limit(1)):
        raise Problem(409, "Conflict", f"Flavor '{flavor.name}' is used by VMs; resize or delete them first.")
    events.publish(session, "flavor.deleted", "flavor", flavor.id, tenant_id=None, name=flavor.name)
    session.delete(flavor)
    return Response(status_code=204)

"""/v1/gslb: global names answered from several sites (a tenant's), and the CIDR → region table
(the platform's) that picks a client's nearest sites."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.db.listing import ListParams
from novacron.db.models import GslbName, GslbRegion
from novacron.gslb.model import MAX_SITES, MAX_TTL, MAX_WEIGHT, MIN_TTL, MIN_WEIGHT
from novacron.gslb.service import GslbNameService, GslbRegionService, NameSpec, SiteSpec

router = APIRouter(prefix="/v1/gslb", tags=["gslb"])
NameReader = Annotated[GslbNameService, Depends(service(GslbNameService, "gslb:read", write=False))]
NameWriter = Annotated[GslbNameService, Depends(service(GslbNameService, "gslb:write"))]
RegionReader = Annotated[GslbRegionService, Depends(service(GslbRegionService, "gslb:read", write=False))]
RegionWriter = Annotated[GslbRegionService, Depends(service(GslbRegionService, "gslb-region:write"))]
NameList = Annotated[ListParams, Depends(list_query(("name", "created_at"), "name"))]
RegionList = Annotated[ListParams, Depends(list_query(("cidr", "region", "created_at"), "cidr"))]


class SiteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str | None = Field(
        default=None,
        max_length=64,
        description="the site's public VIP (IPv4: answered to A queries, IPv6: AAAA); "
        "with loadbalancer_id: none, or that load balancer's address",
    )
    port: int = Field(ge=1, le=65535, description="the VIP's listener port, checked by TCP connect")
    region: str = Field(max_length=32, description="where the site is (a region of /v1/gslb/regions)")
    weight: int = Field(default=1, ge=MIN_WEIGHT, le=MAX_WEIGHT, description="its share among healthy sites")
    monitor_path: str | None = Field(
        default=None, max_length=201, description="check with an HTTP GET of this path (200 = up) instead"
    )
    loadbalancer_id: str | None = Field(
        default=None,
        max_length=40,
        description="one of your load balancers: the site is its floating IP, else its VIP (followed "
        "when it changes); port must be one of its listeners'",
    )


class NameIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=254, description="a DNS name under the platform's GSLB zone")
    ttl: int = Field(default=30, ge=MIN_TTL, le=MAX_TTL, description="seconds resolvers keep an answer")
    sites: list[SiteIn] = Field(min_length=1, max_length=MAX_SITES)

    def spec(self) -> NameSpec:
        return NameSpec(self.name, self.ttl, [SiteSpec(**s.model_dump()) for s in self.sites])


class SiteOut(BaseModel):
    #: a load balancer's site: its address when the name was last written (DNS answers its current one)
    address: str
    port: int
    region: str
    weight: int
    monitor_path: str | None
    loadbalancer_id: str | None


class NameOut(BaseModel):
    id: str
    tenant_id: str
    name: str
    ttl: int
    sites: list[SiteOut]
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, row: GslbName) -> NameOut:
        return cls.model_validate(row, from_attributes=True)


class RegionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cidr: str = Field(max_length=64, description="clients in this network (address or EDNS client subnet)")
    region: str = Field(max_length=32, description="are nearest to the sites of this region")


class RegionOut(BaseModel):
    id: str
    cidr: str
    region: str
    created_at: datetime

    @classmethod
    def of(cls, row: GslbRegion) -> RegionOut:
        return cls.model_validate(row, from_attributes=True)


@router.post("/names", status_code=201, response_model=NameOut)
def create_name(body: NameIn, names: NameWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    row = names.create(body.spec())
    return idem.created(NameOut.of(row), row)


@router.get("/names", response_model=Page[NameOut])
def list_names(names: NameReader, page: NameList, name: str | None = None) -> Page[NameOut]:
    rows, nxt = names.list(page, name=name)
    return Page[NameOut](items=[NameOut.of(r) for r in rows], next_cursor=nxt)


@router.get("/names/{name_id}", response_model=NameOut)
def get_name(name_id: str, response: Response, names: NameReader) -> NameOut:
    row = names.get(name_id)
    set_etag(response, row)
    return NameOut.of(row)


@router.put("/names/{name_id}", response_model=NameOut)
def replace_name(
    name_id: str, body: NameIn, request: Request, response: Response, names: NameWriter
) -> NameOut:
    row = names.get(name_id)
    check_if_match(request, row)
    row = names.replace(row, body.spec())
    set_etag(response, row)
    return NameOut.of(row)


@router.delete("/names/{name_id}", status_code=204)
def delete_name(name_id: str, request: Request, names: NameWriter) -> Response:
    row = names.get(name_id)
    check_if_match(request, row)
    names.delete(row)
    return Response(status_code=204)


@router.post("/regions", status_code=201, response_model=RegionOut)
def create_region(body: RegionIn, regions: RegionWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    row = regions.create(body.cidr, body.region)
    return idem.created(RegionOut.of(row), row)


@router.get("/regions", response_model=Page[RegionOut])
def list_regions(regions: RegionReader, page: RegionList, region: str | None = None) -> Page[RegionOut]:
    rows, nxt = regions.list(page, region=region)
    return Page[RegionOut](items=[RegionOut.of(r) for r in rows], next_cursor=nxt)


@router.delete("/regions/{rule_id}", status_code=204)
def delete_region(rule_id: str, regions: RegionWriter) -> Response:
    regions.delete(rule_id)
    return Response(status_code=204)

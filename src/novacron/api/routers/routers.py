"""/v1/routers and /v1/floating-ips: routing between a tenant's subnets, SNAT and DNAT outward.

A router's leg on a subnet is a port holding the subnet's gateway address; its gateway is a port
on an external network (SNAT source). A floating IP holds an address on an external network and,
once associated with a port, is DNAT'ed to it by the router joining that port's network to the
external one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.api.routers.networks import NAME
from novacron.db.listing import ListParams
from novacron.db.models import FloatingIP, Router
from novacron.network.floating import FloatingIPService, NewFloatingIP
from novacron.network.routers import NewRouter, RouterLegs, RouterService

router = APIRouter(tags=["routers"])

RouterReader = Annotated[RouterService, Depends(service(RouterService, "network:read", write=False))]
RouterWriter = Annotated[RouterService, Depends(service(RouterService, "network:write"))]
RouterList = Annotated[ListParams, Depends(list_query(("created_at", "name")))]
FloatingReader = Annotated[
    FloatingIPService, Depends(service(FloatingIPService, "network:read", write=False))
]
FloatingWriter = Annotated[FloatingIPService, Depends(service(FloatingIPService, "network:write"))]
FloatingList = Annotated[ListParams, Depends(list_query(("created_at",)))]


class RouterCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    project_id: str | None = Field(default=None, max_length=40)
    external_network: str | None = Field(default=None, max_length=64, description="gateway network")
    snat: bool = True


class InterfaceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subnet: str = Field(min_length=1, max_length=64, description="subnet id or name")


class GatewayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: str = Field(min_length=1, max_length=64, description="external network id or name")
    snat: bool = True


class RouterOut(BaseModel):
    id: str
    name: str
    project_id: str
    tenant_id: str
    external_network_id: str | None
    external_ip: str | None
    snat: bool
    interfaces: list[dict[str, str]]
    created_at: datetime
    version: int

    @classmethod
    def of(cls, r: Router, legs: RouterLegs) -> RouterOut:
        return cls(
            id=r.id,
            name=r.name,
            project_id=r.project_id,
            tenant_id=r.tenant_id,
            external_network_id=r.external_network_id,
            external_ip=legs.external_ip,
            snat=r.snat,
            interfaces=legs.interfaces,
            created_at=r.created_at,
            version=r.version,
        )


@router.get("/v1/routers", response_model=Page[RouterOut])
def list_routers(routers: RouterReader, page: RouterList, name: str | None = None) -> Page[RouterOut]:
    rows, nxt = routers.list(page, name=name)
    return Page[RouterOut](items=[RouterOut.of(r, routers.legs(r)) for r in rows], next_cursor=nxt)


@router.post("/v1/routers", status_code=201, response_model=RouterOut)
def create_router(body: RouterCreate, routers: RouterWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    r = routers.create(NewRouter(**body.model_dump()))
    return idem.created(RouterOut.of(r, routers.legs(r)), r)


@router.get("/v1/routers/{router_id}", response_model=RouterOut)
def get_router(router_id: str, response: Response, routers: RouterReader) -> RouterOut:
    r = routers.get(router_id)
    set_etag(response, r)
    return RouterOut.of(r, routers.legs(r))


@router.post("/v1/routers/{router_id}/interfaces", response_model=RouterOut)
def add_interface(router_id: str, body: InterfaceIn, request: Request, routers: RouterWriter) -> RouterOut:
    r = routers.get(router_id)
    check_if_match(request, r)
    routers.add_interface(r, body.subnet)
    return RouterOut.of(r, routers.legs(r))


@router.delete("/v1/routers/{router_id}/interfaces/{subnet_id}", response_model=RouterOut)
def remove_interface(router_id: str, subnet_id: str, routers: RouterWriter) -> RouterOut:
    r = routers.remove_interface(router_id, subnet_id)
    return RouterOut.of(r, routers.legs(r))


@router.put("/v1/routers/{router_id}/gateway", response_model=RouterOut)
def set_gateway(router_id: str, body: GatewayIn, request: Request, routers: RouterWriter) -> RouterOut:
    r = routers.get(router_id)
    check_if_match(request, r)
    routers.set_gateway(r, body.network, body.snat)
    return RouterOut.of(r, routers.legs(r))


@router.delete("/v1/routers/{router_id}/gateway", response_model=RouterOut)
def clear_gateway(router_id: str, routers: RouterWriter) -> RouterOut:
    r = routers.clear_gateway(router_id)
    return RouterOut.of(r, routers.legs(r))


@router.delete("/v1/routers/{router_id}", status_code=204)
def delete_router(router_id: str, request: Request, routers: RouterWriter) -> Response:
    r = routers.get(router_id)
    check_if_match(request, r)
    routers.delete(r)
    return Response(status_code=204)


# ---- floating IPs ------------------------------------------------------------------------------


class FloatingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: str = Field(min_length=1, max_length=64, description="external network id or name")
    project_id: str | None = Field(default=None, max_length=40)
    port: str | None = Field(default=None, max_length=64, description="associate at once")


class FloatingUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: str | None = Field(description="the port to DNAT to; null dissociates")


class FloatingOut(BaseModel):
    id: str
    ip: str
    network_id: str
    project_id: str
    tenant_id: str
    port_id: str | None
    router_id: str | None
    fixed_ip: str | None
    created_at: datetime
    version: int

    @classmethod
    def of(cls, f: FloatingIP, fixed_ip: str | None) -> FloatingOut:
        return cls(
            id=f.id,
            ip=f.ip,
            network_id=f.network_id,
            project_id=f.project_id,
            tenant_id=f.tenant_id,
            port_id=f.port_id,
            router_id=f.router_id,
            fixed_ip=fixed_ip,
            created_at=f.created_at,
            version=f.version,
        )


@router.get("/v1/floating-ips", response_model=Page[FloatingOut])
def list_floating(fips: FloatingReader, page: FloatingList) -> Page[FloatingOut]:
    rows, nxt = fips.list(page)
    return Page[FloatingOut](items=[FloatingOut.of(f, fips.fixed_ip(f)) for f in rows], next_cursor=nxt)


@router.post("/v1/floating-ips", status_code=201, response_model=FloatingOut)
def create_floating(body: FloatingCreate, fips: FloatingWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    fip = fips.create(NewFloatingIP(**body.model_dump()))
    return idem.created(FloatingOut.of(fip, fips.fixed_ip(fip)), fip)


@router.get("/v1/floating-ips/{fip_id}", response_model=FloatingOut)
def get_floating(fip_id: str, response: Response, fips: FloatingReader) -> FloatingOut:
    fip = fips.get(fip_id)
    set_etag(response, fip)
    return FloatingOut.of(fip, fips.fixed_ip(fip))


@router.patch("/v1/floating-ips/{fip_id}", response_model=FloatingOut)
def update_floating(
    fip_id: str, body: FloatingUpdate, request: Request, response: Response, fips: FloatingWriter
) -> FloatingOut:
    fip = fips.get(fip_id)
    check_if_match(request, fip)
    fips.associate(fip, body.port)
    set_etag(response, fip)
    return FloatingOut.of(fip, fips.fixed_ip(fip))


@router.delete("/v1/floating-ips/{fip_id}", status_code=204)
def delete_floating(fip_id: str, request: Request, fips: FloatingWriter) -> Response:
    fip = fips.get(fip_id)
    check_if_match(request, fip)
    fips.delete(fip)
    return Response(status_code=204)

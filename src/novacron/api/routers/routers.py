"""/v1/routers and /v1/floating-ips: routing between a tenant's subnets, SNAT and DNAT outward.

A router's leg on a subnet is a port holding the subnet's gateway address; its gateway is a port
on an external network (SNAT source). A floating IP holds an address on an external network and,
once associated with a port, is DNAT'ed to it by the router joining that port's network to the
external one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events
from novacron.api.concurrency import Idempotency, check_if_match, set_etag
from novacron.api.deps import ReadSessionDep, SessionDep, require
from novacron.api.errors import Problem, invalid, name_taken
from novacron.api.listing import Page
from novacron.api.routers.networks import NAME
from novacron.compute.scope import get_visible, resolve_project, scoped
from novacron.db.base import new_id, utcnow
from novacron.db.listing import ListParams, paginate
from novacron.db.models import FloatingIP, Network, Port, Project, Router, Subnet
from novacron.errors import DomainError
from novacron.identity.principal import Principal
from novacron.network import service
from novacron.network.specs import internal_ipv4
from novacron.network.sync import syncing
from novacron.quota import enforce as quota

router = APIRouter(tags=["routers"])

CanRead = Annotated[Principal, Depends(require("network:read"))]
CanWrite = Annotated[Principal, Depends(require("network:write"))]


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
    def of(cls, session: Session, r: Router) -> RouterOut:
        interfaces: list[dict[str, str]] = []
        external_ip = None
        for port in session.scalars(select(Port).where(Port.router_id == r.id).order_by(Port.created_at)):
            for fixed in service.fixed_ips(session, port.id):
                if port.owner == "router_gateway":
                    external_ip = external_ip or fixed["ip"]
                else:
                    interfaces.append({"port_id": port.id, "network_id": port.network_id, **fixed})
        return cls(
            id=r.id,
            name=r.name,
            project_id=r.project_id,
            tenant_id=r.tenant_id,
            external_network_id=r.external_network_id,
            external_ip=external_ip,
            snat=r.snat,
            interfaces=interfaces,
            created_at=r.created_at,
            version=r.version,
        )


def _external(session: Session, principal: Principal, ref: str, field: str) -> Network:
    network = service.find_network(session, principal, ref, field)
    if not network.external:
        raise invalid(field, f"network '{network.name}' is not external")
    return network


def _set_gateway(session: Session, principal: Principal, r: Router, network: Network, field: str) -> None:
    project = session.get(Project, r.project_id)
    assert project is not None
    r.external_network_id = network.id
    session.flush()
    service.create_port(
        session,
        principal,
        project,
        network,
        field=field,
        router=r,
        owner="router_gateway",
        name=f"gw-{r.name}",
    )


def _clear_gateway(session: Session, r: Router) -> None:
    for port in session.scalars(select(Port).where(Port.router_id == r.id, Port.owner == "router_gateway")):
        service.delete_port(session, port)
    for fip in session.scalars(select(FloatingIP).where(FloatingIP.router_id == r.id)):
        fip.router_id, fip.port_id = None, None
    r.external_network_id = None


@router.get("/v1/routers", response_model=Page[RouterOut])
def list_routers(
    session: ReadSessionDep,
    principal: CanRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "created_at",
    name: str | None = None,
) -> Page[RouterOut]:
    stmt = scoped(select(Router), Router, principal)
    if name is not None:
        stmt = stmt.where(Router.name == name)
    rows, nxt = paginate(session, stmt, Router, ListParams(limit, cursor, sort, ("created_at", "name")))
    return Page[RouterOut](items=[RouterOut.of(session, r) for r in rows], next_cursor=nxt)


@router.post("/v1/routers", status_code=201, response_model=RouterOut)
def create_router(body: RouterCreate, request: Request, session: SessionDep, principal: CanWrite) -> Response:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    project = resolve_project(session, principal, body.project_id)
    if session.scalar(select(Router.id).where(Router.project_id == project.id, Router.name == body.name)):
        raise name_taken("router", body.name, "body.name")
    with syncing(session, project.tenant_id):
        r = Router(
            id=new_id("router"),
            project_id=project.id,
            tenant_id=project.tenant_id,
            name=body.name,
            snat=body.snat,
        )
        session.add(r)
        session.flush()
        if body.external_network is not None:
            network = _external(session, principal, body.external_network, "body.external_network")
            _set_gateway(session, principal, r, network, "body.external_network")
        events.publish(
            session,
            "router.created",
            "router",
            r.id,
            tenant_id=r.tenant_id,
            project_id=r.project_id,
            name=r.name,
        )
    return idem.created(RouterOut.of(session, r), r)


@router.get("/v1/routers/{router_id}", response_model=RouterOut)
def get_router(router_id: str, response: Response, session: ReadSessionDep, principal: CanRead) -> RouterOut:
    r = get_visible(session, Router, router_id, principal, "router")
    set_etag(response, r)
    return RouterOut.of(session, r)


@router.post("/v1/routers/{router_id}/interfaces", response_model=RouterOut)
def add_interface(
    router_id: str, body: InterfaceIn, request: Request, session: SessionDep, principal: CanWrite
) -> RouterOut:
    r = get_visible(session, Router, router_id, principal, "router")
    check_if_match(request, r)
    visible = scoped(select(Network.id), Network, principal)
    subnet = session.scalar(
        select(Subnet).where(
            (Subnet.id == body.subnet) | (Subnet.name == body.subnet), Subnet.network_id.in_(visible)
        )
    )
    if subnet is None:
        raise invalid("body.subnet", f"no subnet '{body.subnet}' is visible to you")
    if subnet.gateway_ip is None:
        raise invalid("body.subnet", f"subnet '{subnet.name}' has no gateway address for the router")
    network = session.get(Network, subnet.network_id)
    assert network is not None
    if network.external:
        raise invalid("body.subnet", "an external network is a router's gateway, not an interface")
    if session.scalar(select(Port.id).where(Port.router_id == r.id, Port.network_id == network.id)):
        raise invalid("body.subnet", f"the router already has an interface on network '{network.name}'", 409)
    project = session.get(Project, r.project_id)
    assert project is not None
    with syncing(session, r.tenant_id):
        service.create_port(
            session,
            principal,
            project,
            network,
            field="body",
            fixed_ips=[service.FixedIPRequest(subnet.id, subnet.gateway_ip)],
            router=r,
            owner="router_interface",
            name=f"{r.name}-{subnet.name}",
        )
        r.updated_at = utcnow()
    return RouterOut.of(session, r)


@router.delete("/v1/routers/{router_id}/interfaces/{subnet_id}", response_model=RouterOut)
def remove_interface(router_id: str, subnet_id: str, session: SessionDep, principal: CanWrite) -> RouterOut:
    r = get_visible(session, Router, router_id, principal, "router")
    subnet = session.scalar(select(Subnet).where((Subnet.id == subnet_id) | (Subnet.name == subnet_id)))
    port = None
    if subnet is not None:
        port = session.scalar(
            select(Port).where(
                Port.router_id == r.id, Port.network_id == subnet.network_id, Port.owner == "router_interface"
            )
        )
    if port is None:
        raise Problem(404, "Not Found", f"Router '{r.name}' has no interface on subnet '{subnet_id}'.")
    with syncing(session, r.tenant_id):
        service.delete_port(session, port)
        r.updated_at = utcnow()
    return RouterOut.of(session, r)


@router.put("/v1/routers/{router_id}/gateway", response_model=RouterOut)
def set_gateway(
    router_id: str, body: GatewayIn, request: Request, session: SessionDep, principal: CanWrite
) -> RouterOut:
    r = get_visible(session, Router, router_id, principal, "router")
    check_if_match(request, r)
    network = _external(session, principal, body.network, "body.network")
    with syncing(session, r.tenant_id):
        if r.external_network_id is not None:
            _clear_gateway(session, r)
        r.snat = body.snat
        _set_gateway(session, principal, r, network, "body")
        r.updated_at = utcnow()
    return RouterOut.of(session, r)


@router.delete("/v1/routers/{router_id}/gateway", response_model=RouterOut)
def clear_gateway(router_id: str, session: SessionDep, principal: CanWrite) -> RouterOut:
    r = get_visible(session, Router, router_id, principal, "router")
    with syncing(session, r.tenant_id):
        _clear_gateway(session, r)
        r.updated_at = utcnow()
    return RouterOut.of(session, r)


@router.delete("/v1/routers/{router_id}", status_code=204)
def delete_router(router_id: str, request: Request, session: SessionDep, principal: CanWrite) -> Response:
    r = get_visible(session, Router, router_id, principal, "router")
    check_if_match(request, r)
    with syncing(session, r.tenant_id):
        _clear_gateway(session, r)
        for port in session.scalars(select(Port).where(Port.router_id == r.id)):
            service.delete_port(session, port)
        events.publish(
            session,
            "router.deleted",
            "router",
            r.id,
            tenant_id=r.tenant_id,
            project_id=r.project_id,
            name=r.name,
        )
        session.delete(r)
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
    def of(cls, session: Session, f: FloatingIP) -> FloatingOut:
        return cls(
            id=f.id,
            ip=f.ip,
            network_id=f.network_id,
            project_id=f.project_id,
            tenant_id=f.tenant_id,
            port_id=f.port_id,
            router_id=f.router_id,
            fixed_ip=internal_ipv4(session, f.port_id) if f.port_id else None,
            created_at=f.created_at,
            version=f.version,
        )


def _associate(session: Session, principal: Principal, fip: FloatingIP, ref: str | None, field: str) -> None:
    if ref is None:
        fip.port_id, fip.router_id = None, None
        return
    try:
        port = get_visible(session, Port, ref, principal, "port")
    except DomainError as exc:
        raise invalid(field, f"no port '{ref}' is visible to you") from exc
    if port.owner != "compute" or port.tenant_id != fip.tenant_id:
        raise invalid(field, "only a VM port of your own takes a floating IP")
    if internal_ipv4(session, port.id) is None:
        raise invalid(field, f"port {port.id} has no IPv4 address to DNAT to")
    taken = session.scalar(
        select(FloatingIP.ip).where(FloatingIP.port_id == port.id, FloatingIP.id != fip.id)
    )
    if taken is not None:
        raise invalid(field, f"port {port.id} already has floating IP {taken}", 409)
    router_id = session.scalar(
        select(Router.id)
        .join(Port, Port.router_id == Router.id)
        .where(
            Router.tenant_id == fip.tenant_id,
            Router.external_network_id == fip.network_id,
            Port.network_id == port.network_id,
            Port.owner == "router_interface",
        )
        .limit(1)
    )
    if router_id is None:
        raise invalid(
            field,
            f"no router of yours joins port {port.id}'s network to the floating IP's external network: "
            "add a router interface on that network and set its gateway first",
            409,
        )
    fip.port_id, fip.router_id = port.id, router_id


@router.get("/v1/floating-ips", response_model=Page[FloatingOut])
def list_floating(
    session: ReadSessionDep,
    principal: CanRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "created_at",
) -> Page[FloatingOut]:
    stmt = scoped(select(FloatingIP), FloatingIP, principal)
    rows, nxt = paginate(session, stmt, FloatingIP, ListParams(limit, cursor, sort, ("created_at",)))
    return Page[FloatingOut](items=[FloatingOut.of(session, f) for f in rows], next_cursor=nxt)


@router.post("/v1/floating-ips", status_code=201, response_model=FloatingOut)
def create_floating(
    body: FloatingCreate, request: Request, session: SessionDep, principal: CanWrite
) -> Response:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    project = resolve_project(session, principal, body.project_id)
    network = _external(session, principal, body.network, "body.network")
    with syncing(session, project.tenant_id):
        own = service.create_port(session, principal, project, network, owner="floating_ip", name="floating")
        ip = service.fixed_ips(session, own.id)[0]["ip"]
        fip = FloatingIP(
            id=new_id("fip"),
            project_id=project.id,
            tenant_id=project.tenant_id,
            network_id=network.id,
            own_port_id=own.id,
            ip=ip,
        )
        session.add(fip)
        session.flush()
        quota.charge(session, principal, project, "floating_ip", fip.id, {"floating_ips": 1})
        _associate(session, principal, fip, body.port, "body.port")
        session.flush()
    return idem.created(FloatingOut.of(session, fip), fip)


@router.get("/v1/floating-ips/{fip_id}", response_model=FloatingOut)
def get_floating(fip_id: str, response: Response, session: ReadSessionDep, principal: CanRead) -> FloatingOut:
    fip = get_visible(session, FloatingIP, fip_id, principal, "floating IP")
    set_etag(response, fip)
    return FloatingOut.of(session, fip)


@router.patch("/v1/floating-ips/{fip_id}", response_model=FloatingOut)
def update_floating(
    fip_id: str,
    body: FloatingUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: CanWrite,
) -> FloatingOut:
    fip = get_visible(session, FloatingIP, fip_id, principal, "floating IP")
    check_if_match(request, fip)
    with syncing(session, fip.tenant_id):
        _associate(session, principal, fip, body.port, "body.port")
        fip.updated_at = utcnow()
        session.flush()
    set_etag(response, fip)
    return FloatingOut.of(session, fip)


@router.delete("/v1/floating-ips/{fip_id}", status_code=204)
def delete_floating(fip_id: str, request: Request, session: SessionDep, principal: CanWrite) -> Response:
    fip = get_visible(session, FloatingIP, fip_id, principal, "floating IP")
    check_if_match(request, fip)
    with syncing(session, fip.tenant_id):
        own = session.get(Port, fip.own_port_id)
        session.delete(fip)
        session.flush()
        quota.release(session, "floating_ip", fip.id)
        if own is not None:
            service.delete_port(session, own)
    return Response(status_code=204)

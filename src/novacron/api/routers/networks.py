"""/v1/networks and /v1/subnets: tenant overlay networks (a VXLAN VNI each) and their subnets.

External (provider) and shared networks are made by admins (``network:admin``) and are visible to
every tenant; only their owner changes or deletes them.
"""

from __future__ import annotations

import ipaddress
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
from novacron.compute.scope import get_visible, resolve_project, scoped
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import IPAllocation, Network, Subnet
from novacron.identity.principal import Principal
from novacron.network import ipam, service
from novacron.network.sync import syncing
from novacron.quota import enforce as quota

router = APIRouter(tags=["networks"])

CanRead = Annotated[Principal, Depends(require("network:read"))]
CanWrite = Annotated[Principal, Depends(require("network:write"))]

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def owned(principal: Principal, row: Network | Subnet, kind: str) -> None:
    """A shared or external network is visible to all, but only its owner (or an admin) changes it."""
    if not principal.is_global and row.tenant_id != principal.tenant_id:
        raise Problem(403, "Forbidden", f"This {kind} belongs to another tenant; you may only use it.")


class NetworkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    project_id: str | None = Field(default=None, max_length=40)
    mtu: int = Field(default=1450, ge=576, le=9000, description="the guests' MTU (VXLAN adds 50 bytes)")
    external: bool = Field(default=False, description="a provider network for router gateways (admins)")
    physical_interface: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,15}$")
    shared: bool = Field(default=False, description="usable by every tenant (admins)")


class NetworkUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, pattern=NAME)
    mtu: int | None = Field(default=None, ge=576, le=9000)


class NetworkOut(BaseModel):
    id: str
    name: str
    project_id: str
    tenant_id: str
    vni: int
    mtu: int
    external: bool
    physical_interface: str | None
    shared: bool
    subnets: list[str]
    created_at: datetime
    version: int

    @classmethod
    def of(cls, session: Session, n: Network) -> NetworkOut:
        subnets = session.scalars(
            select(Subnet.id).where(Subnet.network_id == n.id).order_by(Subnet.created_at)
        )
        return cls(
            id=n.id,
            name=n.name,
            project_id=n.project_id,
            tenant_id=n.tenant_id,
            vni=n.vni,
            mtu=n.mtu,
            external=n.external,
            physical_interface=n.physical_interface,
            shared=n.shared,
            subnets=list(subnets),
            created_at=n.created_at,
            version=n.version,
        )


class Pool(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: str
    end: str


class HostRoute(BaseModel):
    model_config = ConfigDict(extra="forbid")
    destination: str
    nexthop: str


class SubnetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: str = Field(min_length=1, max_length=64, description="network id or name")
    name: str = Field(pattern=NAME)
    cidr: str = Field(min_length=1, max_length=64, description="10.0.0.0/24 or fd00::/64")
    gateway_ip: str | None = Field(default=None, description="default: the first usable address")
    no_gateway: bool = Field(default=False, description="a subnet without a gateway")
    allocation_pools: list[Pool] | None = Field(default=None, max_length=16)
    dns_servers: list[str] = Field(default_factory=list, max_length=8)
    host_routes: list[HostRoute] = Field(default_factory=list, max_length=32)
    dhcp: bool = True


class SubnetOut(BaseModel):
    id: str
    name: str
    network_id: str
    project_id: str
    tenant_id: str
    ip_version: int
    cidr: str
    gateway_ip: str | None
    allocation_pools: list[Pool]
    dns_servers: list[str]
    host_routes: list[HostRoute]
    dhcp: bool
    #: addresses held in the subnet; None on another tenant's shared or external subnet, whose
    #: addresses are mostly other tenants' ports and floating IPs coming and going
    used_ips: int | None
    created_at: datetime
    version: int

    @classmethod
    def of(cls, session: Session, s: Subnet, principal: Principal | None = None) -> SubnetOut:
        used: int | None = None
        if principal is None or principal.sees_tenant(s.tenant_id):
            used = len(list(session.scalars(select(IPAllocation.ip).where(IPAllocation.subnet_id == s.id))))
        return cls(
            id=s.id,
            name=s.name,
            network_id=s.network_id,
            project_id=s.project_id,
            tenant_id=s.tenant_id,
            ip_version=s.ip_version,
            cidr=s.cidr,
            gateway_ip=s.gateway_ip,
            allocation_pools=[Pool(start=a, end=b) for a, b in s.allocation_pools],
            dns_servers=list(s.dns_servers),
            host_routes=[HostRoute(destination=d, nexthop=n) for d, n in s.host_routes],
            dhcp=s.dhcp,
            used_ips=used,
            created_at=s.created_at,
            version=s.version,
        )


# ---- networks ----------------------------------------------------------------------------------


@router.get("/v1/networks", response_model=Page[NetworkOut])
def list_networks(
    session: ReadSessionDep,
    principal: CanRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "created_at",
    name: str | None = None,
    project_id: str | None = None,
    external: bool | None = None,
) -> Page[NetworkOut]:
    stmt = scoped(select(Network), Network, principal)
    for col, value in ((Network.name, name), (Network.project_id, project_id), (Network.external, external)):
        if value is not None:
            stmt = stmt.where(col == value)
    rows, nxt = paginate(
        session, stmt, Network, ListParams(limit, cursor, sort, ("created_at", "name", "vni"))
    )
    return Page[NetworkOut](items=[NetworkOut.of(session, n) for n in rows], next_cursor=nxt)


@router.post("/v1/networks", status_code=201, response_model=NetworkOut)
def create_network(
    body: NetworkCreate, request: Request, session: SessionDep, principal: CanWrite
) -> Response:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    for flag in ("external", "shared", "physical_interface"):
        if getattr(body, flag) and not principal.can("network:admin"):
            raise invalid(f"body.{flag}", "only administrators (network:admin) set this", 403)
    project = resolve_project(session, principal, body.project_id)
    if session.scalar(select(Network.id).where(Network.project_id == project.id, Network.name == body.name)):
        raise name_taken("network", body.name, "body.name")
    network = Network(
        id=new_id("net"),
        project_id=project.id,
        tenant_id=project.tenant_id,
        name=body.name,
        mtu=body.mtu,
        external=body.external,
        physical_interface=body.physical_interface,
        shared=body.shared,
    )
    ipam.allocate_vni(session, network)
    quota.charge(session, principal, project, "network", network.id, {"networks": 1})
    events.publish(
        session,
        "network.created",
        "network",
        network.id,
        tenant_id=network.tenant_id,
        project_id=network.project_id,
        name=network.name,
        vni=network.vni,
    )
    return idem.created(NetworkOut.of(session, network), network)


@router.get("/v1/networks/{network_id}", response_model=NetworkOut)
def get_network(
    network_id: str, response: Response, session: ReadSessionDep, principal: CanRead
) -> NetworkOut:
    network = get_visible(session, Network, network_id, principal, "network")
    set_etag(response, network)
    return NetworkOut.of(session, network)


@router.patch("/v1/networks/{network_id}", response_model=NetworkOut)
def update_network(
    network_id: str,
    body: NetworkUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: CanWrite,
) -> NetworkOut:
    network = get_visible(session, Network, network_id, principal, "network")
    owned(principal, network, "network")
    check_if_match(request, network)
    with syncing(session, network.tenant_id):
        if body.name is not None and body.name != network.name:
            if session.scalar(
                select(Network.id).where(Network.project_id == network.project_id, Network.name == body.name)
            ):
                raise name_taken("network", body.name, "body.name")
            network.name = body.name
        if body.mtu is not None:
            network.mtu = body.mtu
        session.flush()
    set_etag(response, network)
    return NetworkOut.of(session, network)


@router.delete("/v1/networks/{network_id}", status_code=204)
def delete_network(network_id: str, request: Request, session: SessionDep, principal: CanWrite) -> Response:
    network = get_visible(session, Network, network_id, principal, "network")
    owned(principal, network, "network")
    check_if_match(request, network)
    users = service.users_of_network(session, network)
    if users:
        raise Problem(
            409,
            "Conflict",
            f"Network '{network.name}' is in use by {', '.join(users)}; delete those first.",
            errors=[{"field": "network_id", "reason": "in use: " + ", ".join(users)}],
        )
    with syncing(session, network.tenant_id):
        events.publish(
            session,
            "network.deleted",
            "network",
            network.id,
            tenant_id=network.tenant_id,
            project_id=network.project_id,
            name=network.name,
        )
        for subnet in session.scalars(select(Subnet).where(Subnet.network_id == network.id)):
            session.delete(subnet)
        session.flush()  # before the network's row, whose deletion would cascade to them unseen
        session.delete(network)
        quota.release(session, "network", network.id)
    return Response(status_code=204)


# ---- subnets -----------------------------------------------------------------------------------


def _check_extras(net: ipam.IPNetwork, body: SubnetCreate) -> tuple[list[str], list[list[str]]]:
    dns: list[str] = []
    for i, server in enumerate(body.dns_servers):
        dns.append(str(ipam.parse_ip(server, f"body.dns_servers.{i}")))
    routes: list[list[str]] = []
    for i, route in enumerate(body.host_routes):
        field = f"body.host_routes.{i}"
        try:
            dest = ipaddress.ip_network(route.destination, strict=True)
        except ValueError as exc:
            raise invalid(f"{field}.destination", f"'{route.destination}' is not a CIDR ({exc})") from exc
        hop = ipam.parse_ip(route.nexthop, f"{field}.nexthop")
        if dest.version != net.version:
            raise invalid(f"{field}.destination", f"IPv{dest.version} route in an IPv{net.version} subnet")
        if hop not in net:
            raise invalid(f"{field}.nexthop", f"{hop} is outside the subnet {net}")
        routes.append([str(dest), str(hop)])
    return dns, routes


@router.get("/v1/subnets", response_model=Page[SubnetOut])
def list_subnets(
    session: ReadSessionDep,
    principal: CanRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "created_at",
    network_id: str | None = None,
    name: str | None = None,
) -> Page[SubnetOut]:
    visible = scoped(select(Network.id), Network, principal)
    stmt = select(Subnet).where(Subnet.network_id.in_(visible))
    for col, value in ((Subnet.network_id, network_id), (Subnet.name, name)):
        if value is not None:
            stmt = stmt.where(col == value)
    rows, nxt = paginate(session, stmt, Subnet, ListParams(limit, cursor, sort, ("created_at", "name")))
    return Page[SubnetOut](items=[SubnetOut.of(session, s, principal) for s in rows], next_cursor=nxt)


@router.post("/v1/subnets", status_code=201, response_model=SubnetOut)
def create_subnet(body: SubnetCreate, request: Request, session: SessionDep, principal: CanWrite) -> Response:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    network = service.find_network(session, principal, body.network, "body.network")
    owned(principal, network, "network")
    pools = [(p.start, p.end) for p in body.allocation_pools] if body.allocation_pools is not None else None
    if body.no_gateway and body.gateway_ip is not None:
        raise invalid("body.gateway_ip", "contradicts no_gateway")
    net, gateway, checked_pools = ipam.check_subnet(
        body.cidr, body.gateway_ip, pools, no_gateway=body.no_gateway
    )
    ipam.check_no_overlap(session, network.id, net)
    dns, routes = _check_extras(net, body)
    if session.scalar(select(Subnet.id).where(Subnet.network_id == network.id, Subnet.name == body.name)):
        raise name_taken("subnet", body.name, "body.name", "in this network")
    with syncing(session, network.tenant_id):
        subnet = Subnet(
            id=new_id("subnet"),
            network_id=network.id,
            project_id=network.project_id,
            tenant_id=network.tenant_id,
            name=body.name,
            ip_version=net.version,
            cidr=str(net),
            gateway_ip=gateway,
            allocation_pools=checked_pools,
            dns_servers=dns,
            host_routes=routes,
            dhcp=body.dhcp,
        )
        session.add(subnet)
        session.flush()
        events.publish(
            session,
            "subnet.created",
            "subnet",
            subnet.id,
            tenant_id=subnet.tenant_id,
            project_id=subnet.project_id,
            cidr=subnet.cidr,
        )
    return idem.created(SubnetOut.of(session, subnet), subnet)


def _visible_subnet(session: Session, subnet_id: str, principal: Principal) -> Subnet:
    visible = scoped(select(Network.id), Network, principal)
    subnet = session.scalar(
        select(Subnet).where(
            (Subnet.id == subnet_id) | (Subnet.name == subnet_id), Subnet.network_id.in_(visible)
        )
    )
    if subnet is None:
        raise Problem(404, "Not Found", f"No subnet '{subnet_id}' exists or it is not visible to you.")
    return subnet


@router.get("/v1/subnets/{subnet_id}", response_model=SubnetOut)
def get_subnet(subnet_id: str, response: Response, session: ReadSessionDep, principal: CanRead) -> SubnetOut:
    subnet = _visible_subnet(session, subnet_id, principal)
    set_etag(response, subnet)
    return SubnetOut.of(session, subnet, principal)


@router.delete("/v1/subnets/{subnet_id}", status_code=204)
def delete_subnet(subnet_id: str, request: Request, session: SessionDep, principal: CanWrite) -> Response:
    subnet = _visible_subnet(session, subnet_id, principal)
    owned(principal, subnet, "subnet")
    check_if_match(request, subnet)
    held = list(
        session.scalars(select(IPAllocation.port_id).where(IPAllocation.subnet_id == subnet.id).limit(10))
    )
    if held:
        raise Problem(
            409,
            "Conflict",
            f"Subnet '{subnet.name}' has addresses held by ports {', '.join(held)}; delete them first.",
        )
    with syncing(session, subnet.tenant_id):
        events.publish(
            session,
            "subnet.deleted",
            "subnet",
            subnet.id,
            tenant_id=subnet.tenant_id,
            project_id=subnet.project_id,
            cidr=subnet.cidr,
        )
        session.delete(subnet)
    return Response(status_code=204)

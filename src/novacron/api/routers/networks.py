"""/v1/networks and /v1/subnets: tenant overlay networks (a VXLAN VNI each) and their subnets.

External (provider) and shared networks are made by admins (``network:admin``) and are visible to
every tenant; only their owner changes or deletes them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.db.listing import ListParams
from novacron.db.models import Network, Subnet
from novacron.network.networks import NetworkChange, NetworkService, NewNetwork
from novacron.network.subnets import NewSubnet, SubnetService

router = APIRouter(tags=["networks"])

NetworkReader = Annotated[NetworkService, Depends(service(NetworkService, "network:read", write=False))]
NetworkWriter = Annotated[NetworkService, Depends(service(NetworkService, "network:write"))]
NetworkList = Annotated[ListParams, Depends(list_query(("created_at", "name", "vni")))]
SubnetReader = Annotated[SubnetService, Depends(service(SubnetService, "network:read", write=False))]
SubnetWriter = Annotated[SubnetService, Depends(service(SubnetService, "network:write"))]
SubnetList = Annotated[ListParams, Depends(list_query(("created_at", "name")))]

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


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
    def of(cls, n: Network, subnets: list[str]) -> NetworkOut:
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
            subnets=subnets,
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

    def spec(self) -> NewSubnet:
        pools = self.allocation_pools
        return NewSubnet(
            network=self.network,
            name=self.name,
            cidr=self.cidr,
            gateway_ip=self.gateway_ip,
            no_gateway=self.no_gateway,
            allocation_pools=[(p.start, p.end) for p in pools] if pools is not None else None,
            dns_servers=list(self.dns_servers),
            host_routes=[(r.destination, r.nexthop) for r in self.host_routes],
            dhcp=self.dhcp,
        )


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
    def of(cls, s: Subnet, used_ips: int | None) -> SubnetOut:
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
            used_ips=used_ips,
            created_at=s.created_at,
            version=s.version,
        )


# ---- networks ----------------------------------------------------------------------------------


@router.get("/v1/networks", response_model=Page[NetworkOut])
def list_networks(
    networks: NetworkReader,
    page: NetworkList,
    name: str | None = None,
    project_id: str | None = None,
    external: bool | None = None,
) -> Page[NetworkOut]:
    rows, nxt = networks.list(page, name=name, project_id=project_id, external=external)
    return Page[NetworkOut](items=[NetworkOut.of(n, networks.subnet_ids(n)) for n in rows], next_cursor=nxt)


@router.post("/v1/networks", status_code=201, response_model=NetworkOut)
def create_network(body: NetworkCreate, networks: NetworkWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    network = networks.create(NewNetwork(**body.model_dump()))
    return idem.created(NetworkOut.of(network, networks.subnet_ids(network)), network)


@router.get("/v1/networks/{network_id}", response_model=NetworkOut)
def get_network(network_id: str, response: Response, networks: NetworkReader) -> NetworkOut:
    network = networks.get(network_id)
    set_etag(response, network)
    return NetworkOut.of(network, networks.subnet_ids(network))


@router.patch("/v1/networks/{network_id}", response_model=NetworkOut)
def update_network(
    network_id: str, body: NetworkUpdate, request: Request, response: Response, networks: NetworkWriter
) -> NetworkOut:
    network = networks.get_owned(network_id)
    check_if_match(request, network)
    networks.update(network, NetworkChange(**body.model_dump()))
    set_etag(response, network)
    return NetworkOut.of(network, networks.subnet_ids(network))


@router.delete("/v1/networks/{network_id}", status_code=204)
def delete_network(network_id: str, request: Request, networks: NetworkWriter) -> Response:
    network = networks.get_owned(network_id)
    check_if_match(request, network)
    networks.delete(network)
    return Response(status_code=204)


# ---- subnets -----------------------------------------------------------------------------------


@router.get("/v1/subnets", response_model=Page[SubnetOut])
def list_subnets(
    subnets: SubnetReader, page: SubnetList, network_id: str | None = None, name: str | None = None
) -> Page[SubnetOut]:
    rows, nxt = subnets.list(page, network_id=network_id, name=name)
    return Page[SubnetOut](items=[SubnetOut.of(s, subnets.used_ips(s)) for s in rows], next_cursor=nxt)


@router.post("/v1/subnets", status_code=201, response_model=SubnetOut)
def create_subnet(body: SubnetCreate, subnets: SubnetWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    subnet = subnets.create(body.spec())
    return idem.created(SubnetOut.of(subnet, subnets.used_ips(subnet)), subnet)


@router.get("/v1/subnets/{subnet_id}", response_model=SubnetOut)
def get_subnet(subnet_id: str, response: Response, subnets: SubnetReader) -> SubnetOut:
    subnet = subnets.get(subnet_id)
    set_etag(response, subnet)
    return SubnetOut.of(subnet, subnets.used_ips(subnet))


@router.delete("/v1/subnets/{subnet_id}", status_code=204)
def delete_subnet(subnet_id: str, request: Request, subnets: SubnetWriter) -> Response:
    subnet = subnets.get_owned(subnet_id)
    check_if_match(request, subnet)
    subnets.delete(subnet)
    return Response(status_code=204)

"""/v1/ports: a NIC on a network with its addresses, security groups, QoS policy and vNIC type.

A VM's ports are made with the VM (``POST /v1/vms`` with ``networks``) and go with it; ports made
here are unbound until attached. ``GET /v1/ports/{id}/spec`` shows the port as its host's datapath
receives it: the security-group and label rules resolved to addresses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.db.listing import ListParams
from novacron.db.models import Port
from novacron.network.ports import PortChange, PortDetails, PortService
from novacron.network.service import FixedIPRequest, NewPort

router = APIRouter(prefix="/v1/ports", tags=["networks"])

PortReader = Annotated[PortService, Depends(service(PortService, "network:read", write=False))]
PortWriter = Annotated[PortService, Depends(service(PortService, "network:write"))]
PortList = Annotated[ListParams, Depends(list_query(("created_at", "name")))]


class FixedIPIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subnet: str | None = Field(default=None, max_length=64, description="subnet id or name")
    ip: str | None = Field(default=None, max_length=64, description="a specific address")


class PortCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: str = Field(min_length=1, max_length=64, description="network id or name")
    name: str = Field(default="", max_length=64)
    project_id: str | None = Field(default=None, max_length=40)
    fixed_ips: list[FixedIPIn] = Field(default_factory=list, max_length=8)
    security_groups: list[str] | None = Field(default=None, max_length=16, description="default: 'default'")
    port_security: bool = True
    vnic_type: Literal["normal", "direct", "vhost-user"] = "normal"
    qos_policy: str | None = Field(default=None, max_length=64)

    def spec(self) -> NewPort:
        groups = self.security_groups
        return NewPort(
            name=self.name,
            fixed_ips=tuple(FixedIPRequest(f.subnet, f.ip) for f in self.fixed_ips),
            security_groups=tuple(groups) if groups is not None else None,
            port_security=self.port_security,
            vnic_type=self.vnic_type,
            qos_policy=self.qos_policy,
        )


class PortUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=64)
    security_groups: list[str] | None = Field(default=None, max_length=16)
    qos_policy: str | None = Field(default=None, max_length=64, description="'' removes it")


class PortOut(BaseModel):
    id: str
    name: str
    network_id: str
    project_id: str
    tenant_id: str
    owner: str
    vm_id: str | None
    router_id: str | None
    host_id: str | None
    mac: str
    device: str
    fixed_ips: list[dict[str, str]]
    security_groups: list[str]
    port_security: bool
    vnic_type: str
    qos_policy_id: str | None
    created_at: datetime
    version: int

    @classmethod
    def of(cls, p: Port, details: PortDetails) -> PortOut:
        return cls(
            id=p.id,
            name=p.name,
            network_id=p.network_id,
            project_id=p.project_id,
            tenant_id=p.tenant_id,
            owner=p.owner,
            vm_id=p.vm_id,
            router_id=p.router_id,
            host_id=details.host_id,
            mac=p.mac,
            device=p.device,
            fixed_ips=details.fixed_ips,
            security_groups=details.security_groups,
            port_security=p.port_security,
            vnic_type=p.vnic_type,
            qos_policy_id=p.qos_policy_id,
            created_at=p.created_at,
            version=p.version,
        )


@router.get("", response_model=Page[PortOut])
def list_ports(
    ports: PortReader,
    page: PortList,
    network_id: str | None = None,
    vm_id: str | None = None,
    project_id: str | None = None,
) -> Page[PortOut]:
    rows, nxt = ports.list(page, network_id=network_id, vm_id=vm_id, project_id=project_id)
    return Page[PortOut](items=[PortOut.of(p, ports.details(p)) for p in rows], next_cursor=nxt)


@router.post("", status_code=201, response_model=PortOut)
def create_port(body: PortCreate, ports: PortWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    port = ports.create(body.network, body.project_id, body.spec())
    return idem.created(PortOut.of(port, ports.details(port)), port)


@router.get("/{port_id}", response_model=PortOut)
def get_port(port_id: str, response: Response, ports: PortReader) -> PortOut:
    port = ports.get(port_id)
    set_etag(response, port)
    return PortOut.of(port, ports.details(port))


@router.get("/{port_id}/spec")
def get_port_spec(port_id: str, ports: PortReader) -> dict[str, Any]:
    """The port as its host's datapath gets it: rules resolved to the current member addresses."""
    return ports.datapath_spec(port_id)


@router.patch("/{port_id}", response_model=PortOut)
def update_port(
    port_id: str, body: PortUpdate, request: Request, response: Response, ports: PortWriter
) -> PortOut:
    port = ports.get(port_id)
    check_if_match(request, port)
    ports.update(port, PortChange(**body.model_dump()))
    set_etag(response, port)
    return PortOut.of(port, ports.details(port))


@router.delete("/{port_id}", status_code=204)
def delete_port(port_id: str, request: Request, ports: PortWriter) -> Response:
    port = ports.get(port_id)
    check_if_match(request, port)
    ports.delete(port)
    return Response(status_code=204)

"""/v1/ports: a NIC on a network with its addresses, security groups, QoS policy and vNIC type.

A VM's ports are made with the VM (``POST /v1/vms`` with ``networks``) and go with it; ports made
here are unbound until attached. ``GET /v1/ports/{id}/spec`` shows the port as its host's datapath
receives it: the security-group and label rules resolved to addresses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from novacron import events
from novacron.api.concurrency import Idempotency, check_if_match, set_etag
from novacron.api.deps import ReadSessionDep, SessionDep, require
from novacron.api.errors import Problem
from novacron.api.listing import Page
from novacron.compute.scope import get_visible, resolve_project, scoped
from novacron.db.base import utcnow
from novacron.db.listing import ListParams, paginate
from novacron.db.models import VM, Port, PortSecurityGroup, Project
from novacron.identity.principal import Principal
from novacron.network import service
from novacron.network.specs import port_spec
from novacron.network.sync import syncing
from novacron.network.wire import to_dict

router = APIRouter(prefix="/v1/ports", tags=["networks"])

CanRead = Annotated[Principal, Depends(require("network:read"))]
CanWrite = Annotated[Principal, Depends(require("network:write"))]


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
    def of(cls, session: Session, p: Port) -> PortOut:
        host = p.host_id
        if p.vm_id is not None:
            host = session.scalar(select(VM.host_id).where(VM.id == p.vm_id))
        return cls(
            id=p.id,
            name=p.name,
            network_id=p.network_id,
            project_id=p.project_id,
            tenant_id=p.tenant_id,
            owner=p.owner,
            vm_id=p.vm_id,
            router_id=p.router_id,
            host_id=host,
            mac=p.mac,
            device=p.device,
            fixed_ips=service.fixed_ips(session, p.id),
            security_groups=service.group_ids(session, p.id),
            port_security=p.port_security,
            vnic_type=p.vnic_type,
            qos_policy_id=p.qos_policy_id,
            created_at=p.created_at,
            version=p.version,
        )


@router.get("", response_model=Page[PortOut])
def list_ports(
    session: ReadSessionDep,
    principal: CanRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "created_at",
    network_id: str | None = None,
    vm_id: str | None = None,
    project_id: str | None = None,
) -> Page[PortOut]:
    stmt = scoped(select(Port), Port, principal)
    for col, value in ((Port.network_id, network_id), (Port.vm_id, vm_id), (Port.project_id, project_id)):
        if value is not None:
            stmt = stmt.where(col == value)
    rows, nxt = paginate(session, stmt, Port, ListParams(limit, cursor, sort, ("created_at", "name")))
    return Page[PortOut](items=[PortOut.of(session, p) for p in rows], next_cursor=nxt)


@router.post("", status_code=201, response_model=PortOut)
def create_port(body: PortCreate, request: Request, session: SessionDep, principal: CanWrite) -> Response:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    project = resolve_project(session, principal, body.project_id)
    network = service.find_network(session, principal, body.network, "body.network")
    with syncing(session, project.tenant_id):
        port = service.create_port(
            session,
            principal,
            project,
            network,
            name=body.name,
            fixed_ips=[service.FixedIPRequest(f.subnet, f.ip) for f in body.fixed_ips],
            security_groups=body.security_groups,
            port_security=body.port_security,
            vnic_type=body.vnic_type,
            qos_policy=body.qos_policy,
        )
        events.publish(
            session, "port.created", "port", port.id, tenant_id=port.tenant_id, project_id=port.project_id
        )
    return idem.created(PortOut.of(session, port), port)


@router.get("/{port_id}", response_model=PortOut)
def get_port(port_id: str, response: Response, session: ReadSessionDep, principal: CanRead) -> PortOut:
    port = get_visible(session, Port, port_id, principal, "port")
    set_etag(response, port)
    return PortOut.of(session, port)


@router.get("/{port_id}/spec")
def get_port_spec(port_id: str, session: ReadSessionDep, principal: CanRead) -> dict[str, Any]:
    """The port as its host's datapath gets it: rules resolved to the current member addresses."""
    port = get_visible(session, Port, port_id, principal, "port")
    return to_dict(port_spec(session, port))


@router.patch("/{port_id}", response_model=PortOut)
def update_port(
    port_id: str,
    body: PortUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: CanWrite,
) -> PortOut:
    port = get_visible(session, Port, port_id, principal, "port")
    check_if_match(request, port)
    project = session.get(Project, port.project_id)
    assert project is not None
    with syncing(session, port.tenant_id):
        if body.name is not None:
            port.name = body.name
        if body.qos_policy is not None:
            port.qos_policy_id = (
                service.find_qos(session, principal, body.qos_policy, "body.qos_policy").id
                if body.qos_policy
                else None
            )
        if body.security_groups is not None:
            if not port.port_security and body.security_groups:
                raise Problem(409, "Conflict", "A port without port security has no security groups.")
            groups = {
                service.find_group(session, principal, ref, project, f"body.security_groups.{i}").id
                for i, ref in enumerate(body.security_groups)
            }
            session.execute(delete(PortSecurityGroup).where(PortSecurityGroup.port_id == port.id))
            for group_id in sorted(groups):
                session.add(PortSecurityGroup(port_id=port.id, group_id=group_id))
            # membership lives in another table: touching the row moves its version (the ETag) on
            port.updated_at = utcnow()
        session.flush()
    set_etag(response, port)
    return PortOut.of(session, port)


@router.delete("/{port_id}", status_code=204)
def delete_port(port_id: str, request: Request, session: SessionDep, principal: CanWrite) -> Response:
    port = get_visible(session, Port, port_id, principal, "port")
    check_if_match(request, port)
    if port.vm_id is not None:
        raise Problem(
            409, "Conflict", f"Port {port.id} is VM {port.vm_id}'s NIC; it goes when the VM is deleted."
        )
    if port.owner != "compute":
        raise Problem(409, "Conflict", f"Port {port.id} belongs to a {port.owner}; remove it there.")
    with syncing(session, port.tenant_id):
        events.publish(
            session, "port.deleted", "port", port.id, tenant_id=port.tenant_id, project_id=port.project_id
        )
        service.delete_port(session, port)
    return Response(status_code=204)

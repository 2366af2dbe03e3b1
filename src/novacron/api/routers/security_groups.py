"""/v1/security-groups (with their rules) and /v1/qos-policies.

A group applies to the ports that name it and, with a ``selector`` (``{"tier": "db"}``), to every
port of the project's VMs whose labels match: a label policy. A rule's remote side is a CIDR, a
group (its members' addresses) or a label selector (the matching VMs' addresses), resolved anew
whenever membership, labels or addresses change. Protocols include application protocols
(``http``, ``tls`` with an SNI allow-list, ``ssh``, ``dns``), recognised from the traffic itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.api.routers.hosts import Labels
from novacron.db.listing import ListParams
from novacron.db.models import QosPolicy, SecurityGroup, SecurityGroupRule
from novacron.network.qos import NewQosPolicy, QosService
from novacron.network.rules import RuleSpec
from novacron.network.secgroups import GroupChange, NewGroup, SecurityGroupService

router = APIRouter(tags=["security-groups"])

#: a list makes the projects' default groups on first sight: it writes
GroupLister = Annotated[SecurityGroupService, Depends(service(SecurityGroupService, "network:read"))]
GroupReader = Annotated[
    SecurityGroupService, Depends(service(SecurityGroupService, "network:read", write=False))
]
GroupWriter = Annotated[SecurityGroupService, Depends(service(SecurityGroupService, "network:write"))]
QosReader = Annotated[QosService, Depends(service(QosService, "network:read", write=False))]
QosWriter = Annotated[QosService, Depends(service(QosService, "network:write"))]
NamedList = Annotated[ListParams, Depends(list_query(("created_at", "name")))]

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    direction: Literal["ingress", "egress"]
    ethertype: Literal["IPv4", "IPv6"] = "IPv4"
    protocol: Literal["tcp", "udp", "icmp", "icmpv6", "http", "tls", "ssh", "dns"] | None = None
    port_min: int | None = Field(default=None, ge=1, le=65535)
    port_max: int | None = Field(default=None, ge=1, le=65535)
    remote_cidr: str | None = Field(default=None, max_length=64)
    remote_group: str | None = Field(default=None, max_length=64, description="group id or name")
    remote_labels: Labels | None = Field(default=None, description="VMs whose labels match all of these")
    sni_allow: list[str] = Field(default_factory=list, max_length=64, description="tls: allowed server names")
    action: Literal["allow", "deny"] = "allow"

    def spec(self) -> RuleSpec:
        return RuleSpec(**self.model_dump())


class RuleOut(BaseModel):
    id: str
    group_id: str
    direction: str
    ethertype: str
    protocol: str | None
    port_min: int | None
    port_max: int | None
    remote_cidr: str | None
    remote_group_id: str | None
    remote_labels: dict[str, str] | None
    sni_allow: list[str]
    action: str

    @classmethod
    def of(cls, r: SecurityGroupRule) -> RuleOut:
        return cls(
            id=r.id,
            group_id=r.group_id,
            direction=r.direction,
            ethertype=r.ethertype,
            protocol=r.protocol,
            port_min=r.port_min,
            port_max=r.port_max,
            remote_cidr=r.remote_cidr,
            remote_group_id=r.remote_group_id,
            remote_labels=r.remote_labels,
            sni_allow=list(r.sni_allow or []),
            action=r.action,
        )


class GroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    description: str = Field(default="", max_length=255)
    project_id: str | None = Field(default=None, max_length=40)
    selector: Labels | None = Field(default=None, description="apply to the ports of VMs with these labels")
    rules: list[RuleIn] = Field(default_factory=list, max_length=256)

    def spec(self) -> NewGroup:
        return NewGroup(
            name=self.name,
            description=self.description,
            project_id=self.project_id,
            selector=dict(self.selector) if self.selector is not None else None,
            rules=[r.spec() for r in self.rules],
        )


class GroupUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = Field(default=None, max_length=255)
    selector: Labels | None = None


class GroupOut(BaseModel):
    id: str
    name: str
    description: str
    project_id: str
    tenant_id: str
    selector: dict[str, str] | None
    rules: list[RuleOut]
    created_at: datetime
    version: int

    @classmethod
    def of(cls, g: SecurityGroup, rules: list[SecurityGroupRule]) -> GroupOut:
        return cls(
            id=g.id,
            name=g.name,
            description=g.description,
            project_id=g.project_id,
            tenant_id=g.tenant_id,
            selector=g.selector,
            rules=[RuleOut.of(r) for r in rules],
            created_at=g.created_at,
            version=g.version,
        )


@router.get("/v1/security-groups", response_model=Page[GroupOut])
def list_groups(
    groups: GroupLister, page: NamedList, name: str | None = None, project_id: str | None = None
) -> Page[GroupOut]:
    rows, nxt = groups.list(page, name=name, project_id=project_id)
    return Page[GroupOut](items=[GroupOut.of(g, groups.rules(g)) for g in rows], next_cursor=nxt)


@router.post("/v1/security-groups", status_code=201, response_model=GroupOut)
def create_group(body: GroupCreate, groups: GroupWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    group = groups.create(body.spec())
    return idem.created(GroupOut.of(group, groups.rules(group)), group)


@router.get("/v1/security-groups/{group_id}", response_model=GroupOut)
def get_group(group_id: str, response: Response, groups: GroupReader) -> GroupOut:
    group = groups.get(group_id)
    set_etag(response, group)
    return GroupOut.of(group, groups.rules(group))


@router.patch("/v1/security-groups/{group_id}", response_model=GroupOut)
def update_group(
    group_id: str, body: GroupUpdate, request: Request, response: Response, groups: GroupWriter
) -> GroupOut:
    group = groups.get(group_id)
    check_if_match(request, group)
    change = GroupChange(
        description=body.description,
        selector=dict(body.selector) if body.selector is not None else None,
        selector_given="selector" in body.model_fields_set,
    )
    groups.update(group, change)
    set_etag(response, group)
    return GroupOut.of(group, groups.rules(group))


@router.delete("/v1/security-groups/{group_id}", status_code=204)
def delete_group(group_id: str, request: Request, groups: GroupWriter) -> Response:
    group = groups.get(group_id)
    check_if_match(request, group)
    groups.delete(group)
    return Response(status_code=204)


@router.post("/v1/security-groups/{group_id}/rules", status_code=201, response_model=RuleOut)
def add_rule(group_id: str, body: RuleIn, groups: GroupWriter, idem: IdempotencyDep) -> Response:
    group = groups.get(group_id)  # an unknown group is a 404 before any replay
    if (replay := idem.replay(body)) is not None:
        return replay
    rule = groups.add_rule(group, body.spec())
    out = RuleOut.of(rule).model_dump(mode="json")
    idem.remember(201, out)
    return JSONResponse(out, status_code=201)


@router.delete("/v1/security-groups/{group_id}/rules/{rule_id}", status_code=204)
def delete_rule(group_id: str, rule_id: str, groups: GroupWriter) -> Response:
    groups.delete_rule(group_id, rule_id)
    return Response(status_code=204)


# ---- QoS policies ------------------------------------------------------------------------------


class QosCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    project_id: str | None = Field(default=None, max_length=40)
    ingress_kbps: int | None = Field(default=None, ge=8, le=100_000_000)
    egress_kbps: int | None = Field(default=None, ge=8, le=100_000_000)
    guaranteed_kbps: int | None = Field(default=None, ge=8, le=100_000_000)
    dscp: int | None = Field(default=None, ge=0, le=63)


class QosOut(BaseModel):
    id: str
    name: str
    project_id: str
    tenant_id: str
    ingress_kbps: int | None
    egress_kbps: int | None
    guaranteed_kbps: int | None
    dscp: int | None
    created_at: datetime
    version: int

    @classmethod
    def of(cls, q: QosPolicy) -> QosOut:
        return cls(
            id=q.id,
            name=q.name,
            project_id=q.project_id,
            tenant_id=q.tenant_id,
            ingress_kbps=q.ingress_kbps,
            egress_kbps=q.egress_kbps,
            guaranteed_kbps=q.guaranteed_kbps,
            dscp=q.dscp,
            created_at=q.created_at,
            version=q.version,
        )


@router.get("/v1/qos-policies", response_model=Page[QosOut])
def list_qos(policies: QosReader, page: NamedList, name: str | None = None) -> Page[QosOut]:
    rows, nxt = policies.list(page, name=name)
    return Page[QosOut](items=[QosOut.of(q) for q in rows], next_cursor=nxt)


@router.post("/v1/qos-policies", status_code=201, response_model=QosOut)
def create_qos(body: QosCreate, policies: QosWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    policy = policies.create(NewQosPolicy(**body.model_dump()))
    return idem.created(QosOut.of(policy), policy)


@router.get("/v1/qos-policies/{policy_id}", response_model=QosOut)
def get_qos(policy_id: str, response: Response, policies: QosReader) -> QosOut:
    policy = policies.get(policy_id)
    set_etag(response, policy)
    return QosOut.of(policy)


@router.delete("/v1/qos-policies/{policy_id}", status_code=204)
def delete_qos(policy_id: str, request: Request, policies: QosWriter) -> Response:
    policy = policies.get(policy_id)
    check_if_match(request, policy)
    policies.delete(policy)
    return Response(status_code=204)

"""/v1/security-groups (with their rules) and /v1/qos-policies.

A group applies to the ports that name it and, with a ``selector`` (``{"tier": "db"}``), to every
port of the project's VMs whose labels match: a label policy. A rule's remote side is a CIDR, a
group (its members' addresses) or a label selector (the matching VMs' addresses), resolved anew
whenever membership, labels or addresses change. Protocols include application protocols
(``http``, ``tls`` with an SNI allow-list, ``ssh``, ``dns``), recognised from the traffic itself.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events
from novacron.api.concurrency import Idempotency, check_if_match, set_etag
from novacron.api.deps import ReadSessionDep, SessionDep, require
from novacron.api.errors import Problem, invalid, name_taken
from novacron.api.listing import Page
from novacron.api.routers.hosts import Labels
from novacron.compute.scope import get_visible, resolve_project, scoped
from novacron.db.base import new_id, utcnow
from novacron.db.listing import ListParams, paginate
from novacron.db.models import Port, PortSecurityGroup, Project, QosPolicy, SecurityGroup, SecurityGroupRule
from novacron.identity.principal import Principal
from novacron.network import service
from novacron.network.sync import syncing

router = APIRouter(tags=["security-groups"])

CanRead = Annotated[Principal, Depends(require("network:read"))]
CanWrite = Annotated[Principal, Depends(require("network:write"))]

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
SNI = re.compile(r"^(\*\.)?([A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}$")
PORTED = {"tcp", "udp", "http", "tls", "ssh", "dns"}


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
    def of(cls, session: Session, g: SecurityGroup) -> GroupOut:
        rules = session.scalars(
            select(SecurityGroupRule)
            .where(SecurityGroupRule.group_id == g.id)
            .order_by(SecurityGroupRule.created_at, SecurityGroupRule.id)
        )
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


def _rule(
    session: Session, principal: Principal, group: SecurityGroup, body: RuleIn, field: str
) -> SecurityGroupRule:
    """A checked rule row; each refusal names the field at fault."""
    remotes = [n for n in ("remote_cidr", "remote_group", "remote_labels") if getattr(body, n) is not None]
    if len(remotes) > 1:
        raise invalid(f"{field}.{remotes[1]}", f"give one remote side only (also got {remotes[0]})")
    version = 4 if body.ethertype == "IPv4" else 6
    if body.protocol == "icmp" and version == 6:
        raise invalid(f"{field}.protocol", "icmp is IPv4; use icmpv6 with ethertype IPv6")
    if body.protocol == "icmpv6" and version == 4:
        raise invalid(f"{field}.protocol", "icmpv6 needs ethertype IPv6")
    cidr = None
    if body.remote_cidr is not None:
        try:
            net = ipaddress.ip_network(body.remote_cidr, strict=False)
        except ValueError as exc:
            raise invalid(f"{field}.remote_cidr", f"'{body.remote_cidr}' is not a CIDR ({exc})") from exc
        if net.version != version:
            raise invalid(
                f"{field}.remote_cidr", f"an IPv{net.version} CIDR in a rule for {body.ethertype} (ethertype)"
            )
        cidr = str(net)
    port_min, port_max = body.port_min, body.port_max
    if port_min is not None or port_max is not None:
        if body.protocol not in PORTED:
            raise invalid(
                f"{field}.port_min", f"ports need a protocol with ports ({', '.join(sorted(PORTED))})"
            )
        port_min = port_min if port_min is not None else port_max
        port_max = port_max if port_max is not None else port_min
        assert port_min is not None and port_max is not None
        if port_min > port_max:
            raise invalid(f"{field}.port_max", f"{port_max} is below port_min {port_min}")
    if body.sni_allow and body.protocol != "tls":
        raise invalid(f"{field}.sni_allow", "an SNI allow-list needs protocol tls")
    for i, name in enumerate(body.sni_allow):
        if not SNI.match(name):
            raise invalid(f"{field}.sni_allow.{i}", f"'{name}' is not a host name (or *.suffix)")
    remote_group_id = None
    if body.remote_group is not None:
        project = session.get(Project, group.project_id)
        assert project is not None
        remote_group_id = service.find_group(
            session, principal, body.remote_group, project, f"{field}.remote_group"
        ).id
    if body.remote_labels is not None and not body.remote_labels:
        raise invalid(f"{field}.remote_labels", "an empty selector matches nothing")
    return SecurityGroupRule(
        id=new_id("sgr"),
        group_id=group.id,
        tenant_id=group.tenant_id,
        direction=body.direction,
        ethertype=body.ethertype,
        protocol=body.protocol,
        port_min=port_min,
        port_max=port_max,
        remote_cidr=cidr,
        remote_group_id=remote_group_id,
        remote_labels=dict(body.remote_labels) if body.remote_labels else None,
        sni_allow=list(body.sni_allow),
        action=body.action,
    )


@router.get("/v1/security-groups", response_model=Page[GroupOut])
def list_groups(
    session: SessionDep,
    principal: CanRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "created_at",
    name: str | None = None,
    project_id: str | None = None,
) -> Page[GroupOut]:
    if principal.tenant_id is not None and cursor is None:
        # every project has its default group, made on first sight
        for project in session.scalars(select(Project).where(Project.tenant_id == principal.tenant_id)):
            service.default_group(session, project)
    stmt = scoped(select(SecurityGroup), SecurityGroup, principal)
    for col, value in ((SecurityGroup.name, name), (SecurityGroup.project_id, project_id)):
        if value is not None:
            stmt = stmt.where(col == value)
    rows, nxt = paginate(
        session, stmt, SecurityGroup, ListParams(limit, cursor, sort, ("created_at", "name"))
    )
    return Page[GroupOut](items=[GroupOut.of(session, g) for g in rows], next_cursor=nxt)


@router.post("/v1/security-groups", status_code=201, response_model=GroupOut)
def create_group(body: GroupCreate, request: Request, session: SessionDep, principal: CanWrite) -> Response:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    project = resolve_project(session, principal, body.project_id)
    if body.name == service.DEFAULT_GROUP or session.scalar(
        select(SecurityGroup.id).where(
            SecurityGroup.project_id == project.id, SecurityGroup.name == body.name
        )
    ):
        raise name_taken("security group", body.name, "body.name")
    with syncing(session, project.tenant_id):
        group = SecurityGroup(
            id=new_id("sg"),
            project_id=project.id,
            tenant_id=project.tenant_id,
            name=body.name,
            description=body.description,
            selector=dict(body.selector) if body.selector else None,
        )
        session.add(group)
        session.flush()
        for i, rule in enumerate(body.rules):
            session.add(_rule(session, principal, group, rule, f"body.rules.{i}"))
        session.flush()
        events.publish(
            session,
            "security_group.created",
            "security_group",
            group.id,
            tenant_id=group.tenant_id,
            project_id=group.project_id,
            name=group.name,
        )
    return idem.created(GroupOut.of(session, group), group)


@router.get("/v1/security-groups/{group_id}", response_model=GroupOut)
def get_group(group_id: str, response: Response, session: ReadSessionDep, principal: CanRead) -> GroupOut:
    group = get_visible(session, SecurityGroup, group_id, principal, "security group")
    set_etag(response, group)
    return GroupOut.of(session, group)


@router.patch("/v1/security-groups/{group_id}", response_model=GroupOut)
def update_group(
    group_id: str,
    body: GroupUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: CanWrite,
) -> GroupOut:
    group = get_visible(session, SecurityGroup, group_id, principal, "security group")
    check_if_match(request, group)
    with syncing(session, group.tenant_id):
        if body.description is not None:
            group.description = body.description
        if "selector" in body.model_fields_set:
            group.selector = dict(body.selector) if body.selector else None
        session.flush()
    set_etag(response, group)
    return GroupOut.of(session, group)


@router.delete("/v1/security-groups/{group_id}", status_code=204)
def delete_group(group_id: str, request: Request, session: SessionDep, principal: CanWrite) -> Response:
    group = get_visible(session, SecurityGroup, group_id, principal, "security group")
    check_if_match(request, group)
    ports = list(
        session.scalars(
            select(PortSecurityGroup.port_id).where(PortSecurityGroup.group_id == group.id).limit(10)
        )
    )
    if ports:
        raise Problem(409, "Conflict", f"Security group '{group.name}' is used by ports {', '.join(ports)}.")
    with syncing(session, group.tenant_id):
        events.publish(
            session,
            "security_group.deleted",
            "security_group",
            group.id,
            tenant_id=group.tenant_id,
            project_id=group.project_id,
            name=group.name,
        )
        session.delete(group)
    return Response(status_code=204)


@router.post("/v1/security-groups/{group_id}/rules", status_code=201, response_model=RuleOut)
def add_rule(
    group_id: str, body: RuleIn, request: Request, session: SessionDep, principal: CanWrite
) -> Response:
    group = get_visible(session, SecurityGroup, group_id, principal, "security group")
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    with syncing(session, group.tenant_id):
        rule = _rule(session, principal, group, body, "body")
        session.add(rule)
        group.updated_at = utcnow()
        session.flush()
        events.publish(
            session,
            "security_group.rule_added",
            "security_group",
            group.id,
            tenant_id=group.tenant_id,
            project_id=group.project_id,
            rule=rule.id,
        )
    out = RuleOut.of(rule).model_dump(mode="json")
    idem.remember(201, out)
    return JSONResponse(out, status_code=201)


@router.delete("/v1/security-groups/{group_id}/rules/{rule_id}", status_code=204)
def delete_rule(group_id: str, rule_id: str, session: SessionDep, principal: CanWrite) -> Response:
    group = get_visible(session, SecurityGroup, group_id, principal, "security group")
    rule = session.get(SecurityGroupRule, rule_id)
    if rule is None or rule.group_id != group.id:
        raise Problem(404, "Not Found", f"Security group '{group.name}' has no rule '{rule_id}'.")
    with syncing(session, group.tenant_id):
        session.delete(rule)
        group.updated_at = utcnow()
        events.publish(
            session,
            "security_group.rule_deleted",
            "security_group",
            group.id,
            tenant_id=group.tenant_id,
            project_id=group.project_id,
            rule=rule_id,
        )
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
def list_qos(
    session: ReadSessionDep,
    principal: CanRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "created_at",
    name: str | None = None,
) -> Page[QosOut]:
    stmt = scoped(select(QosPolicy), QosPolicy, principal)
    if name is not None:
        stmt = stmt.where(QosPolicy.name == name)
    rows, nxt = paginate(session, stmt, QosPolicy, ListParams(limit, cursor, sort, ("created_at", "name")))
    return Page[QosOut](items=[QosOut.of(q) for q in rows], next_cursor=nxt)


@router.post("/v1/qos-policies", status_code=201, response_model=QosOut)
def create_qos(body: QosCreate, request: Request, session: SessionDep, principal: CanWrite) -> Response:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    if body.guaranteed_kbps is not None:
        for limit_name in ("egress_kbps", "ingress_kbps"):
            limit = getattr(body, limit_name)
            if limit is not None and body.guaranteed_kbps > limit:
                raise invalid(
                    "body.guaranteed_kbps", f"{body.guaranteed_kbps} exceeds {limit_name} ({limit})"
                )
    project = resolve_project(session, principal, body.project_id)
    if session.scalar(
        select(QosPolicy.id).where(QosPolicy.project_id == project.id, QosPolicy.name == body.name)
    ):
        raise name_taken("QoS policy", body.name, "body.name")
    policy = QosPolicy(
        id=new_id("qos"),
        project_id=project.id,
        tenant_id=project.tenant_id,
        name=body.name,
        ingress_kbps=body.ingress_kbps,
        egress_kbps=body.egress_kbps,
        guaranteed_kbps=body.guaranteed_kbps,
        dscp=body.dscp,
    )
    session.add(policy)
    session.flush()
    return idem.created(QosOut.of(policy), policy)


@router.get("/v1/qos-policies/{policy_id}", response_model=QosOut)
def get_qos(policy_id: str, response: Response, session: ReadSessionDep, principal: CanRead) -> QosOut:
    policy = get_visible(session, QosPolicy, policy_id, principal, "QoS policy")
    set_etag(response, policy)
    return QosOut.of(policy)


@router.delete("/v1/qos-policies/{policy_id}", status_code=204)
def delete_qos(policy_id: str, request: Request, session: SessionDep, principal: CanWrite) -> Response:
    policy = get_visible(session, QosPolicy, policy_id, principal, "QoS policy")
    check_if_match(request, policy)
    users = list(session.scalars(select(Port.id).where(Port.qos_policy_id == policy.id).limit(10)))
    if users:
        raise Problem(409, "Conflict", f"QoS policy '{policy.name}' is used by ports {', '.join(users)}.")
    session.delete(policy)
    return Response(status_code=204)

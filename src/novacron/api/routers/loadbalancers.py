"""/v1/loadbalancers and their listeners: Octavia's load balancers, realised by tasks.

Every change answers at once with the load balancer ``PENDING_*``; its ``loadbalancer.apply``
(or ``.delete``) task realises it on the hosts, after which the status is ACTIVE again (or ERROR
when a create could not be realised). A change while one is in flight is a 409 naming the task.
Pools and members are in ``loadbalancer_pools``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.api.routers.vms import accepted
from novacron.db.listing import ListParams
from novacron.db.models import LbListener, LoadBalancer
from novacron.lbaas.listeners import ListenerService, NewListener
from novacron.lbaas.loadbalancers import (
    LoadBalancerChange,
    LoadBalancerParts,
    LoadBalancerService,
    NewLoadBalancer,
)

router = APIRouter(tags=["load balancers"])

LbReader = Annotated[
    LoadBalancerService, Depends(service(LoadBalancerService, "loadbalancer:read", write=False))
]
LbWriter = Annotated[LoadBalancerService, Depends(service(LoadBalancerService, "loadbalancer:write"))]
LbList = Annotated[ListParams, Depends(list_query(("created_at", "name")))]
ListenerReader = Annotated[
    ListenerService, Depends(service(ListenerService, "loadbalancer:read", write=False))
]
ListenerWriter = Annotated[ListenerService, Depends(service(ListenerService, "loadbalancer:write"))]
ChildList = Annotated[ListParams, Depends(list_query(("created_at", "name")))]

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
#: a child's name may be empty (Octavia's default)
CHILD_NAME = r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63})?$"
Description = Annotated[str, Field(max_length=255)]
#: what an integer column holds (the load balancer's own checks then say what is allowed)
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
BASE = "/v1/loadbalancers"
ONE = BASE + "/{loadbalancer_id}"


class LoadBalancerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    description: Description = ""
    project_id: str | None = Field(default=None, max_length=40)
    vip_subnet_id: str = Field(
        min_length=1, max_length=64, description="one of your own subnets (id or name)"
    )
    vip_address: str | None = Field(default=None, max_length=64, description="default: the next free address")
    topology: Literal["SINGLE", "ACTIVE_STANDBY"] = "SINGLE"
    admin_state_up: bool = True
    floating_network_id: str | None = Field(
        default=None,
        max_length=64,
        description="an external network (id or name) to take a floating IP from for the VIP; "
        "a router of yours must join the VIP's network to it",
    )


class LoadBalancerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, pattern=NAME)
    description: Description | None = None
    admin_state_up: bool | None = None


class PartOut(BaseModel):
    id: str
    name: str


class AmphoraOut(BaseModel):
    id: str
    role: str
    host_id: str | None
    address: str


class LoadBalancerOut(BaseModel):
    id: str
    name: str
    description: str
    project_id: str
    tenant_id: str
    vip_subnet_id: str
    vip_network_id: str
    vip_port_id: str | None
    vip_address: str
    #: the floating IP DNAT'ed to the VIP (associate one with POST /v1/floating-ips, port = vip_port_id)
    floating_ip: str | None
    topology: str
    admin_state_up: bool
    provisioning_status: str
    operating_status: str
    #: the task of the change in flight (or of the last one)
    task_id: str | None
    listeners: list[PartOut]
    pools: list[PartOut]
    #: where its legs run (platform administrators only)
    amphorae: list[AmphoraOut] | None
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, lb: LoadBalancer, parts: LoadBalancerParts) -> LoadBalancerOut:
        legs = parts.amphorae
        return cls(
            id=lb.id,
            name=lb.name,
            description=lb.description,
            project_id=lb.project_id,
            tenant_id=lb.tenant_id,
            vip_subnet_id=lb.vip_subnet_id,
            vip_network_id=lb.vip_network_id,
            vip_port_id=lb.vip_port_id,
            vip_address=lb.vip_address,
            floating_ip=parts.floating_ip,
            topology=lb.topology,
            admin_state_up=lb.admin_state_up,
            provisioning_status=lb.provisioning_status,
            operating_status=lb.operating_status,
            task_id=lb.task_id,
            listeners=[PartOut(id=p.id, name=p.name) for p in parts.listeners],
            pools=[PartOut(id=p.id, name=p.name) for p in parts.pools],
            amphorae=None if legs is None else [AmphoraOut(**vars(a)) for a in legs],
            created_at=lb.created_at,
            updated_at=lb.updated_at,
            version=lb.version,
        )


class FailoverAccepted(BaseModel):
    #: the ``loadbalancer.failover`` task to follow
    task_id: str
    loadbalancer: LoadBalancerOut


class L7RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, max_length=64)
    type: Literal["HOST_NAME", "PATH", "HEADER", "COOKIE"]
    compare_type: Literal["EQUAL_TO", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "REGEX"]
    value: str = Field(max_length=255)
    key: str | None = Field(default=None, max_length=128)
    invert: bool = False


class L7PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, max_length=64)
    action: Literal["REDIRECT_TO_POOL", "REDIRECT_TO_URL", "REJECT"]
    position: int = 1
    rules: list[L7RuleIn] = Field(max_length=32)
    redirect_pool_id: str | None = Field(default=None, max_length=64)
    redirect_url: str | None = Field(default=None, max_length=2048)
    redirect_http_code: int = 302


class ProtectionIn(BaseModel):
    """Per-source limits, allow and deny lists and bans (``lbaas.protection``)."""

    model_config = ConfigDict(extra="forbid")
    rate_limit: int | None = None
    rate_period_s: int = 10
    connection_limit: int | None = None
    request_timeout_ms: int | None = None
    allow_cidrs: list[str] = Field(default_factory=list, max_length=256)
    deny_cidrs: list[str] = Field(default_factory=list, max_length=256)
    ban_factor: float = 2.0
    ban_seconds: int = 300
    ban_error_ratio: float | None = Field(
        default=None, description="ban a source whose failed share reaches this"
    )
    ban_error_min_requests: int = Field(
        default=100, description="requests in the period before the ratio counts"
    )
    syn_flood: bool = Field(
        default=False, description="SYN cookies (nftables synproxy) on the listener's port"
    )


class QosIn(BaseModel):
    """A listener's limits (``lbaas.qos``): kbit/s sent to its clients, new connections per second."""

    model_config = ConfigDict(extra="forbid")
    bandwidth_kbit: int | None = None
    connection_rate: int | None = None


InsertHeader = Literal["X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto"]


class ListenerFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="", pattern=CHILD_NAME)
    description: Description = ""
    default_pool_id: str | None = Field(default=None, max_length=64)
    connection_limit: Int32 | None = None
    timeout_client_data: Int32 | None = Field(default=None, description="milliseconds")
    timeout_member_connect: Int32 | None = Field(default=None, description="milliseconds")
    timeout_member_data: Int32 | None = Field(default=None, description="milliseconds")
    insert_headers: list[InsertHeader] = Field(default_factory=list, max_length=3)
    default_tls_container_ref: str | None = Field(default=None, max_length=64)
    sni_container_refs: list[str] = Field(default_factory=list, max_length=64)
    protection: ProtectionIn | None = None
    qos: QosIn | None = None
    l7policies: list[L7PolicyIn] = Field(default_factory=list, max_length=64)
    admin_state_up: bool = True


class ListenerCreate(ListenerFields):
    protocol: Literal["TCP", "HTTP", "HTTPS", "TERMINATED_HTTPS"]
    protocol_port: int = Field(ge=1, le=65535)


class ListenerUpdate(ListenerFields):
    """Only the fields sent change."""


class ListenerOut(BaseModel):
    id: str
    loadbalancer_id: str
    name: str
    description: str
    protocol: str
    protocol_port: int
    default_pool_id: str | None
    connection_limit: int | None
    timeout_client_data: int | None
    timeout_member_connect: int | None
    timeout_member_data: int | None
    insert_headers: list[str]
    default_tls_container_ref: str | None
    sni_container_refs: list[str]
    protection: dict[str, Any] | None
    qos: dict[str, Any] | None
    l7policies: list[dict[str, Any]]
    admin_state_up: bool
    operating_status: str
    created_at: datetime
    version: int

    @classmethod
    def of(cls, li: LbListener) -> ListenerOut:
        fields = {name: getattr(li, name) for name in cls.model_fields}
        return cls(**fields)


def _lb_out(lbs: LoadBalancerService, lb: LoadBalancer) -> LoadBalancerOut:
    return LoadBalancerOut.of(lb, lbs.parts(lb))


# ---- load balancers ----------------------------------------------------------------------------


@router.get(BASE, response_model=Page[LoadBalancerOut])
def list_loadbalancers(
    lbs: LbReader, page: LbList, name: str | None = None, project_id: str | None = None
) -> Page[LoadBalancerOut]:
    rows, nxt = lbs.list(page, name=name, project_id=project_id)
    return Page[LoadBalancerOut](items=[_lb_out(lbs, lb) for lb in rows], next_cursor=nxt)


@router.post(BASE, status_code=201, response_model=LoadBalancerOut)
def create_loadbalancer(body: LoadBalancerCreate, lbs: LbWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    lb = lbs.create(NewLoadBalancer(**body.model_dump()))
    return idem.created(_lb_out(lbs, lb), lb)


@router.get(ONE, response_model=LoadBalancerOut)
def get_loadbalancer(loadbalancer_id: str, response: Response, lbs: LbReader) -> LoadBalancerOut:
    lb = lbs.get(loadbalancer_id)
    set_etag(response, lb)
    return _lb_out(lbs, lb)


@router.patch(ONE, response_model=LoadBalancerOut)
def update_loadbalancer(
    loadbalancer_id: str, body: LoadBalancerUpdate, request: Request, response: Response, lbs: LbWriter
) -> LoadBalancerOut:
    lb = lbs.get(loadbalancer_id)
    check_if_match(request, lb)
    lbs.update(lb, LoadBalancerChange(**body.model_dump()))
    set_etag(response, lb)
    return _lb_out(lbs, lb)


@router.delete(ONE, status_code=204)
def delete_loadbalancer(loadbalancer_id: str, request: Request, lbs: LbWriter) -> Response:
    lb = lbs.get(loadbalancer_id)
    check_if_match(request, lb)
    lbs.delete(lb)
    return Response(status_code=204)


@router.post(ONE + "/failover", status_code=202, response_model=FailoverAccepted)
def failover_loadbalancer(loadbalancer_id: str, lbs: LbWriter, idem: IdempotencyDep) -> Response:
    """Octavia's failover: legs lost with a fenced host move to other hosts, every leg is applied
    again (the failover in flight when one is)."""
    lb = lbs.get(loadbalancer_id)
    if (replay := idem.replay({"failover": lb.id})) is not None:
        return replay
    task = lbs.failover(lb)
    return accepted(idem, task, FailoverAccepted(task_id=task.id, loadbalancer=_lb_out(lbs, lb)))


# ---- listeners ---------------------------------------------------------------------------------


@router.get(ONE + "/listeners", response_model=Page[ListenerOut])
def list_listeners(loadbalancer_id: str, listeners: ListenerReader, page: ChildList) -> Page[ListenerOut]:
    rows, nxt = listeners.list(listeners.loadbalancer(loadbalancer_id), page)
    return Page[ListenerOut](items=[ListenerOut.of(li) for li in rows], next_cursor=nxt)


@router.post(ONE + "/listeners", status_code=201, response_model=ListenerOut)
def create_listener(
    loadbalancer_id: str, body: ListenerCreate, listeners: ListenerWriter, idem: IdempotencyDep
) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    lb = listeners.loadbalancer(loadbalancer_id)
    listener = listeners.create(lb, NewListener(**body.model_dump()))
    return idem.created(ListenerOut.of(listener), listener)


@router.get(ONE + "/listeners/{listener_id}", response_model=ListenerOut)
def get_listener(
    loadbalancer_id: str, listener_id: str, response: Response, listeners: ListenerReader
) -> ListenerOut:
    listener = listeners.get(listeners.loadbalancer(loadbalancer_id), listener_id)
    set_etag(response, listener)
    return ListenerOut.of(listener)


@router.patch(ONE + "/listeners/{listener_id}", response_model=ListenerOut)
def update_listener(
    loadbalancer_id: str,
    listener_id: str,
    body: ListenerUpdate,
    request: Request,
    response: Response,
    listeners: ListenerWriter,
) -> ListenerOut:
    lb = listeners.loadbalancer(loadbalancer_id)
    listener = listeners.get(lb, listener_id)
    check_if_match(request, listener)
    listeners.update(lb, listener, body.model_dump(exclude_unset=True))
    set_etag(response, listener)
    return ListenerOut.of(listener)


@router.delete(ONE + "/listeners/{listener_id}", status_code=204)
def delete_listener(
    loadbalancer_id: str, listener_id: str, request: Request, listeners: ListenerWriter
) -> Response:
    lb = listeners.loadbalancer(loadbalancer_id)
    listener = listeners.get(lb, listener_id)
    check_if_match(request, listener)
    listeners.delete(lb, listener)
    return Response(status_code=204)

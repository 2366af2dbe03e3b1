"""/v1/loadbalancers/{id}/pools, their health monitor and their members.

Like every change of a load balancer, each answers at once and is realised by the load balancer's
``loadbalancer.apply`` task (``loadbalancers`` module); a member's address must be one of the
tenant's own (given, or a VM's port address).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.api.routers.loadbalancers import CHILD_NAME, ONE, Description, Int32
from novacron.db.listing import ListParams
from novacron.db.models import LbMember, LbPool
from novacron.lbaas.members import MemberService, NewMember
from novacron.lbaas.pools import NewPool, PoolService

router = APIRouter(tags=["load balancers"])

PoolReader = Annotated[PoolService, Depends(service(PoolService, "loadbalancer:read", write=False))]
PoolWriter = Annotated[PoolService, Depends(service(PoolService, "loadbalancer:write"))]
MemberReader = Annotated[MemberService, Depends(service(MemberService, "loadbalancer:read", write=False))]
MemberWriter = Annotated[MemberService, Depends(service(MemberService, "loadbalancer:write"))]
ChildList = Annotated[ListParams, Depends(list_query(("created_at", "name")))]
POOLS = ONE + "/pools"
POOL = POOLS + "/{pool_id}"
MEMBERS = POOL + "/members"

Algorithm = Literal[
    "ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP", "URI_HASH", "HEADER_HASH", "COOKIE_HASH", "RANDOM_TWO"
]


class PersistenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["SOURCE_IP", "HTTP_COOKIE", "APP_COOKIE"]
    cookie_name: str | None = Field(default=None, max_length=128)


class HealthMonitorIn(BaseModel):
    """Every ``delay`` seconds, ``timeout`` seconds to answer; ``max_retries`` successes bring a
    member up, ``max_retries_down`` failures take it down."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["TCP", "HTTP", "HTTPS"] = "TCP"
    delay: int = 5
    timeout: int = 3
    max_retries: int = 2
    max_retries_down: int = 3
    http_method: Literal["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"] = (
        "GET"
    )
    url_path: str = Field(default="/", max_length=2048)
    expected_codes: str = Field(default="200", max_length=64)


class PoolFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="", pattern=CHILD_NAME)
    description: Description = ""
    lb_algorithm: Algorithm = "ROUND_ROBIN"
    hash_key: str | None = Field(default=None, max_length=128)
    session_persistence: PersistenceIn | None = None
    admin_state_up: bool = True


class PoolCreate(PoolFields):
    protocol: Literal["TCP", "HTTP", "HTTPS", "PROXY", "PROXYV2"]
    healthmonitor: HealthMonitorIn | None = None
    listener_id: str | None = Field(
        default=None, max_length=64, description="make it this listener's default"
    )


class PoolUpdate(PoolFields):
    """Only the fields sent change."""


class PoolOut(BaseModel):
    id: str
    loadbalancer_id: str
    name: str
    description: str
    protocol: str
    lb_algorithm: str
    hash_key: str | None
    session_persistence: dict[str, Any] | None
    healthmonitor: dict[str, Any] | None
    admin_state_up: bool
    operating_status: str
    created_at: datetime
    version: int

    @classmethod
    def of(cls, pool: LbPool) -> PoolOut:
        return cls(**{name: getattr(pool, name) for name in cls.model_fields})


class MemberFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="", pattern=CHILD_NAME)
    weight: Int32 = 1
    backup: bool = False
    admin_state_up: bool = True
    drain: bool = Field(default=False, description="keep its sessions, send it nothing new")


class MemberCreate(MemberFields):
    protocol_port: int = Field(ge=1, le=65535)
    address: str | None = Field(default=None, max_length=64, description="an address of your own subnets")
    subnet_id: str | None = Field(default=None, max_length=64)
    vm_id: str | None = Field(default=None, max_length=64, description="instead of address: this VM's")
    network: str | None = Field(default=None, max_length=64, description="the VM's port on this network")


class MemberUpdate(MemberFields):
    """Only the fields sent change."""


class MemberOut(BaseModel):
    id: str
    pool_id: str
    loadbalancer_id: str
    name: str
    address: str
    protocol_port: int
    subnet_id: str
    vm_id: str | None
    weight: int
    backup: bool
    admin_state_up: bool
    drain: bool
    operating_status: str
    created_at: datetime
    version: int

    @classmethod
    def of(cls, member: LbMember) -> MemberOut:
        return cls(**{name: getattr(member, name) for name in cls.model_fields})


# ---- pools -------------------------------------------------------------------------------------


@router.get(POOLS, response_model=Page[PoolOut])
def list_pools(loadbalancer_id: str, pools: PoolReader, page: ChildList) -> Page[PoolOut]:
    rows, nxt = pools.list(pools.loadbalancer(loadbalancer_id), page)
    return Page[PoolOut](items=[PoolOut.of(p) for p in rows], next_cursor=nxt)


@router.post(POOLS, status_code=201, response_model=PoolOut)
def create_pool(loadbalancer_id: str, body: PoolCreate, pools: PoolWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    pool = pools.create(pools.loadbalancer(loadbalancer_id), NewPool(**body.model_dump()))
    return idem.created(PoolOut.of(pool), pool)


@router.get(POOL, response_model=PoolOut)
def get_pool(loadbalancer_id: str, pool_id: str, response: Response, pools: PoolReader) -> PoolOut:
    pool = pools.get(pools.loadbalancer(loadbalancer_id), pool_id)
    set_etag(response, pool)
    return PoolOut.of(pool)


@router.patch(POOL, response_model=PoolOut)
def update_pool(
    loadbalancer_id: str,
    pool_id: str,
    body: PoolUpdate,
    request: Request,
    response: Response,
    pools: PoolWriter,
) -> PoolOut:
    lb = pools.loadbalancer(loadbalancer_id)
    pool = pools.get(lb, pool_id)
    check_if_match(request, pool)
    pools.update(lb, pool, body.model_dump(exclude_unset=True))
    set_etag(response, pool)
    return PoolOut.of(pool)


@router.delete(POOL, status_code=204)
def delete_pool(loadbalancer_id: str, pool_id: str, request: Request, pools: PoolWriter) -> Response:
    lb = pools.loadbalancer(loadbalancer_id)
    pool = pools.get(lb, pool_id)
    check_if_match(request, pool)
    pools.delete(lb, pool)
    return Response(status_code=204)


@router.put(POOL + "/healthmonitor", response_model=PoolOut)
def put_healthmonitor(
    loadbalancer_id: str, pool_id: str, body: HealthMonitorIn, response: Response, pools: PoolWriter
) -> PoolOut:
    lb = pools.loadbalancer(loadbalancer_id)
    pool = pools.set_healthmonitor(lb, pools.get(lb, pool_id), body.model_dump())
    set_etag(response, pool)
    return PoolOut.of(pool)


@router.delete(POOL + "/healthmonitor", status_code=204)
def delete_healthmonitor(loadbalancer_id: str, pool_id: str, pools: PoolWriter) -> Response:
    lb = pools.loadbalancer(loadbalancer_id)
    pools.set_healthmonitor(lb, pools.get(lb, pool_id), None)
    return Response(status_code=204)


# ---- members -----------------------------------------------------------------------------------


@router.get(MEMBERS, response_model=Page[MemberOut])
def list_members(
    loadbalancer_id: str, pool_id: str, members: MemberReader, page: ChildList
) -> Page[MemberOut]:
    pool = members.pool(members.loadbalancer(loadbalancer_id), pool_id)
    rows, nxt = members.list(pool, page)
    return Page[MemberOut](items=[MemberOut.of(m) for m in rows], next_cursor=nxt)


@router.post(MEMBERS, status_code=201, response_model=MemberOut)
def create_member(
    loadbalancer_id: str, pool_id: str, body: MemberCreate, members: MemberWriter, idem: IdempotencyDep
) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    lb = members.loadbalancer(loadbalancer_id)
    member = members.create(lb, members.pool(lb, pool_id), NewMember(**body.model_dump()))
    return idem.created(MemberOut.of(member), member)


@router.get(MEMBERS + "/{member_id}", response_model=MemberOut)
def get_member(
    loadbalancer_id: str, pool_id: str, member_id: str, response: Response, members: MemberReader
) -> MemberOut:
    lb = members.loadbalancer(loadbalancer_id)
    member = members.get(lb, members.pool(lb, pool_id), member_id)
    set_etag(response, member)
    return MemberOut.of(member)


@router.patch(MEMBERS + "/{member_id}", response_model=MemberOut)
def update_member(  # noqa: PLR0913 - the path's three ids, the body, the request and the service
    loadbalancer_id: str,
    pool_id: str,
    member_id: str,
    body: MemberUpdate,
    request: Request,
    response: Response,
    members: MemberWriter,
) -> MemberOut:
    lb = members.loadbalancer(loadbalancer_id)
    member = members.get(lb, members.pool(lb, pool_id), member_id)
    check_if_match(request, member)
    members.update(lb, member, body.model_dump(exclude_unset=True))
    set_etag(response, member)
    return MemberOut.of(member)


@router.delete(MEMBERS + "/{member_id}", status_code=204)
def delete_member(
    loadbalancer_id: str, pool_id: str, member_id: str, request: Request, members: MemberWriter
) -> Response:
    lb = members.loadbalancer(loadbalancer_id)
    member = members.get(lb, members.pool(lb, pool_id), member_id)
    check_if_match(request, member)
    members.delete(lb, member)
    return Response(status_code=204)

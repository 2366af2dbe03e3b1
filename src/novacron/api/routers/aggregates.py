"""/v1/aggregates: named groups of hosts with metadata, defined by administrators.

A VM asks for one with ``placement: {aggregate: NAME}``; only the aggregate's hosts are then
candidates. The metadata key ``tenants`` (comma-separated tenant ids) reserves the aggregate's hosts
for those tenants: no other tenant's VM is placed there (Nova's multi-tenancy isolation).
Readable by whoever may read hosts (tenant roles see a reservation only when it names their own
tenant: which tenants a group is kept for is theirs to know, not the others'); written by
platform administrators.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from novacron import events
from novacron.api.concurrency import Idempotency, check_if_match, set_etag
from novacron.api.deps import ReadSessionDep, SessionDep, require
from novacron.api.errors import Problem, invalid, not_found
from novacron.api.listing import Page
from novacron.compute.placement import invalidate
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import Aggregate, AggregateHost, Host
from novacron.identity.principal import Principal

router = APIRouter(prefix="/v1/aggregates", tags=["aggregates"])

CanRead = Annotated[Principal, Depends(require("host:read"))]
CanWrite = Annotated[Principal, Depends(require("aggregate:write"))]

NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"
META_KEY = r"^[A-Za-z0-9][A-Za-z0-9:._/-]{0,62}$"
Metadata = dict[Annotated[str, Field(pattern=META_KEY)], Annotated[str, Field(max_length=255)]]


class AggregateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    metadata: Metadata = Field(default_factory=dict, max_length=64)
    hosts: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=1000, description="host ids or names"
    )


class AggregateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, pattern=NAME)
    metadata: Metadata | None = Field(default=None, max_length=64)
    hosts: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None, max_length=1000, description="replaces the member list"
    )


class AggregateOut(BaseModel):
    id: str
    name: str
    metadata: dict[str, str]
    hosts: list[str]
    created_at: datetime
    version: int

    @classmethod
    def of(cls, session: Session, a: Aggregate, principal: Principal | None = None) -> AggregateOut:
        hosts = session.scalars(
            select(Host.name)
            .join(AggregateHost, AggregateHost.host_id == Host.id)
            .where(AggregateHost.aggregate_id == a.id)
            .order_by(Host.name)
        )
        return cls(
            id=a.id,
            name=a.name,
            metadata=metadata_for(a.meta or {}, principal),
            hosts=list(hosts),
            created_at=a.created_at,
            version=a.version,
        )


#: the metadata key reserving an aggregate's hosts for some tenants (comma-separated tenant ids)
TENANTS_KEY = "tenants"


def metadata_for(meta: dict[str, str], principal: Principal | None) -> dict[str, str]:
    """The metadata a caller may see: all of it for platform administrators; for anyone else, the
    reservation only when it names the caller's own tenant (and then only that tenant), never
    which other tenants a host group is kept for."""
    if principal is None or principal.is_global:
        return dict(meta)
    shown = {k: v for k, v in meta.items() if k != TENANTS_KEY}
    reserved_for = {t.strip() for t in meta.get(TENANTS_KEY, "").split(",") if t.strip()}
    if principal.tenant_id is not None and principal.tenant_id in reserved_for:
        shown[TENANTS_KEY] = principal.tenant_id
    return shown


def _get(session: Session, ident: str) -> Aggregate:
    agg = session.scalar(select(Aggregate).where((Aggregate.id == ident) | (Aggregate.name == ident)))
    if agg is None:
        raise not_found("aggregate", ident)
    return agg


def _host_ids(session: Session, refs: list[str]) -> list[str]:
    ids = []
    for i, ref in enumerate(refs):
        host_id = session.scalar(select(Host.id).where((Host.id == ref) | (Host.name == ref)))
        if host_id is None:
            raise invalid(f"body.hosts.{i}", f"no host '{ref}'; see GET /v1/hosts")
        ids.append(host_id)
    return sorted(set(ids))


def _set_hosts(session: Session, agg: Aggregate, host_ids: list[str]) -> None:
    session.execute(delete(AggregateHost).where(AggregateHost.aggregate_id == agg.id))
    session.add_all(AggregateHost(aggregate_id=agg.id, host_id=h) for h in host_ids)


def _name_taken(session: Session, name: str, but: str | None = None) -> None:
    other = session.scalar(select(Aggregate.id).where(Aggregate.name == name))
    if other is not None and other != but:
        raise Problem(
            409,
            "Conflict",
            f"An aggregate named '{name}' exists.",
            errors=[{"field": "body.name", "reason": "already used"}],
        )


@router.get("", response_model=Page[AggregateOut])
def list_aggregates(
    session: ReadSessionDep,
    principal: CanRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "name",
    name: str | None = None,
) -> Page[AggregateOut]:
    stmt = select(Aggregate)
    if name is not None:
        stmt = stmt.where(Aggregate.name == name)
    rows, nxt = paginate(session, stmt, Aggregate, ListParams(limit, cursor, sort, ("name", "created_at")))
    return Page[AggregateOut](items=[AggregateOut.of(session, a, principal) for a in rows], next_cursor=nxt)


@router.post("", status_code=201, response_model=AggregateOut)
def create_aggregate(
    body: AggregateCreate, request: Request, session: SessionDep, principal: CanWrite
) -> Response:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    _name_taken(session, body.name)
    agg = Aggregate(id=new_id("agg"), name=body.name, meta=dict(body.metadata))
    session.add(agg)
    session.flush()
    _set_hosts(session, agg, _host_ids(session, body.hosts))
    session.flush()
    events.publish(session, "aggregate.created", "aggregate", agg.id, tenant_id=None, name=agg.name)
    invalidate(session)
    return idem.created(AggregateOut.of(session, agg), agg)


@router.get("/{aggregate_id}", response_model=AggregateOut)
def get_aggregate(
    aggregate_id: str, response: Response, session: ReadSessionDep, principal: CanRead
) -> AggregateOut:
    agg = _get(session, aggregate_id)
    set_etag(response, agg)
    return AggregateOut.of(session, agg, principal)


@router.patch("/{aggregate_id}", response_model=AggregateOut)
def update_aggregate(
    aggregate_id: str,
    body: AggregateUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: CanWrite,
) -> AggregateOut:
    agg = _get(session, aggregate_id)
    check_if_match(request, agg)
    if body.name is not None:
        _name_taken(session, body.name, but=agg.id)
        agg.name = body.name
    if body.metadata is not None:
        agg.meta = dict(body.metadata)
    if body.hosts is not None:
        _set_hosts(session, agg, _host_ids(session, body.hosts))
        flag_modified(agg, "meta")  # membership is part of the aggregate: a new version and ETag
    session.flush()
    events.publish(session, "aggregate.updated", "aggregate", agg.id, tenant_id=None, name=agg.name)
    invalidate(session)
    set_etag(response, agg)
    return AggregateOut.of(session, agg)


@router.delete("/{aggregate_id}", status_code=204)
def delete_aggregate(
    aggregate_id: str, request: Request, session: SessionDep, principal: CanWrite
) -> Response:
    agg = _get(session, aggregate_id)
    check_if_match(request, agg)
    events.publish(session, "aggregate.deleted", "aggregate", agg.id, tenant_id=None, name=agg.name)
    session.delete(agg)
    invalidate(session)
    return Response(status_code=204)

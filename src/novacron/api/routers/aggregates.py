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

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.compute.aggregates import AggregateChange, AggregateService, AggregateSpec, AggregateView
from novacron.db.listing import ListParams

router = APIRouter(prefix="/v1/aggregates", tags=["aggregates"])

AggregateReader = Annotated[AggregateService, Depends(service(AggregateService, "host:read", write=False))]
AggregateWriter = Annotated[AggregateService, Depends(service(AggregateService, "aggregate:write"))]
AggregateList = Annotated[ListParams, Depends(list_query(("name", "created_at"), "name"))]

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
    def of(cls, view: AggregateView) -> AggregateOut:
        a = view.aggregate
        return cls(
            id=a.id,
            name=a.name,
            metadata=view.metadata,
            hosts=view.hosts,
            created_at=a.created_at,
            version=a.version,
        )


@router.get("", response_model=Page[AggregateOut])
def list_aggregates(
    aggregates: AggregateReader, page: AggregateList, name: str | None = None
) -> Page[AggregateOut]:
    rows, nxt = aggregates.list(page, name=name)
    return Page[AggregateOut](items=[AggregateOut.of(a) for a in rows], next_cursor=nxt)


@router.post("", status_code=201, response_model=AggregateOut)
def create_aggregate(body: AggregateCreate, aggregates: AggregateWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    view = aggregates.create(AggregateSpec(body.name, dict(body.metadata), list(body.hosts)))
    return idem.created(AggregateOut.of(view), view.aggregate)


@router.get("/{aggregate_id}", response_model=AggregateOut)
def get_aggregate(aggregate_id: str, response: Response, aggregates: AggregateReader) -> AggregateOut:
    view = aggregates.get(aggregate_id)
    set_etag(response, view.aggregate)
    return AggregateOut.of(view)


@router.patch("/{aggregate_id}", response_model=AggregateOut)
def update_aggregate(
    aggregate_id: str,
    body: AggregateUpdate,
    request: Request,
    response: Response,
    aggregates: AggregateWriter,
) -> AggregateOut:
    agg = aggregates.get(aggregate_id).aggregate
    check_if_match(request, agg)
    view = aggregates.update(agg, AggregateChange(body.name, body.metadata, body.hosts))
    set_etag(response, view.aggregate)
    return AggregateOut.of(view)


@router.delete("/{aggregate_id}", status_code=204)
def delete_aggregate(aggregate_id: str, request: Request, aggregates: AggregateWriter) -> Response:
    agg = aggregates.get(aggregate_id).aggregate
    check_if_match(request, agg)
    aggregates.delete(agg)
    return Response(status_code=204)

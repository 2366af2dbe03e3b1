"""/v1/tenants: the platform's organisations; a caller without ``global`` sees only its own."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.db.listing import ListParams
from novacron.db.models import Tenant
from novacron.identity.tenants import TenantChanges, TenantService

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])

TenantReader = Annotated[TenantService, Depends(service(TenantService, "tenant:read", write=False))]
TenantWriter = Annotated[TenantService, Depends(service(TenantService, "tenant:write"))]
TenantList = Annotated[ListParams, Depends(list_query(("name", "created_at"), "name"))]
#: the names of tenants and projects
NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    description: str = Field("", max_length=255)


class TenantUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, pattern=NAME)
    description: str | None = Field(None, max_length=255)


class TenantOut(BaseModel):
    id: str
    name: str
    description: str
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, t: Tenant) -> TenantOut:
        return cls(
            id=t.id,
            name=t.name,
            description=t.description,
            created_at=t.created_at,
            updated_at=t.updated_at,
            version=t.version,
        )


@router.get("", response_model=Page[TenantOut])
def list_tenants(tenants: TenantReader, page: TenantList, name: str | None = None) -> Page[TenantOut]:
    rows, nxt = tenants.list(page, name=name)
    return Page[TenantOut](items=[TenantOut.of(t) for t in rows], next_cursor=nxt)


@router.post("", status_code=201, response_model=TenantOut)
def create_tenant(body: TenantCreate, tenants: TenantWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    tenant = tenants.create(body.name, body.description)
    return idem.created(TenantOut.of(tenant), tenant)


@router.get("/{tenant_id}", response_model=TenantOut)
def get_tenant(tenant_id: str, response: Response, tenants: TenantReader) -> TenantOut:
    tenant = tenants.get(tenant_id)
    set_etag(response, tenant)
    return TenantOut.of(tenant)


@router.patch("/{tenant_id}", response_model=TenantOut)
def update_tenant(
    tenant_id: str, body: TenantUpdate, request: Request, response: Response, tenants: TenantWriter
) -> TenantOut:
    tenant = tenants.get(tenant_id)
    check_if_match(request, tenant)
    tenants.update(tenant, TenantChanges(**body.model_dump()))
    set_etag(response, tenant)
    return TenantOut.of(tenant)


@router.delete("/{tenant_id}", status_code=204)
def delete_tenant(tenant_id: str, tenants: TenantWriter) -> Response:
    tenants.delete(tenant_id)
    return Response(status_code=204)

"""/v1/projects: where a tenant's resources and quotas live; sub-projects nest in their parent."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.api.routers.tenants import NAME
from novacron.db.listing import ListParams
from novacron.db.models import Project
from novacron.identity.projects import ProjectChanges, ProjectService, ProjectSpec

router = APIRouter(prefix="/v1/projects", tags=["projects"])

ProjectReader = Annotated[ProjectService, Depends(service(ProjectService, "project:read", write=False))]
ProjectWriter = Annotated[ProjectService, Depends(service(ProjectService, "project:write"))]
ProjectList = Annotated[ListParams, Depends(list_query(("name", "created_at"), "name"))]


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    description: str = Field("", max_length=255)
    #: required for platform administrators; others create in their own tenant
    tenant_id: str | None = Field(None, max_length=64)
    #: a sub-project: its quota nests inside the parent's (same tenant)
    parent_id: str | None = Field(None, max_length=40)


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, pattern=NAME)
    description: str | None = Field(None, max_length=255)


class ProjectOut(BaseModel):
    id: str
    tenant_id: str
    name: str
    description: str
    parent_id: str | None = None
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, p: Project) -> ProjectOut:
        return cls(
            id=p.id,
            tenant_id=p.tenant_id,
            parent_id=p.parent_id,
            name=p.name,
            description=p.description,
            created_at=p.created_at,
            updated_at=p.updated_at,
            version=p.version,
        )


@router.get("", response_model=Page[ProjectOut])
def list_projects(
    projects: ProjectReader, page: ProjectList, name: str | None = None, tenant_id: str | None = None
) -> Page[ProjectOut]:
    rows, nxt = projects.list(page, name=name, tenant_id=tenant_id)
    return Page[ProjectOut](items=[ProjectOut.of(p) for p in rows], next_cursor=nxt)


@router.post("", status_code=201, response_model=ProjectOut)
def create_project(body: ProjectCreate, projects: ProjectWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    project = projects.create(ProjectSpec(**body.model_dump()))
    return idem.created(ProjectOut.of(project), project)


@router.get("/{project_id}", response_model=ProjectOut)
def get_project(project_id: str, response: Response, projects: ProjectReader) -> ProjectOut:
    project = projects.get(project_id)
    set_etag(response, project)
    return ProjectOut.of(project)


@router.patch("/{project_id}", response_model=ProjectOut)
def update_project(
    project_id: str, body: ProjectUpdate, request: Request, response: Response, projects: ProjectWriter
) -> ProjectOut:
    project = projects.get(project_id)
    check_if_match(request, project)
    projects.update(project, ProjectChanges(**body.model_dump()))
    set_etag(response, project)
    return ProjectOut.of(project)


@router.delete("/{project_id}", status_code=204)
def delete_project(project_id: str, projects: ProjectWriter) -> Response:
    projects.delete(project_id)
    return Response(status_code=204)

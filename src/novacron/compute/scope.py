"""The project a new resource goes to (what a caller sees, and names, is ``db/resolve.py``'s)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.db.models import Project
from novacron.errors import InvalidInput, NotFound, on_field
from novacron.identity.principal import Principal


def resolve_project(session: Session, principal: Principal, project_id: str | None) -> Project:
    """The project a new resource goes to: the one named, or the caller's only project."""
    if project_id is not None:
        project = session.get(Project, project_id)
        if project is None or not principal.sees_tenant(project.tenant_id):
            raise on_field(NotFound, "project_id", f"no project '{project_id}' is visible to you")
        return project
    if principal.tenant_id is None:
        raise InvalidInput("project_id", "required for platform administrators")
    projects = list(session.scalars(select(Project).where(Project.tenant_id == principal.tenant_id).limit(2)))
    if len(projects) != 1:
        raise InvalidInput("project_id", "your tenant has several projects (or none): name one")
    return projects[0]

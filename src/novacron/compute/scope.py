"""Tenant scoping of queries: the one place that decides what a caller may see."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from novacron.db.models import Image, Network, Project
from novacron.errors import Conflict, InvalidInput, NotFound, on_field
from novacron.identity.principal import Principal

M = TypeVar("M")


def scoped(stmt: Select[Any], model: Any, principal: Principal) -> Select[Any]:
    if principal.is_global:
        return stmt
    if model is Image:
        return stmt.where(or_(Image.tenant_id == principal.tenant_id, Image.public.is_(True)))
    if model is Network:  # shared and external networks are usable by every tenant
        return stmt.where(
            or_(
                Network.tenant_id == principal.tenant_id, Network.shared.is_(True), Network.external.is_(True)
            )
        )
    return stmt.where(model.tenant_id == principal.tenant_id)


def get_visible(session: Session, model: type[M], ident: str, principal: Principal, kind: str) -> M:
    """Fetch by id, or by name when unique among what the caller sees; 404 for anything invisible."""
    table: Any = model
    row: M | None = session.scalar(scoped(select(model).where(table.id == ident), model, principal))
    if row is None and hasattr(model, "name"):
        rows: list[M] = list(
            session.scalars(scoped(select(model).where(table.name == ident), model, principal).limit(2))
        )
        if len(rows) == 1:
            row = rows[0]
        elif len(rows) > 1:
            raise on_field(Conflict, kind, f"the name '{ident}' is ambiguous; use the id", part="")
    if row is None:
        raise NotFound(kind, ident)
    return row


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

"""Projects: where a tenant's resources and quotas live; a sub-project nests in its parent's quota.
A caller without ``global`` sees only its own tenant's projects, and names them by id or name."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import VM, Project
from novacron.db.resolve import resolve
from novacron.errors import Conflict, InvalidInput, NotFound, on_field
from novacron.identity.scoping import duplicate, flush_unique, target_tenant
from novacron.quota.tree import MAX_DEPTH, forget_project, project_ancestry
from novacron.service import Service

KIND = "project in this tenant"


@dataclass(frozen=True)
class ProjectSpec:
    """A project to create; ``tenant_id`` None is the caller's own tenant."""

    name: str
    description: str = ""
    tenant_id: str | None = None
    parent_id: str | None = None


@dataclass(frozen=True)
class ProjectChanges:
    """A project's fields to change; None leaves one as it is."""

    name: str | None = None
    description: str | None = None


class ProjectService(Service):
    """Create, read, rename and delete projects; names are unique in their tenant."""

    def list(
        self, params: ListParams, *, name: str | None = None, tenant_id: str | None = None
    ) -> tuple[list[Project], str | None]:
        """One page of the projects the caller sees, optionally of one name or tenant."""
        stmt = select(Project)
        if not self.principal.is_global:
            stmt = stmt.where(Project.tenant_id == self.principal.tenant_id)
        if name is not None:
            stmt = stmt.where(Project.name == name)
        if tenant_id is not None:
            stmt = stmt.where(Project.tenant_id == tenant_id)
        return paginate(self.session, stmt, Project, params)

    def get(self, ref: str) -> Project:
        """The project of this id or name, among those the caller sees."""
        return resolve(self.session, self.principal, Project, ref)

    def create(self, spec: ProjectSpec) -> Project:
        """A new project in the caller's tenant (admins: the one named), under ``parent_id`` if set."""
        tenant_id = target_tenant(self.session, self.principal, spec.tenant_id)
        self._check_name_free(tenant_id, spec.name)
        if spec.parent_id is not None:
            self._check_parent(tenant_id, spec.parent_id)
        project = Project(
            id=new_id("project"),
            tenant_id=tenant_id,
            name=spec.name,
            description=spec.description,
            parent_id=spec.parent_id,
        )
        self.session.add(project)
        flush_unique(self.session, "name", spec.name, KIND)
        return project

    def update(self, project: Project, changes: ProjectChanges) -> Project:
        """Rename or re-describe ``project`` (as read with ``get``)."""
        if changes.name is not None and changes.name != project.name:
            self._check_name_free(project.tenant_id, changes.name)
            project.name = changes.name
        if changes.description is not None:
            project.description = changes.description
        flush_unique(self.session, "name", changes.name or "", KIND)
        return project

    def delete(self, ref: str) -> None:
        """Delete a project without VMs or sub-projects, and its quota node."""
        project = self.get(ref)
        if self.session.scalar(select(VM.id).where(VM.project_id == project.id).limit(1)):
            raise Conflict(f"Project '{project.name}' still has VMs; delete them first.")
        if self.session.scalar(select(Project.id).where(Project.parent_id == project.id).limit(1)):
            raise Conflict(f"Project '{project.name}' has sub-projects; delete them first.")
        forget_project(self.session, project.id)
        self.session.delete(project)

    def _check_name_free(self, tenant_id: str, name: str) -> None:
        taken = select(Project.id).where(Project.tenant_id == tenant_id, Project.name == name)
        if self.session.scalar(taken):
            raise duplicate("name", name, KIND)

    def _check_parent(self, tenant_id: str, parent_id: str) -> None:
        parent = self.session.get(Project, parent_id)
        if parent is None or parent.tenant_id != tenant_id:
            reason = f"no project '{parent_id}' in this tenant"
            raise on_field(NotFound, "parent_id", reason)
        if len(project_ancestry(self.session, parent)) + 2 > MAX_DEPTH:
            raise InvalidInput("parent_id", f"sub-projects nest at most {MAX_DEPTH - 2} deep")

"""Tenants: the platform's organisations. A caller without ``global`` sees only its own tenant;
another tenant answers 404, exactly like one that does not exist."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import Project, Tenant
from novacron.db.resolve import resolve
from novacron.errors import Conflict
from novacron.identity.encryption import encryption_for
from novacron.identity.kms import shred_tenant
from novacron.identity.mfa_policy import require_step_up
from novacron.identity.scoping import duplicate, flush_unique
from novacron.service import Service


@dataclass(frozen=True)
class TenantChanges:
    """A tenant's fields to change; None leaves one as it is."""

    name: str | None = None
    description: str | None = None


class TenantService(Service):
    """Create, read, rename and delete tenants; tenant names are unique on the platform."""

    def list(self, params: ListParams, *, name: str | None = None) -> tuple[list[Tenant], str | None]:
        """One page of the tenants the caller sees, optionally only the one of this name."""
        stmt = select(Tenant)
        if not self.principal.is_global:
            stmt = stmt.where(Tenant.id == self.principal.tenant_id)
        if name is not None:
            stmt = stmt.where(Tenant.name == name)
        return paginate(self.session, stmt, Tenant, params)

    def get(self, ref: str) -> Tenant:
        """The tenant of this id or name, if the caller sees it."""
        return resolve(self.session, self.principal, Tenant, ref)

    def create(self, name: str, description: str) -> Tenant:
        """A new tenant of a name no other tenant has."""
        self._check_name_free(name)
        tenant = Tenant(id=new_id("tenant"), name=name, description=description)
        self.session.add(tenant)
        flush_unique(self.session, "name", name, "tenant")
        return tenant

    def update(self, tenant: Tenant, changes: TenantChanges) -> Tenant:
        """Rename or re-describe ``tenant`` (as read with ``get``)."""
        if changes.name is not None and changes.name != tenant.name:
            self._check_name_free(changes.name)
            tenant.name = changes.name
        if changes.description is not None:
            tenant.description = changes.description
        flush_unique(self.session, "name", changes.name or "", "tenant")
        return tenant

    def delete(self, ref: str) -> None:
        """Delete a tenant without projects that is not the caller's own; its keys are destroyed."""
        tenant = self.get(ref)
        require_step_up(self.session, self.principal, "Deleting a tenant")
        if self.session.scalar(select(Project.id).where(Project.tenant_id == tenant.id).limit(1)):
            raise Conflict(f"Tenant '{tenant.name}' still has projects; delete them first.")
        if self.principal.tenant_id == tenant.id:
            raise Conflict("You cannot delete your own tenant.")
        # crypto-shredding: its keys' material erased first (the rows then go with the tenant),
        # so its backups in every target can never be opened again (identity/kms_backup.py)
        shred_tenant(self.session, encryption_for(self.ctx.settings), tenant.id)
        self.session.delete(tenant)

    def _check_name_free(self, name: str) -> None:
        if self.session.scalar(select(Tenant.id).where(Tenant.name == name)):
            raise duplicate("name", name, "tenant")

"""Who is calling: the verified identity every handler receives."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Grant:
    """A role held with a scope narrower than the whole tenant: on one project, or only on resources
    whose labels match (``identity/authz.py`` decides with them)."""

    #: what gave it: a role assignment's id, or an API key's id for a project-scoped key
    source: str
    role: str
    permissions: frozenset[str]
    #: None: every project of the tenant
    project_id: str | None = None
    #: every pair must be among the resource's labels
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Principal:
    user_id: str
    username: str
    role: str
    #: None for platform administrators
    tenant_id: str | None
    #: held on the whole tenant: the user's role and its unconditional tenant-wide assignments
    permissions: frozenset[str]
    token_id: str = ""
    #: node agents authenticate too; they act on hosts, not tenants
    kind: str = "user"
    extra: dict[str, str] = field(default_factory=dict)
    #: held on a project or on labelled resources only (checked per resource)
    grants: tuple[Grant, ...] = ()
    #: the tenant-wide assignments folded into ``permissions``: (assignment id, role), for explain
    wide: tuple[tuple[str, str], ...] = ()

    @property
    def is_global(self) -> bool:
        return "global" in self.permissions

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def may(self, permission: str) -> bool:
        """Holds ``permission`` somewhere: tenant-wide, or on some project or labelled resources."""
        return permission in self.permissions or any(permission in g.permissions for g in self.grants)

    def sees_tenant(self, tenant_id: str | None) -> bool:
        return self.is_global or (tenant_id is not None and tenant_id == self.tenant_id)

"""Who is calling: the verified identity every handler receives."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Principal:
    user_id: str
    username: str
    role: str
    #: None for platform administrators
    tenant_id: str | None
    permissions: frozenset[str]
    token_id: str = ""
    #: node agents authenticate too; they act on hosts, not tenants
    kind: str = "user"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_global(self) -> bool:
        return "global" in self.permissions

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def sees_tenant(self, tenant_id: str | None) -> bool:
        return self.is_global or (tenant_id is not None and tenant_id == self.tenant_id)

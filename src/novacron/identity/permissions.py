"""Roles are named sets of fine-grained permissions.

A permission is ``<resource>:<verb>``. Handlers check permissions, never role
names, so a new role is one line here.
"""

from __future__ import annotations

VIEW = frozenset(
    {
        "vm:read",
        "image:read",
        "flavor:read",
        "task:read",
        "event:read",
        "host:read",
        "project:read",
        "metrics:read",
        "server-group:read",
        "network:read",
    }
)
MEMBER = VIEW | {
    "vm:create",
    "vm:update",
    "vm:delete",
    "vm:power",
    "vm:console",
    "vm:snapshot",
    "image:write",
    "task:cancel",
    "server-group:write",
    "network:write",
}
TENANT_ADMIN = MEMBER | {
    "project:write",
    "user:read",
    "user:write",
    "audit:read",
    "tenant:read",
}
ADMIN = TENANT_ADMIN | {
    "tenant:write",
    "flavor:write",
    "host:write",
    "vm:migrate",
    "cluster:rebalance",
    "aggregate:write",
    "image:publish",
    "key:rotate",
    "network:admin",
    # see and act across every tenant
    "global",
}

ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset(VIEW),
    "member": frozenset(MEMBER),
    "tenant-admin": frozenset(TENANT_ADMIN),
    "admin": frozenset(ADMIN),
}


def permissions_of(role: str) -> frozenset[str]:
    return ROLES.get(role, frozenset())

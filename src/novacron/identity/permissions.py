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
        "backup:read",
        "dr:read",
        "quota:read",
        "reservation:read",
        "usage:read",
        "network:read",
        "loadbalancer:read",
        "certificate:read",
        "alert:read",
        "slo:read",
        "trace:read",
        "gslb:read",
        "scaling-group:read",
        "volume:read",
        # the tenant's keys (identity/kms.py) and its secrets' names, never their values
        "kms:read",
        # a user's own custom dashboards (panels of queries over what metrics:read shows)
        "dashboard:write",
    }
)
MEMBER = VIEW | {
    "slo:write",
    "vm:create",
    "vm:update",
    "vm:delete",
    "vm:power",
    "vm:console",
    "vm:snapshot",
    "image:write",
    "task:cancel",
    "server-group:write",
    "backup:create",
    "backup:restore",
    "backup:delete",
    "reservation:write",
    "network:write",
    "loadbalancer:write",
    # load balancers' TLS certificates (their private keys are write-only)
    "certificate:write",
    # alert rules and silences
    "alert:write",
    # global names and their sites
    "gslb:write",
    # scaling groups: their template, sizes, desired count and scale-in protection
    "scaling-group:write",
    # volumes: create, attach, detach, extend, delete
    "volume:write",
    # encrypt, decrypt, data keys and re-wrap with the tenant's keys; write its secrets
    "kms:use",
    "secret:write",
}
TENANT_ADMIN = MEMBER | {
    "project:write",
    "user:read",
    "user:write",
    "audit:read",
    "tenant:read",
    "backup:policy",
    "dr:write",
    # limits of projects, sub-projects and users inside the tenant (never the tenant's own)
    "quota:write",
    "budget:write",
    # create past the month's budget
    "budget:override",
    # where alerts are sent (webhooks leave the platform with the tenant's alert data)
    "alert-receiver:write",
    # event subscriptions: the tenant's events leave the platform, signed, to its URLs
    "webhook:read",
    "webhook:write",
    # run the compliance checks of the tenant, read their evidence, export its data (GDPR)
    "compliance:run",
    # the tenant's keys: create, rotate, disable, schedule deletion, shred
    "kms:write",
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
    "backup-target:write",
    "quota:admin",
    "policy:write",
    "price:write",
    # the CIDR -> region table of global load balancing
    "gslb-region:write",
    "network:admin",
    # verify the audit log's hash chain and sign its checkpoints
    "audit:verify",
    # the live configuration: scheduler policy, login throttle, intervals (configsvc)
    "config:read",
    "config:write",
    # see and act across every tenant
    "global",
}

#: legal holds: placed and released only by the compliance role, never by admins (separation of
#: duties); an admin may grant the role without holding its permission
SEPARATED = frozenset({"backup:hold"})
COMPLIANCE = VIEW | SEPARATED | {"compliance:run"}

ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset(VIEW),
    "member": frozenset(MEMBER),
    "tenant-admin": frozenset(TENANT_ADMIN),
    "admin": frozenset(ADMIN),
    "compliance": frozenset(COMPLIANCE),
    #: holds only what role assignments give (a project, labelled VMs: ``identity/authz.py``)
    "none": frozenset(),
}


def permissions_of(role: str) -> frozenset[str]:
    return ROLES.get(role, frozenset())

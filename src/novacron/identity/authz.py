"""Authorization decisions: may this caller do this on that resource, and why (or why not).

A caller's permissions come in two kinds (``principal.Principal``): those held on its whole tenant
(its user role, and role assignments with no project and no label condition), checked by
``Principal.can`` as before, and *grants*: roles assigned on one project or only on resources whose
labels match (``team=blue``). Grants are checked per resource by ``decide``, which names the
assignment that allowed, or says why none did. They are enforced on VMs (``SCOPED_KINDS``): reading
one, acting on it, deleting it, creating one in a project, and the VM list, filtered in SQL by
``vm_filter`` so a user limited to ``team=blue`` sees only those VMs. Everywhere else a grant gives
nothing (refused, never too much).

The grants are loaded with the caller at each request (``load``): one query on indexed columns
joining the assignments to the tenant's custom roles, so a change applies at the next request.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, false, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from novacron.db.models import VM, CustomRole, RoleAssignment
from novacron.errors import Forbidden
from novacron.identity.permissions import ROLES
from novacron.identity.principal import Grant, Principal

#: permission kinds whose resources are checked one by one against grants (``compute/vms.py``)
SCOPED_KINDS = ("vm:",)
#: what a project-scoped API key keeps outside its project: reading the catalogue it creates from
PROJECT_FREE = frozenset({"image:read", "flavor:read"})


def scoped_kind(permission: str) -> bool:
    return permission.startswith(SCOPED_KINDS)


def narrowed(principal: Principal, permission: str) -> bool:
    """Whether ``permission`` is held only on some projects or labelled resources, so each
    resource is decided on its own. A principal with no such grants is not narrowed: the request's
    gate decided already, and the platform's own principals (a scaling group acting in its tenant)
    hold no permissions of their own and are never refused here."""
    return bool(principal.grants) and scoped_kind(permission) and not principal.can(permission)


@dataclass(frozen=True)
class ResourceScope:
    """Where a resource lives: its tenant, its project (None: tenant-wide) and its labels."""

    tenant_id: str | None
    project_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    #: how the explanation names it, e.g. "VM 'web-1'"
    name: str = "the resource"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    permission: str
    #: the assignment or role that allowed, if any (an assignment id, or "role:<name>")
    by: str | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Loaded:
    """A caller's roles beyond its user role: folded tenant-wide ones, and grants."""

    permissions: frozenset[str]
    wide: tuple[tuple[str, str], ...]
    grants: tuple[Grant, ...]


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{k}={v}" for k, v in pairs)


def grant_scope(g: Grant) -> str:
    parts = [f"project {g.project_id}"] if g.project_id else []
    if g.labels:
        parts.append(f"resources labelled {_labels(g.labels)}")
    return " and ".join(parts) or "the whole tenant"


def _misses(g: Grant, scope: ResourceScope) -> str | None:
    """Why ``g`` does not cover ``scope`` (None: it does)."""
    if g.project_id is not None and g.project_id != scope.project_id:
        return f"{scope.name} is in project {scope.project_id or '(none)'}"
    wrong = [(k, v) for k, v in g.labels if scope.labels.get(k) != v]
    if wrong:
        have = _labels(sorted(scope.labels.items())) or "no labels"
        return f"{scope.name} is labelled {have}"
    return None


def decide(principal: Principal, permission: str, scope: ResourceScope) -> Decision:
    """Allow or deny ``permission`` on the resource at ``scope``, with the reasons."""
    if not principal.sees_tenant(scope.tenant_id):
        return Decision(False, permission, None, (f"{scope.name} belongs to another tenant",))
    if principal.can(permission):
        return _wide(principal, permission)
    reasons: list[str] = []
    for g in principal.grants:
        if permission not in g.permissions:
            continue
        miss = _misses(g, scope) if scoped_kind(permission) else "this kind is not checked per resource"
        head = f"assignment {g.source} (role '{g.role}') holds {permission} on {grant_scope(g)}"
        if miss is None:
            return Decision(True, permission, g.source, (f"allowed: {head}",))
        reasons.append(f"not by {head}: {miss}")
    if not reasons:
        reasons.append(
            f"no role of '{principal.username}' holds {permission} (role '{principal.role}'"
            + "".join(f", assignment {a} role '{r}'" for a, r in principal.wide)
            + "".join(f", assignment {g.source} role '{g.role}'" for g in principal.grants)
            + ")"
        )
    return Decision(False, permission, None, tuple(reasons))


def _wide(principal: Principal, permission: str) -> Decision:
    """The tenant-wide holder of ``permission``: the user's role first, then its assignments."""
    if principal.kind == "api-key":
        how = f"API key '{principal.extra.get('key_name', '')}' holds {permission} on the whole tenant"
        return Decision(True, permission, principal.token_id, (f"allowed: {how}",))
    if permission in ROLES.get(principal.role, frozenset()):
        how = f"role '{principal.role}' (the user's role) holds {permission} on the whole tenant"
        return Decision(True, permission, f"role:{principal.role}", (f"allowed: {how}",))
    for source, role in principal.wide:
        return Decision(
            True, permission, source, (f"allowed: assignment {source} (role '{role}') on the whole tenant",)
        )
    return Decision(True, permission, None, (f"allowed: {permission} is held on the whole tenant",))


def check(principal: Principal, permission: str, scope: ResourceScope) -> Decision:
    """``decide``, raising ``Forbidden`` (403 problem+json with the reasons) on a denial."""
    decision = decide(principal, permission, scope)
    if not decision.allowed:
        raise Forbidden(
            f"You may not {permission} on {scope.name}: " + "; ".join(decision.reasons) + ".",
            extra={"decision": {"permission": permission, "reasons": list(decision.reasons)}},
        )
    return decision


def vm_filter(principal: Principal, permission: str) -> ColumnElement[bool] | None:
    """The VMs ``principal`` may ``permission`` beyond tenant scoping (None: all of its tenant)."""
    if not narrowed(principal, permission):
        return None
    conds: list[ColumnElement[bool]] = []
    for g in principal.grants:
        if permission not in g.permissions:
            continue
        parts = [VM.labels[k].as_string() == v for k, v in g.labels]
        if g.project_id is not None:
            parts.append(VM.project_id == g.project_id)
        conds.append(and_(*parts) if parts else VM.id.is_not(None))
    return or_(*conds) if conds else false()


def vm_scope(vm: VM) -> ResourceScope:
    return ResourceScope(vm.tenant_id, vm.project_id, dict(vm.labels or {}), f"VM '{vm.name}'")


# -- loading -----------------------------------------------------------------------------------

_ROWS = (
    select(
        RoleAssignment.id,
        RoleAssignment.role,
        RoleAssignment.project_id,
        RoleAssignment.labels,
        CustomRole.permissions,
        CustomRole.labels,
    )
    .outerjoin(
        CustomRole,
        and_(CustomRole.tenant_id == RoleAssignment.tenant_id, CustomRole.name == RoleAssignment.role),
    )
    .order_by(RoleAssignment.created_at, RoleAssignment.id)
)


#: built once with bind parameters: each request only binds the id (no statement to construct)
_BY_USER = _ROWS.where(RoleAssignment.user_id == bindparam("who"))
_BY_KEY = _ROWS.where(RoleAssignment.api_key_id == bindparam("who"))


def load(db: Connection | Session, *, user_id: str | None = None, key_id: str | None = None) -> Loaded:
    """The assignments of a user (or of an API key), as permissions and grants."""
    stmt, who = (_BY_USER, user_id) if key_id is None else (_BY_KEY, key_id)
    return fold(db.execute(stmt, {"who": who}).all())


def fold(rows: Iterable[Any]) -> Loaded:
    """Assignment rows (id, role, project, labels, custom permissions, custom labels) folded."""
    perms: set[str] = set()
    wide: list[tuple[str, str]] = []
    grants: list[Grant] = []
    for source, role, project_id, labels, custom, custom_labels in rows:
        held = frozenset(custom) if custom is not None else ROLES.get(role, frozenset())
        pairs = {**(custom_labels or {}), **(labels or {})}
        if custom_labels and labels and any(labels.get(k, v) != v for k, v in custom_labels.items()):
            continue  # the assignment's condition contradicts its role's: it covers nothing
        if project_id is None and not pairs:
            perms |= held
            wide.append((source, role))
        else:
            grants.append(Grant(source, role, held, project_id, tuple(sorted(pairs.items()))))
    return Loaded(frozenset(perms), tuple(wide), tuple(grants))


def with_assignments(principal: Principal, loaded: Loaded) -> Principal:
    """``principal`` holding its assignments too (the union of its roles)."""
    if not loaded.wide and not loaded.grants:
        return principal
    from dataclasses import replace

    return replace(
        principal,
        permissions=principal.permissions | loaded.permissions,
        wide=principal.wide + loaded.wide,
        grants=principal.grants + loaded.grants,
    )


def narrowed_to_key(
    owner: Principal, key_perms: frozenset[str], key_id: str, project_id: str | None, own: Loaded
) -> Principal:
    """An API key's principal: at most ``key_perms`` of what its owner holds, plus the roles
    assigned to the key itself; a project-scoped key holds it all on that project only."""
    from dataclasses import replace

    grants = [
        Grant(g.source, g.role, g.permissions & key_perms, g.project_id, g.labels) for g in owner.grants
    ]
    wide = (owner.permissions & key_perms) | own.permissions
    grants += own.grants
    if project_id is not None:
        grants = [
            Grant(g.source, g.role, g.permissions, project_id, g.labels)
            for g in grants
            if g.project_id in (None, project_id)
        ]
        grants.insert(0, Grant(key_id, "api-key", frozenset(p for p in wide if scoped_kind(p)), project_id))
        wide = wide & PROJECT_FREE
    return replace(
        owner, permissions=frozenset(wide), grants=tuple(g for g in grants if g.permissions), wide=()
    )

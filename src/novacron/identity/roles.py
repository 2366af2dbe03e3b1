"""Custom roles and role assignments (``identity/authz.py`` decides with them).

A tenant's custom role names permissions of the catalogue (every permission a built-in role
grants); an unknown one is refused naming its field, and nobody gives a role a permission they do
not hold themselves (no escalation through a role). Built-in roles are listed beside them,
read-only. An assignment gives a user or an API key of the tenant a role, built-in or custom, on
the whole tenant or one project, optionally only on resources whose labels match; a user holds
the union of its role and its assignments. Reading needs ``user:read``, changing ``user:write``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import or_, select

from novacron.db.base import new_id
from novacron.db.models import ApiKey, CustomRole, Project, RoleAssignment, User
from novacron.db.resolve import Named, resolve
from novacron.errors import Conflict, FieldError, Forbidden, InvalidInput, NotFound
from novacron.identity.permissions import ROLES
from novacron.identity.scoping import duplicate, flush_unique, target_tenant
from novacron.service import Service

#: every permission a built-in role grants: what a custom role may name
CATALOGUE = frozenset().union(*ROLES.values())


@dataclass(frozen=True)
class RoleSpec:
    name: str
    permissions: Sequence[str]
    description: str = ""
    labels: Mapping[str, str] | None = None
    tenant_id: str | None = None


@dataclass(frozen=True)
class AssignmentSpec:
    role: str
    #: a user (id or username) or an API key (id): exactly one
    user: str | None = None
    api_key: str | None = None
    project: str | None = None
    labels: Mapping[str, str] | None = None


def check_permissions(held: frozenset[str], asked: Sequence[str], field: str = "permissions") -> None:
    """Each of ``asked`` is of the catalogue (else 422 naming it) and held by the caller (else 403)."""
    for i, permission in enumerate(asked):
        if permission not in CATALOGUE:
            raise InvalidInput(f"{field}[{i}]", f"unknown permission '{permission}'; see GET /v1/roles")
        if permission not in held:
            raise Forbidden(
                f"You cannot give a role the permission '{permission}': you do not hold it.",
                fields=[FieldError(f"{field}[{i}]", "not held by you")],
            )


class RoleService(Service):
    """The tenant's custom roles, and the built-in ones beside them."""

    def custom(self) -> list[CustomRole]:
        stmt = select(CustomRole).order_by(CustomRole.name)
        if not self.principal.is_global:
            stmt = stmt.where(CustomRole.tenant_id == self.principal.tenant_id)
        return list(self.session.scalars(stmt))

    def get(self, ref: str) -> CustomRole:
        """A custom role by id or name (404 for a built-in one: those are not rows)."""
        if ref in ROLES:
            raise Forbidden(f"'{ref}' is a built-in role: read-only.")
        stmt = select(CustomRole).where(or_(CustomRole.id == ref, CustomRole.name == ref))
        if not self.principal.is_global:
            stmt = stmt.where(CustomRole.tenant_id == self.principal.tenant_id)
        rows = list(self.session.scalars(stmt))
        if len(rows) != 1:
            raise NotFound("role", ref)
        return rows[0]

    def create(self, spec: RoleSpec) -> CustomRole:
        if spec.name in ROLES:
            raise InvalidInput("name", f"'{spec.name}' is a built-in role's name")
        check_permissions(self.principal.permissions, spec.permissions)
        tenant_id = target_tenant(self.session, self.principal, spec.tenant_id)
        taken = select(CustomRole.id).where(CustomRole.tenant_id == tenant_id, CustomRole.name == spec.name)
        if self.session.scalar(taken):
            raise duplicate("name", spec.name, "role")
        role = CustomRole(
            id=new_id("role"),
            tenant_id=tenant_id,
            name=spec.name,
            description=spec.description,
            permissions=sorted(set(spec.permissions)),
            labels=dict(spec.labels or {}),
        )
        self.session.add(role)
        flush_unique(self.session, "name", spec.name, "role")
        return role

    def update(
        self,
        role: CustomRole,
        permissions: Sequence[str] | None,
        description: str | None,
        labels: Mapping[str, str] | None,
    ) -> CustomRole:
        if permissions is not None:
            check_permissions(self.principal.permissions, permissions)
            role.permissions = sorted(set(permissions))
        if description is not None:
            role.description = description
        if labels is not None:
            role.labels = dict(labels)
        self.session.flush()
        return role

    def delete(self, ref: str) -> None:
        """Delete a custom role no assignment holds (409 naming them otherwise)."""
        role = self.get(ref)
        held = self.session.scalars(
            select(RoleAssignment.id).where(
                RoleAssignment.tenant_id == role.tenant_id, RoleAssignment.role == role.name
            )
        ).all()
        if held:
            raise Conflict(
                f"Role '{role.name}' is assigned ({', '.join(held)}); delete those assignments first."
            )
        self.session.delete(role)
        self.session.flush()


class AssignmentService(Service):
    """Who holds which role where: users and API keys of a tenant."""

    def list(self, user: str | None = None) -> list[RoleAssignment]:
        stmt = select(RoleAssignment).order_by(RoleAssignment.created_at, RoleAssignment.id)
        if not self.principal.is_global:
            stmt = stmt.where(RoleAssignment.tenant_id == self.principal.tenant_id)
        if user is not None:
            stmt = stmt.where(RoleAssignment.user_id == self.user(user, "user", "query").id)
        return list(self.session.scalars(stmt))

    def user(self, ref: str, field: str, part: str = "body") -> User:
        """A user of the caller's tenant (any, for platform administrators) by id or username."""
        stmt = select(User).where(or_(User.id == ref, User.username == ref))
        if not self.principal.is_global:
            stmt = stmt.where(User.tenant_id == self.principal.tenant_id)
        rows = list(self.session.scalars(stmt))
        if len(rows) != 1:
            raise InvalidInput(
                field, f"no user '{ref}' in your tenant" if not rows else f"'{ref}' is ambiguous", part=part
            )
        return rows[0]

    def get(self, assignment_id: str) -> RoleAssignment:
        row = self.session.get(RoleAssignment, assignment_id)
        if row is None or not self.principal.sees_tenant(row.tenant_id):
            raise NotFound("role assignment", assignment_id)
        return row

    def create(self, spec: AssignmentSpec) -> RoleAssignment:
        if (spec.user is None) == (spec.api_key is None):
            raise InvalidInput("user", "name exactly one of user and api_key")
        tenant_id, user_id, key_id = self._subject(spec)
        held = self._role_permissions(tenant_id, spec.role)
        check_permissions(self.principal.permissions, sorted(held), "role")
        project_id = None
        if spec.project is not None:
            project = resolve(self.session, self.principal, Project, spec.project, named=Named("project"))
            if project.tenant_id != tenant_id:
                raise InvalidInput("project", "the project is not in the assignee's tenant")
            project_id = project.id
        row = RoleAssignment(
            id=new_id("ra"),
            tenant_id=tenant_id,
            user_id=user_id,
            api_key_id=key_id,
            role=spec.role,
            project_id=project_id,
            labels=dict(spec.labels or {}),
        )
        self.session.add(row)
        self.session.flush()
        return row

    def _subject(self, spec: AssignmentSpec) -> tuple[str, str | None, str | None]:
        if spec.user is not None:
            user = self.user(spec.user, "user")
            if user.tenant_id is None:
                raise InvalidInput("user", "platform administrators belong to no tenant: they hold admin")
            return user.tenant_id, user.id, None
        key = self.session.get(ApiKey, spec.api_key)
        if key is None or key.tenant_id is None or not self.principal.sees_tenant(key.tenant_id):
            raise InvalidInput("api_key", f"no API key '{spec.api_key}' in your tenant")
        return key.tenant_id, None, key.id

    def _role_permissions(self, tenant_id: str, role: str) -> frozenset[str]:
        if role in ROLES:
            return ROLES[role]
        custom = self.session.scalar(
            select(CustomRole).where(CustomRole.tenant_id == tenant_id, CustomRole.name == role)
        )
        if custom is None:
            raise InvalidInput("role", f"no role '{role}': see GET /v1/roles")
        return frozenset(custom.permissions)

    def delete(self, assignment_id: str) -> None:
        self.session.delete(self.get(assignment_id))
        self.session.flush()

"""``GET /v1/auth/explain``: would this user be allowed this action on that resource, and why.

The answer is ``authz.decide`` run for the user as its next request would see it (its role and
role assignments, read now) against the resource's tenant, project and labels. A user may ask
about itself; asking about another user needs ``user:read`` in its tenant (or ``global``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select

from novacron.db.models import VM, Project, User
from novacron.db.resolve import Named, resolve
from novacron.errors import Forbidden, InvalidInput
from novacron.identity import authz
from novacron.identity.permissions import permissions_of
from novacron.identity.principal import Principal
from novacron.identity.roles import CATALOGUE
from novacron.service import Service

RESOURCE_FORMS = "vm/<id or name>, project/<id or name> or tenant"


@dataclass(frozen=True)
class Explained:
    user_id: str
    username: str
    resource: str
    decision: authz.Decision


class ExplainService(Service):
    def explain(self, user: str, action: str, resource: str) -> Explained:
        target = self._user(user)
        if action not in CATALOGUE:
            raise InvalidInput("action", f"unknown permission '{action}'; see GET /v1/roles", part="query")
        subject = authz.with_assignments(
            Principal(target.id, target.username, target.role, target.tenant_id, permissions_of(target.role)),
            authz.load(self.session, user_id=target.id),
        )
        scope = self._scope(resource, target)
        return Explained(target.id, target.username, scope.name, authz.decide(subject, action, scope))

    def _user(self, ref: str) -> User:
        me = self.principal
        if ref in (me.user_id, me.username):
            found = self.session.get(User, me.user_id)
            if found is not None:
                return found
        if not (me.is_global or me.can("user:read")):
            raise Forbidden("Asking about another user needs the permission 'user:read'.")
        stmt = select(User).where(or_(User.id == ref, User.username == ref))
        if not me.is_global:
            stmt = stmt.where(User.tenant_id == me.tenant_id)
        rows = list(self.session.scalars(stmt))
        if len(rows) != 1:
            raise InvalidInput("user", f"no user '{ref}' you administer", part="query")
        return rows[0]

    def _scope(self, resource: str, target: User) -> authz.ResourceScope:
        kind, sep, ref = resource.partition("/")
        if not sep:
            kind, sep, ref = resource.partition(":")
        named = Named("resource", "query")
        if kind == "tenant" and not ref:
            return authz.ResourceScope(target.tenant_id, None, {}, "the tenant")
        if kind == "vm" and ref:
            return authz.vm_scope(resolve(self.session, self.principal, VM, ref, named=named))
        if kind == "project" and ref:
            project = resolve(self.session, self.principal, Project, ref, named=named)
            return authz.ResourceScope(project.tenant_id, project.id, {}, f"project '{project.name}'")
        raise InvalidInput("resource", f"name the resource as {RESOURCE_FORMS}", part="query")

"""Security groups and their rules.

A group applies to the ports that name it and, with a ``selector`` (``{"tier": "db"}``), to every
port of the project's VMs whose labels match: a label policy. Rules are checked in
``network/rules.py``; membership, labels or addresses changing re-resolve them on the hosts.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field

from sqlalchemy import select

from novacron import events
from novacron.compute.scope import resolve_project
from novacron.db.base import new_id, utcnow
from novacron.db.listing import ListParams, paginate
from novacron.db.models import PortSecurityGroup, Project, SecurityGroup, SecurityGroupRule
from novacron.db.resolve import resolve, scoped
from novacron.errors import Conflict, NameTaken, NotFound
from novacron.network import service
from novacron.network.rules import RuleSpec, checked_rule
from novacron.network.sync import syncing
from novacron.service import Service


@dataclass(frozen=True)
class NewGroup:
    """A security group to create with its first rules (already checked for shape by the API)."""

    name: str
    description: str = ""
    project_id: str | None = None
    selector: dict[str, str] | None = None
    rules: list[RuleSpec] = field(default_factory=list)


@dataclass(frozen=True)
class GroupChange:
    """What an update changes: the description unless None, the selector when ``selector_given``."""

    description: str | None = None
    selector: dict[str, str] | None = None
    #: the selector was in the request (null removes it)
    selector_given: bool = False


class SecurityGroupService(Service):
    """Create, read, change and delete security groups and their rules."""

    def list(
        self,
        params: ListParams,
        *,
        name: str | None = None,
        project_id: str | None = None,
        make_defaults: bool = True,
    ) -> tuple[list[SecurityGroup], str | None]:
        """One page of the groups the caller sees; the first page makes the projects' defaults
        (unless ``make_defaults`` is false: a read-only caller such as a GraphQL query)."""
        if make_defaults and self.principal.tenant_id is not None and params.cursor is None:
            # every project has its default group, made on first sight
            stmt = select(Project).where(Project.tenant_id == self.principal.tenant_id)
            for project in self.session.scalars(stmt):
                service.default_group(self.session, project)
        query = scoped(select(SecurityGroup), SecurityGroup, self.principal)
        for col, value in ((SecurityGroup.name, name), (SecurityGroup.project_id, project_id)):
            if value is not None:
                query = query.where(col == value)
        return paginate(self.session, query, SecurityGroup, params)

    def get(self, ref: str) -> SecurityGroup:
        """The group of this id or name, as the caller sees it."""
        return resolve(self.session, self.principal, SecurityGroup, ref)

    def rules(self, group: SecurityGroup) -> builtins.list[SecurityGroupRule]:
        """The group's rules, oldest first."""
        stmt = (
            select(SecurityGroupRule)
            .where(SecurityGroupRule.group_id == group.id)
            .order_by(SecurityGroupRule.created_at, SecurityGroupRule.id)
        )
        return list(self.session.scalars(stmt))

    def create(self, spec: NewGroup) -> SecurityGroup:
        """A new group, unique by name in its project (``default`` is taken), with its rules."""
        project = resolve_project(self.session, self.principal, spec.project_id)
        stmt = select(SecurityGroup.id).where(
            SecurityGroup.project_id == project.id, SecurityGroup.name == spec.name
        )
        if spec.name == service.DEFAULT_GROUP or self.session.scalar(stmt):
            raise NameTaken("security group", spec.name, "name")
        with syncing(self.session, project.tenant_id):
            group = SecurityGroup(
                id=new_id("sg"),
                project_id=project.id,
                tenant_id=project.tenant_id,
                name=spec.name,
                description=spec.description,
                selector=dict(spec.selector) if spec.selector else None,
            )
            self.session.add(group)
            self.session.flush()
            for i, rule in enumerate(spec.rules):
                self.session.add(checked_rule(self.session, self.principal, group, rule, f"rules.{i}"))
            self.session.flush()
            self._publish("security_group.created", group, name=group.name)
        return group

    def update(self, group: SecurityGroup, change: GroupChange) -> SecurityGroup:
        """Change the group's description or selector."""
        with syncing(self.session, group.tenant_id):
            if change.description is not None:
                group.description = change.description
            if change.selector_given:
                group.selector = dict(change.selector) if change.selector else None
            self.session.flush()
        return group

    def delete(self, group: SecurityGroup) -> None:
        """Delete a group no port names."""
        stmt = select(PortSecurityGroup.port_id).where(PortSecurityGroup.group_id == group.id).limit(10)
        ports = list(self.session.scalars(stmt))
        if ports:
            raise Conflict(f"Security group '{group.name}' is used by ports {', '.join(ports)}.")
        with syncing(self.session, group.tenant_id):
            self._publish("security_group.deleted", group, name=group.name)
            self.session.delete(group)

    def add_rule(self, group: SecurityGroup, spec: RuleSpec) -> SecurityGroupRule:
        """A new rule of the group."""
        with syncing(self.session, group.tenant_id):
            rule = checked_rule(self.session, self.principal, group, spec, "")
            self.session.add(rule)
            group.updated_at = utcnow()
            self.session.flush()
            self._publish("security_group.rule_added", group, rule=rule.id)
        return rule

    def delete_rule(self, group_ref: str, rule_id: str) -> None:
        """Delete one rule of the group."""
        group = self.get(group_ref)
        rule = self.session.get(SecurityGroupRule, rule_id)
        if rule is None or rule.group_id != group.id:
            detail = f"Security group '{group.name}' has no rule '{rule_id}'."
            raise NotFound("rule", rule_id, detail=detail)
        with syncing(self.session, group.tenant_id):
            self.session.delete(rule)
            group.updated_at = utcnow()
            self._publish("security_group.rule_deleted", group, rule=rule_id)

    def _publish(self, event_type: str, group: SecurityGroup, **data: str) -> None:
        events.publish(
            self.session,
            event_type,
            "security_group",
            group.id,
            tenant_id=group.tenant_id,
            project_id=group.project_id,
            **data,
        )

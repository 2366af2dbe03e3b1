"""The policy engine's rules as a resource: create, read, tune and delete them (``policy.py`` runs them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import PolicyRule, QuotaNode
from novacron.db.resolve import resolve
from novacron.errors import InvalidInput, NameTaken, NotFound, on_field
from novacron.quota import policy
from novacron.quota.registry import RESOURCES
from novacron.service import Service


@dataclass(frozen=True)
class RuleSpec:
    """A rule to create, as the caller asked for it (already checked for shape by the API)."""

    name: str
    kind: str
    params: dict[str, float] = field(default_factory=dict)
    #: a registered resource, or ``*`` for every one
    resource: str = "*"
    #: only requests of this role (None: everyone)
    role: str | None = None
    #: only this node's subtree (None: everywhere)
    node_id: str | None = None
    enabled: bool = True


class PolicyRuleService(Service):
    """Policy rules: platform-wide or scoped to a node's subtree, a role, a resource."""

    def list(self, params: ListParams) -> tuple[list[PolicyRule], str | None]:
        """One page of the rules the caller may see."""
        stmt = select(PolicyRule)
        if not self.principal.is_global:
            # a rule scoped to another tenant's node would name that tenant's projects: not shown
            own = select(QuotaNode.id).where(QuotaNode.tenant_id == self.principal.tenant_id)
            stmt = stmt.where(PolicyRule.node_id.is_(None) | PolicyRule.node_id.in_(own))
        return paginate(self.session, stmt, PolicyRule, params)

    def create(self, spec: RuleSpec) -> PolicyRule:
        """A new rule of a registered resource, on an existing node, with valid parameters."""
        if spec.resource != "*" and spec.resource not in RESOURCES:
            raise InvalidInput("resource", f"unknown resource; registered: {', '.join(sorted(RESOURCES))}")
        if spec.node_id is not None and self.session.get(QuotaNode, spec.node_id) is None:
            raise on_field(NotFound, "node_id", f"no quota node '{spec.node_id}'")
        # whole numbers are stored as integers: a rule reads "max 8", not "max 8.0"
        params = policy.validate_params(
            spec.kind, {k: (int(v) if float(v).is_integer() else v) for k, v in spec.params.items()}
        )
        if self.session.scalar(select(PolicyRule.id).where(PolicyRule.name == spec.name)):
            raise NameTaken("policy rule", spec.name, "name", "")
        rule = PolicyRule(
            id=new_id("rule"),
            name=spec.name,
            kind=spec.kind,
            resource=spec.resource,
            role=spec.role,
            node_id=spec.node_id,
            params=params,
            enabled=spec.enabled,
        )
        self.session.add(rule)
        self.session.flush()
        return rule

    def get(self, ref: str) -> PolicyRule:
        """The rule of this id or name."""
        return resolve(self.session, self.principal, PolicyRule, ref)

    def update(
        self, rule: PolicyRule, params: dict[str, Any] | None = None, enabled: bool | None = None
    ) -> PolicyRule:
        """Tune a rule (from ``get``): its parameters, checked for its kind, and whether it applies."""
        if params is not None:
            rule.params = policy.validate_params(rule.kind, dict(params))
        if enabled is not None:
            rule.enabled = enabled
        self.session.flush()
        return rule

    def delete(self, ref: str) -> None:
        """Delete a rule: requests are no longer judged by it."""
        self.session.delete(self.get(ref))

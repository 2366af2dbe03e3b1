"""The quota tree's service: nodes and their limits (usage bars), default templates, reconciliation.

Node ids are derived (``tree.py``), so a caller may name a node that does not exist yet: reading
it shows it as it would be (version 0) and never creates it; setting its limits creates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import Project, QuotaNode, QuotaTemplate, Tenant
from novacron.errors import InvalidInput, NameTaken, NotFound
from novacron.quota import reconcile, tree
from novacron.quota.registry import RESOURCES
from novacron.service import Service


@dataclass(frozen=True)
class NodeRef:
    """The node a caller asks about: by id, or as a tenant, a project or a user in a project."""

    node_id: str | None = None
    tenant_id: str | None = None
    project_id: str | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class NodeFilter:
    """What a list of nodes is narrowed to (each None: any)."""

    parent_id: str | None = None
    tenant_id: str | None = None
    kind: str | None = None


@dataclass(frozen=True)
class Unborn:
    """A node not created yet, as a read shows it: version 0, which is what its ETag names."""

    id: str
    version: int = 0


@dataclass(frozen=True)
class TemplateSpec:
    """A limits template: copied onto every new node of its kind when it is the default."""

    name: str
    applies_to: str
    limits: dict[str, int] = field(default_factory=dict)
    is_default: bool = True


class QuotaService(Service):
    """Show and set the limits of the quota tree's nodes; manage templates; reconcile counters."""

    def show(self, ref: NodeRef) -> tuple[QuotaNode | Unborn, dict[str, Any]]:
        """A node (the caller's tenant by default) and its view: limits and usage per resource."""
        found = self._resolve(ref)
        if isinstance(found, list):
            view = tree.peek_view(self.session, found)
            return Unborn(view["id"]), view
        return found, tree.node_view(self.session, [found])[0]

    def list_nodes(self, params: ListParams, where: NodeFilter) -> tuple[list[dict[str, Any]], str | None]:
        """One page of node views (the dashboard's quota bars) among the nodes the caller sees."""
        stmt = select(QuotaNode)
        if not self.principal.is_global:
            stmt = stmt.where(QuotaNode.tenant_id == self.principal.tenant_id)
        stmt = where_equal(
            stmt,
            (QuotaNode.parent_id, where.parent_id),
            (QuotaNode.tenant_id, where.tenant_id),
            (QuotaNode.kind, where.kind),
        )
        rows, nxt = paginate(self.session, stmt, QuotaNode, params)
        return tree.node_view(self.session, rows), nxt

    def current(self, node_id: str) -> QuotaNode | Unborn:
        """The node as the caller last could have read it (for ``If-Match``); never writes."""
        if self.session.get(QuotaNode, node_id) is None:
            self._unborn_specs(node_id)
            return Unborn(node_id)
        return self._visible(node_id)

    def set_limits(self, node_id: str, limits: dict[str, int | None]) -> tuple[QuotaNode, dict[str, Any]]:
        """Set (None: unset) limits of a node, created now if it was not yet; the node and its view,
        with ``notes`` on limits now below what is in use."""
        if self.session.get(QuotaNode, node_id) is None:
            tree.ensure_nodes(self.session, self._unborn_specs(node_id))
        node = self._visible(node_id)
        tree.check_writable(node, self.principal.is_global)
        notes = tree.set_limits(self.session, node, limits)
        return node, {**tree.node_view(self.session, [node])[0], "notes": notes}

    def reconcile(self, repair: bool) -> dict[str, Any]:
        """Counted usage against what exists; ``repair`` makes the counters right."""
        return reconcile.reconcile(self.session, repair=repair)

    def list_templates(self, params: ListParams) -> tuple[list[QuotaTemplate], str | None]:
        """One page of templates."""
        return paginate(self.session, select(QuotaTemplate), QuotaTemplate, params)

    def create_template(self, spec: TemplateSpec) -> QuotaTemplate:
        """A new template of registered resources; a new default replaces the old one of its kind."""
        for resource in spec.limits:
            if resource not in RESOURCES:
                raise InvalidInput(f"limits.{resource}", "unknown resource")
        if self.session.scalar(select(QuotaTemplate.id).where(QuotaTemplate.name == spec.name)):
            raise NameTaken("template", spec.name, "name", "")
        if spec.is_default:  # one default per kind
            for old in self.session.scalars(
                select(QuotaTemplate).where(
                    QuotaTemplate.applies_to == spec.applies_to, QuotaTemplate.is_default.is_(True)
                )
            ):
                old.is_default = False
        template = QuotaTemplate(
            id=new_id("qtpl"),
            name=spec.name,
            applies_to=spec.applies_to,
            is_default=spec.is_default,
            limits=dict(spec.limits),
        )
        self.session.add(template)
        self.session.flush()
        return template

    def delete_template(self, template_id: str) -> None:
        """Delete a template (nodes keep the limits it gave them)."""
        template = self.session.get(QuotaTemplate, template_id)
        if template is None:
            raise NotFound("template", template_id)
        self.session.delete(template)

    def _visible(self, node_id: str) -> QuotaNode:
        return tree.visible_node(self.session, node_id, self.principal.tenant_id, self.principal.is_global)

    def _resolve(self, ref: NodeRef) -> QuotaNode | list[tree.NodeSpec]:
        """The stored node, or (not created yet) its chain of specs; never writes."""
        if ref.node_id is not None:
            if self.session.get(QuotaNode, ref.node_id) is None:
                return self._unborn_specs(ref.node_id)
            return self._visible(ref.node_id)
        tenant_id, principal = ref.tenant_id, self.principal
        if ref.project_id is None and tenant_id is None:
            tenant_id = principal.tenant_id
        if ref.project_id is None and tenant_id is None and not principal.is_global:
            raise InvalidInput("tenant_id", "name a tenant, project or node", part="query")
        for value, name in ((tenant_id, "tenant_id"), (ref.project_id, "project_id")):
            if value is None or principal.is_global:
                continue
            if self._tenant_of(name, value) != principal.tenant_id:
                raise NotFound(name.removesuffix("_id"), value)
        specs = tree.specs_for_ref(
            self.session, tenant_id=tenant_id, project_id=ref.project_id, user_id=ref.user_id
        )
        if self.session.get(QuotaNode, specs[0].id) is None:
            return specs
        return self._visible(specs[0].id)

    def _unborn_specs(self, node_id: str) -> list[tree.NodeSpec]:
        """The chain of a derived node id not created yet, when the caller may see what it names; any
        other id gets the answer of an unknown node (a foreign id and a made-up one look the same)."""
        try:
            specs = tree.specs_of_node_id(self.session, node_id)
        except NotFound:
            specs = None
        if specs is None or not (self.principal.is_global or specs[0].tenant_id == self.principal.tenant_id):
            raise NotFound("quota node", node_id)
        return specs

    def _tenant_of(self, name: str, value: str) -> str | None:
        """The tenant a tenant id or a project id names (None: no such tenant or project)."""
        if name == "tenant_id":
            return value if self.session.get(Tenant, value) is not None else None
        project = self.session.get(Project, value)
        return project.tenant_id if project is not None else None

"""The quota tree: system → tenant → project → sub-projects → user, any depth.

Node ids are derived (``tenant:<id>``, ``project:<id>``, ``user:<project>:<user>``), so nodes are
created on first use with ``INSERT ... ON CONFLICT DO NOTHING``: concurrent first uses never race.
A node without a limit on a resource inherits: only its ancestors' limits constrain it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from novacron.db.base import utcnow
from novacron.db.models import Project, QuotaLimit, QuotaNode, QuotaTemplate, QuotaUsage, Tenant, User
from novacron.errors import Forbidden, InvalidInput, NotFound
from novacron.quota.registry import RESOURCES

SYSTEM = "system"
#: sub-projects may nest this deep below their tenant (system 0, tenant 1, projects 2..)
MAX_DEPTH = 12


def tenant_node(tenant_id: str) -> str:
    return f"tenant:{tenant_id}"


def project_node(project_id: str) -> str:
    return f"project:{project_id}"


def user_node(project_id: str, user_id: str) -> str:
    return f"user:{project_id}:{user_id}"


def insert_ignore(session: Session, model: Any, rows: list[dict[str, Any]]) -> int:
    """Insert rows whose key may already exist; returns how many were new."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    ins: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model.__table__)
    result: Any = session.connection().execute(
        ins.on_conflict_do_nothing(), rows[0] if len(rows) == 1 else rows
    )
    return max(int(result.rowcount or 0), 0)


@dataclass(frozen=True)
class NodeSpec:
    id: str
    kind: str
    parent_id: str | None
    tenant_id: str | None
    ref_id: str | None
    depth: int


_SYSTEM_SPEC = NodeSpec(SYSTEM, "system", None, None, None, 0)


def project_ancestry(session: Session, project: Project) -> list[Project]:
    """The project and its parent projects, the project first."""
    out = [project]
    seen = {project.id}
    cur = project
    while cur.parent_id is not None:
        parent = session.get(Project, cur.parent_id)
        if parent is None or parent.id in seen:
            break
        out.append(parent)
        seen.add(parent.id)
        cur = parent
    return out


def chain_specs(session: Session, project: Project, user_id: str | None) -> list[NodeSpec]:
    """The nodes from the leaf (user, or the project) up to the system node, leaf first."""
    projects = list(reversed(project_ancestry(session, project)))  # top project first
    specs = [_SYSTEM_SPEC]
    specs.append(
        NodeSpec(tenant_node(project.tenant_id), "tenant", SYSTEM, project.tenant_id, project.tenant_id, 1)
    )
    for p in projects:
        specs.append(NodeSpec(project_node(p.id), "project", specs[-1].id, p.tenant_id, p.id, len(specs)))
    if user_id is not None:
        specs.append(
            NodeSpec(
                user_node(project.id, user_id), "user", specs[-1].id, project.tenant_id, user_id, len(specs)
            )
        )
    return list(reversed(specs))


def ensure_nodes(session: Session, specs: list[NodeSpec]) -> None:
    """Create the missing nodes (root first, for the parent foreign key), with their templates."""
    existing = set(session.scalars(select(QuotaNode.id).where(QuotaNode.id.in_([s.id for s in specs]))))
    missing = [s for s in sorted(specs, key=lambda s: s.depth) if s.id not in existing]
    if not missing:
        return
    now = utcnow()
    templates = {
        t.applies_to: t.limits
        for t in session.scalars(select(QuotaTemplate).where(QuotaTemplate.is_default.is_(True)))
    }
    for s in missing:
        created = insert_ignore(
            session,
            QuotaNode,
            [
                {
                    "id": s.id,
                    "kind": s.kind,
                    "parent_id": s.parent_id,
                    "tenant_id": s.tenant_id,
                    "ref_id": s.ref_id,
                    "depth": s.depth,
                    "created_at": now,
                    "updated_at": now,
                    "version": 1,
                }
            ],
        )
        # every registered resource's counter exists from the start: charges only UPDATE
        insert_ignore(session, QuotaUsage, [{"node_id": s.id, "resource": r, "used": 0} for r in RESOURCES])
        limits = templates.get(s.kind) or {}
        if created and limits:
            insert_ignore(
                session,
                QuotaLimit,
                [
                    {"node_id": s.id, "resource": r, "limit": int(v)}
                    for r, v in limits.items()
                    if r in RESOURCES
                ],
            )


def specs_for_ref(
    session: Session,
    *,
    tenant_id: str | None = None,
    project_id: str | None = None,
    user_id: str | None = None,
) -> list[NodeSpec]:
    """The chain (leaf first) of a tenant, project or user-in-project node, without writing.

    A user must belong to the project's tenant: any other id is answered as one that does not
    exist (a foreign user id must not become a node, nor show its username)."""
    if project_id is not None:
        project = session.get(Project, project_id)
        if project is None:
            raise NotFound("project", project_id)
        if user_id is not None:
            user = session.get(User, user_id)
            if user is None or user.tenant_id != project.tenant_id:
                raise NotFound("user", user_id)
        return chain_specs(session, project, user_id)
    if tenant_id is not None:
        if session.get(Tenant, tenant_id) is None:
            raise NotFound("tenant", tenant_id)
        return [NodeSpec(tenant_node(tenant_id), "tenant", SYSTEM, tenant_id, tenant_id, 1), _SYSTEM_SPEC]
    return [_SYSTEM_SPEC]


def node_for_ref(
    session: Session,
    *,
    tenant_id: str | None = None,
    project_id: str | None = None,
    user_id: str | None = None,
) -> str:
    """The node of a tenant, project or user-in-project (created when missing: callers that write)."""
    specs = specs_for_ref(session, tenant_id=tenant_id, project_id=project_id, user_id=user_id)
    ensure_nodes(session, specs)
    return specs[0].id


def specs_of_node_id(session: Session, node_id: str) -> list[NodeSpec] | None:
    """The chain of a derived node id (``tenant:<id>``, ``project:<id>``, ``user:<project>:<user>``)
    whose node does not exist yet; None when the id is not of that form."""
    kind, _, rest = node_id.partition(":")
    if kind == "tenant" and rest:
        return specs_for_ref(session, tenant_id=rest)
    if kind == "project" and rest:
        return specs_for_ref(session, project_id=rest)
    if kind == "user" and rest.count(":") == 1:
        project_id, _, user_id = rest.partition(":")
        return specs_for_ref(session, project_id=project_id, user_id=user_id)
    if node_id == SYSTEM:
        return [_SYSTEM_SPEC]
    return None


def default_limits(session: Session) -> dict[str, dict[str, int]]:
    """Per node kind, the limits a new node of that kind gets (its default template)."""
    return {
        t.applies_to: {r: int(v) for r, v in (t.limits or {}).items() if r in RESOURCES}
        for t in session.scalars(select(QuotaTemplate).where(QuotaTemplate.is_default.is_(True)))
    }


def peek_view(session: Session, specs: list[NodeSpec]) -> dict[str, Any]:
    """The view of ``specs[0]`` as it would be once created, for a node not created yet: nothing
    used, its default template's limits, its ancestors' effective ones. Reading never writes."""
    defaults = default_limits(session)
    stored = {
        n.id: n for n in session.scalars(select(QuotaNode).where(QuotaNode.id.in_([s.id for s in specs])))
    }
    lims = limits_of(session, list(stored))
    chain: list[dict[str, int]] = []
    for spec in specs:
        if spec.id in stored:
            chain.append({r: v for (n, r), v in lims.items() if n == spec.id})
        else:
            chain.append(dict(defaults.get(spec.kind, {})))
    leaf = specs[0]
    resources = []
    for r in sorted(RESOURCES):
        own = chain[0].get(r)
        effective = next((c[r] for c in chain if r in c), None)
        if own is None and effective is None:
            continue
        resources.append(
            {"resource": r, "unit": RESOURCES[r].unit, "used": 0, "limit": own,
             "effective_limit": effective, "percent": 0.0 if effective else None}
        )  # fmt: skip
    stub = QuotaNode(id=leaf.id, kind=leaf.kind, ref_id=leaf.ref_id)
    return {
        "id": leaf.id,
        "kind": leaf.kind,
        "name": _names(session, [stub]).get(leaf.id, leaf.id),
        "parent_id": leaf.parent_id,
        "tenant_id": leaf.tenant_id,
        "depth": leaf.depth,
        "version": 0,
        "resources": resources,
    }


def ancestors(session: Session, node_id: str) -> list[QuotaNode]:
    """The node and its ancestors, the node first."""
    out: list[QuotaNode] = []
    cur = session.get(QuotaNode, node_id)
    while cur is not None:
        out.append(cur)
        cur = session.get(QuotaNode, cur.parent_id) if cur.parent_id else None
    return out


# the node and its ancestors with their limits in one statement (no walk in Python, no query per level)
_CHAIN = text(
    """
    WITH RECURSIVE chain(id, parent_id, depth) AS (
        SELECT id, parent_id, depth FROM quota_nodes WHERE id = :leaf
        UNION ALL
        SELECT n.id, n.parent_id, n.depth FROM quota_nodes n JOIN chain c ON n.id = c.parent_id
    )
    SELECT chain.id, l.resource, l."limit" FROM chain
    LEFT JOIN quota_limits l ON l.node_id = chain.id
    ORDER BY chain.depth DESC
    """
)


def chain_limits(session: Session, leaf: str) -> tuple[list[str], dict[tuple[str, str], int]]:
    """The node's chain (leaf first, empty when the node does not exist) and every limit on it."""
    chain: list[str] = []
    limits: dict[tuple[str, str], int] = {}
    for node_id, resource, limit in session.connection().execute(_CHAIN, {"leaf": leaf}):
        if not chain or chain[-1] != node_id:
            chain.append(node_id)
        if resource is not None:
            limits[(node_id, resource)] = int(limit)
    return chain, limits


def subtree(session: Session, node_id: str) -> list[QuotaNode]:
    """The node and every descendant, breadth first."""
    root = session.get(QuotaNode, node_id)
    if root is None:
        return []
    out, frontier = [root], [root.id]
    while frontier:
        children = list(session.scalars(select(QuotaNode).where(QuotaNode.parent_id.in_(frontier))))
        out.extend(children)
        frontier = [c.id for c in children]
    return out


def limits_of(session: Session, node_ids: list[str]) -> dict[tuple[str, str], int]:
    rows = session.execute(
        select(QuotaLimit.node_id, QuotaLimit.resource, QuotaLimit.limit).where(
            QuotaLimit.node_id.in_(node_ids)
        )
    )
    return {(n, r): int(v) for n, r, v in rows}


def set_limits(session: Session, node: QuotaNode, changes: dict[str, int | None]) -> list[str]:
    """Set (or unset with None) limits; a child's limit never exceeds its parent's effective limit.

    Returns notes (a limit now below current usage applies to new requests; nothing is stopped).
    """
    notes: list[str] = []
    chain = ancestors(session, node.id)
    upper = limits_of(session, [a.id for a in chain[1:]])
    below = subtree(session, node.id)[1:]
    below_limits = limits_of(session, [b.id for b in below]) if below else {}
    for resource, value in sorted(changes.items()):
        field = f"limits.{resource}"
        if resource not in RESOURCES:
            raise InvalidInput(field, f"unknown resource; registered: {', '.join(sorted(RESOURCES))}")
        if value is None:
            row = session.get(QuotaLimit, (node.id, resource))
            if row is not None:
                session.delete(row)
            continue
        if value < 0:
            raise InvalidInput(field, "must be 0 or more (unset it with null to inherit)")
        for anc in chain[1:]:
            parent_limit = upper.get((anc.id, resource))
            if parent_limit is not None:
                if value > parent_limit:
                    raise InvalidInput(
                        field, f"{value} exceeds the limit {parent_limit} of the parent node '{anc.id}'"
                    )
                break
        for child in below:
            child_limit = below_limits.get((child.id, resource))
            if child_limit is not None and child_limit > value:
                raise InvalidInput(
                    field, f"{value} is below the limit {child_limit} of the descendant '{child.id}'"
                )
        row = session.get(QuotaLimit, (node.id, resource))
        if row is None:
            session.add(QuotaLimit(node_id=node.id, resource=resource, limit=value))
        else:
            row.limit = value
        used = session.scalar(
            select(QuotaUsage.used).where(QuotaUsage.node_id == node.id, QuotaUsage.resource == resource)
        )
        if used is not None and used > value:
            notes.append(
                f"{resource}: {used} in use is above the new limit {value}; new requests are refused"
            )
    node.updated_at = utcnow()  # bumps the version: the node's ETag covers its limits
    session.flush()
    return notes


def node_view(session: Session, nodes: list[QuotaNode]) -> list[dict[str, Any]]:
    """Quota bars: per node, per resource, used and limit (own, and the effective one inherited)."""
    if not nodes:
        return []
    ids = [n.id for n in nodes]
    usage: dict[str, dict[str, int]] = defaultdict(dict)
    for node_id, r, u in session.execute(
        select(QuotaUsage.node_id, QuotaUsage.resource, QuotaUsage.used).where(QuotaUsage.node_id.in_(ids))
    ):
        usage[node_id][r] = int(u)
    names = _names(session, nodes)
    out = []
    for n in nodes:
        chain = ancestors(session, n.id)
        lims = limits_of(session, [a.id for a in chain])
        resources = []
        for r in sorted(RESOURCES):
            own = lims.get((n.id, r))
            effective = next((lims[(a.id, r)] for a in chain if (a.id, r) in lims), None)
            used = usage[n.id].get(r, 0)
            if own is None and effective is None and used == 0:
                continue
            resources.append(
                {
                    "resource": r,
                    "unit": RESOURCES[r].unit,
                    "used": used,
                    "limit": own,
                    "effective_limit": effective,
                    "percent": round(100 * used / effective, 1) if effective else None,
                }
            )
        out.append(
            {
                "id": n.id,
                "kind": n.kind,
                "name": names.get(n.id, n.id),
                "parent_id": n.parent_id,
                "tenant_id": n.tenant_id,
                "depth": n.depth,
                "version": n.version,
                "resources": resources,
            }
        )
    return out


def _names(session: Session, nodes: list[QuotaNode]) -> dict[str, str]:
    refs: dict[str, list[str]] = defaultdict(list)
    for n in nodes:
        if n.ref_id:
            refs[n.kind].append(n.ref_id)
    found: dict[tuple[str, str], str] = {}
    for kind, model in (("tenant", Tenant), ("project", Project)):
        if refs[kind]:
            found.update(
                {
                    (kind, i): nm
                    for i, nm in session.execute(select(model.id, model.name).where(model.id.in_(refs[kind])))
                }
            )
    if refs["user"]:
        found.update(
            {
                ("user", i): nm
                for i, nm in session.execute(select(User.id, User.username).where(User.id.in_(refs["user"])))
            }
        )
    return {n.id: found.get((n.kind, n.ref_id or ""), n.id) for n in nodes}


def visible_node(session: Session, node_id: str, tenant_id: str | None, is_global: bool) -> QuotaNode:
    node = session.get(QuotaNode, node_id)
    if node is None or (not is_global and node.tenant_id != tenant_id):
        raise NotFound("quota node", node_id)
    return node


def check_writable(node: QuotaNode, is_global: bool) -> None:
    """Tenant admins set limits inside their tenant, never the tenant's own nor the system's."""
    if node.kind in ("system", "tenant") and not is_global:
        raise Forbidden(f"Only platform administrators set the limits of the {node.kind} node.")


def forget_project(session: Session, project_id: str) -> None:
    """A deleted project's node goes (its user nodes with it); it holds nothing once its VMs are gone."""
    node = session.get(QuotaNode, project_node(project_id))
    if node is not None:
        session.delete(node)

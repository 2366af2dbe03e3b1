"""/v1/quota: the quota tree (limits and usage bars per node), templates, reconciliation, and the
policy engine's rules (/v1/policy-rules)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from novacron.api.concurrency import Idempotency, check_if_match, etag_of
from novacron.api.deps import ReadSessionDep, SessionDep, require
from novacron.api.errors import Problem, invalid, name_taken, not_found
from novacron.api.listing import Page
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import PolicyRule, QuotaNode, QuotaTemplate
from novacron.identity.principal import Principal
from novacron.quota import policy, reconcile, tree
from novacron.quota.registry import RESOURCES

router = APIRouter(tags=["quota"])

CanQuotaRead = Annotated[Principal, Depends(require("quota:read"))]
CanQuotaWrite = Annotated[Principal, Depends(require("quota:write"))]
CanQuotaAdmin = Annotated[Principal, Depends(require("quota:admin"))]
CanPolicyWrite = Annotated[Principal, Depends(require("policy:write"))]

Limits = dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")], Annotated[int, Field(ge=0)] | None]


class ResourceOut(BaseModel):
    name: str
    unit: str
    description: str
    billing_unit: str


class UsageBar(BaseModel):
    resource: str
    unit: str
    used: int
    #: this node's own limit (None: inherited)
    limit: int | None
    #: the nearest limit on the way to the root (None: unlimited)
    effective_limit: int | None
    percent: float | None


class NodeOut(BaseModel):
    id: str
    kind: str
    name: str
    parent_id: str | None
    tenant_id: str | None
    depth: int
    version: int
    resources: list[UsageBar]


class LimitsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limits: Limits = Field(description="resource -> limit; null unsets it (the node then inherits)")


class LimitsOut(NodeOut):
    notes: list[str] = Field(default_factory=list)


class ReconcileRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repair: bool = False


@router.get("/v1/quota/resources", response_model=list[ResourceOut])
def list_resources(principal: CanQuotaRead) -> list[ResourceOut]:
    """The resource registry: every resource a limit may be set on."""
    return [
        ResourceOut(name=r.name, unit=r.unit, description=r.description, billing_unit=r.billing_unit)
        for r in sorted(RESOURCES.values(), key=lambda r: r.name)
    ]


def _resolve(
    session: Any,
    principal: Principal,
    node_id: str | None,
    tenant_id: str | None,
    project_id: str | None,
    user_id: str | None,
) -> QuotaNode | list[tree.NodeSpec]:
    """The stored node, or (not created yet) its chain of specs; never writes."""
    if node_id is None:
        if project_id is None and tenant_id is None:
            tenant_id = principal.tenant_id
        if project_id is None and tenant_id is None and not principal.is_global:
            raise invalid("query.tenant_id", "name a tenant, project or node")
        for value, field in ((tenant_id, "tenant_id"), (project_id, "project_id")):
            if value is not None and not principal.is_global:
                owner = _tenant_of(session, field, value)
                if owner != principal.tenant_id:
                    raise not_found(field.removesuffix("_id"), value)
        specs = tree.specs_for_ref(session, tenant_id=tenant_id, project_id=project_id, user_id=user_id)
        if session.get(QuotaNode, specs[0].id) is None:
            return specs
        node_id = specs[0].id
    elif session.get(QuotaNode, node_id) is None:
        return _unborn_specs(session, principal, node_id)
    return tree.visible_node(session, node_id, principal.tenant_id, principal.is_global)


def _unborn_specs(session: Any, principal: Principal, node_id: str) -> list[tree.NodeSpec]:
    """The chain of a derived node id not created yet, when the caller may see what it names; any
    other id gets the answer of an unknown node (a foreign id and a made-up one look the same)."""
    try:
        specs = tree.specs_of_node_id(session, node_id)
    except Problem:
        specs = None
    if specs is None or not (principal.is_global or specs[0].tenant_id == principal.tenant_id):
        raise not_found("quota node", node_id)
    return specs


def _node_to_write(session: Any, principal: Principal, node_id: str, request: Request) -> QuotaNode:
    """The node a PATCH sets limits on; a derived id whose node does not exist yet is created now
    (an explicit write), once the caller may see what it names."""
    if session.get(QuotaNode, node_id) is None:
        specs = _unborn_specs(session, principal, node_id)
        check_if_match(request, _Unborn(node_id))
        tree.ensure_nodes(session, specs)
        node = tree.visible_node(session, node_id, principal.tenant_id, principal.is_global)
        tree.check_writable(node, principal.is_global)
        return node
    node = tree.visible_node(session, node_id, principal.tenant_id, principal.is_global)
    check_if_match(request, node)
    tree.check_writable(node, principal.is_global)
    return node


class _Unborn:
    """What a GET showed for a node not created yet: version 0."""

    def __init__(self, node_id: str) -> None:
        self.id = node_id
        self.version = 0


def _tenant_of(session: Any, field: str, value: str) -> str | None:
    from novacron.db.models import Project, Tenant

    if field == "tenant_id":
        return value if session.get(Tenant, value) is not None else None
    project = session.get(Project, value)
    return project.tenant_id if project is not None else None


@router.get("/v1/quota", response_model=NodeOut)
def show_quota(
    response: Response,
    session: ReadSessionDep,
    principal: CanQuotaRead,
    node_id: str | None = Query(None, max_length=100),
    tenant_id: str | None = Query(None, max_length=40),
    project_id: str | None = Query(None, max_length=40),
    user_id: str | None = Query(None, max_length=40),
) -> NodeOut:
    """One node's limits and usage (the caller's tenant by default). A node not created yet is shown
    as it would be (version 0); reading never creates it."""
    found = _resolve(session, principal, node_id, tenant_id, project_id, user_id)
    if isinstance(found, list):
        view = tree.peek_view(session, found)
        response.headers["ETag"] = etag_of(_Unborn(view["id"]))
        return NodeOut.model_validate(view)
    response.headers["ETag"] = etag_of(found)
    return NodeOut.model_validate(tree.node_view(session, [found])[0])


@router.get("/v1/quota/nodes", response_model=Page[NodeOut])
def list_nodes(
    session: ReadSessionDep,
    principal: CanQuotaRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "created_at",
    parent_id: str | None = Query(None, max_length=100),
    tenant_id: str | None = Query(None, max_length=40),
    kind: Literal["system", "tenant", "project", "user"] | None = None,
) -> Page[NodeOut]:
    """Quota bars for the dashboard: used and limit per resource for each node (filter by parent)."""
    stmt = select(QuotaNode)
    if not principal.is_global:
        stmt = stmt.where(QuotaNode.tenant_id == principal.tenant_id)
    for col, value in (
        (QuotaNode.parent_id, parent_id),
        (QuotaNode.tenant_id, tenant_id),
        (QuotaNode.kind, kind),
    ):
        if value is not None:
            stmt = stmt.where(col == value)
    rows, nxt = paginate(session, stmt, QuotaNode, ListParams(limit, cursor, sort, ("created_at", "depth")))
    return Page[NodeOut](
        items=[NodeOut.model_validate(v) for v in tree.node_view(session, rows)], next_cursor=nxt
    )


@router.patch("/v1/quota/nodes/{node_id}", response_model=LimitsOut)
def set_limits(
    node_id: str,
    body: LimitsUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: CanQuotaWrite,
) -> LimitsOut:
    """Set or unset limits at once; a child's limit never exceeds its parent's (If-Match honoured)."""
    node = _node_to_write(session, principal, node_id, request)
    notes = tree.set_limits(session, node, dict(body.limits))
    response.headers["ETag"] = etag_of(node)
    return LimitsOut.model_validate({**tree.node_view(session, [node])[0], "notes": notes})


@router.post("/v1/quota/reconcile")
def run_reconcile(body: ReconcileRequest, session: SessionDep, principal: CanQuotaAdmin) -> dict[str, Any]:
    """Compare counted usage with what exists; ``repair`` makes the counters right."""
    return reconcile.reconcile(session, repair=body.repair)


# -- templates ------------------------------------------------------------------------------------


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    applies_to: Literal["tenant", "project", "user"]
    is_default: bool = Field(True, description="copied onto every new node of that kind")
    limits: dict[str, Annotated[int, Field(ge=0)]]


class TemplateOut(BaseModel):
    id: str
    name: str
    applies_to: str
    is_default: bool
    limits: dict[str, int]
    created_at: datetime


@router.get("/v1/quota/templates", response_model=Page[TemplateOut])
def list_templates(
    session: ReadSessionDep,
    principal: CanQuotaRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> Page[TemplateOut]:
    rows, nxt = paginate(
        session,
        select(QuotaTemplate),
        QuotaTemplate,
        ListParams(limit, cursor, "created_at", ("created_at",)),
    )
    return Page[TemplateOut](
        items=[TemplateOut.model_validate(r, from_attributes=True) for r in rows], next_cursor=nxt
    )


@router.post("/v1/quota/templates", status_code=201, response_model=TemplateOut)
def create_template(
    body: TemplateIn, request: Request, session: SessionDep, principal: CanQuotaAdmin
) -> Response:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    for r in body.limits:
        if r not in RESOURCES:
            raise invalid(f"body.limits.{r}", "unknown resource")
    if session.scalar(select(QuotaTemplate.id).where(QuotaTemplate.name == body.name)):
        raise name_taken("template", body.name, "body.name", "")
    if body.is_default:  # one default per kind: the new one replaces the old
        for old in session.scalars(
            select(QuotaTemplate).where(
                QuotaTemplate.applies_to == body.applies_to, QuotaTemplate.is_default.is_(True)
            )
        ):
            old.is_default = False
    t = QuotaTemplate(id=new_id("qtpl"), **body.model_dump())
    session.add(t)
    session.flush()
    payload = TemplateOut.model_validate(t, from_attributes=True).model_dump(mode="json")
    idem.remember(201, payload)
    return JSONResponse(payload, status_code=201)


@router.delete("/v1/quota/templates/{template_id}", status_code=204)
def delete_template(template_id: str, session: SessionDep, principal: CanQuotaAdmin) -> Response:
    t = session.get(QuotaTemplate, template_id)
    if t is None:
        raise not_found("template", template_id)
    session.delete(t)
    return Response(status_code=204)


# -- policy rules ---------------------------------------------------------------------------------


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    kind: Literal["threshold", "burst", "max_size"]
    resource: str = Field("*", max_length=40, description="a registered resource or *")
    role: Literal["admin", "tenant-admin", "member", "viewer"] | None = None
    node_id: str | None = Field(None, max_length=100, description="only this node's subtree")
    params: dict[str, float]
    enabled: bool = True


class RuleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    params: dict[str, float] | None = None
    enabled: bool | None = None


class RuleOut(BaseModel):
    id: str
    name: str
    kind: str
    resource: str
    role: str | None
    node_id: str | None
    params: dict[str, Any]
    enabled: bool
    created_at: datetime
    version: int


@router.get("/v1/policy-rules", response_model=Page[RuleOut])
def list_rules(
    session: ReadSessionDep,
    principal: CanQuotaRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> Page[RuleOut]:
    stmt = select(PolicyRule)
    if not principal.is_global:
        # a rule scoped to another tenant's node would name that tenant's projects: not shown
        own = select(QuotaNode.id).where(QuotaNode.tenant_id == principal.tenant_id)
        stmt = stmt.where(PolicyRule.node_id.is_(None) | PolicyRule.node_id.in_(own))
    rows, nxt = paginate(session, stmt, PolicyRule, ListParams(limit, cursor, "created_at", ("created_at",)))
    return Page[RuleOut](
        items=[RuleOut.model_validate(r, from_attributes=True) for r in rows], next_cursor=nxt
    )


@router.post("/v1/policy-rules", status_code=201, response_model=RuleOut)
def create_rule(body: RuleIn, request: Request, session: SessionDep, principal: CanPolicyWrite) -> Response:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    if body.resource != "*" and body.resource not in RESOURCES:
        raise invalid("body.resource", f"unknown resource; registered: {', '.join(sorted(RESOURCES))}")
    if body.node_id is not None and session.get(QuotaNode, body.node_id) is None:
        raise invalid("body.node_id", f"no quota node '{body.node_id}'", 404)
    params = policy.validate_params(
        body.kind, {k: (int(v) if float(v).is_integer() else v) for k, v in body.params.items()}
    )
    if session.scalar(select(PolicyRule.id).where(PolicyRule.name == body.name)):
        raise name_taken("policy rule", body.name, "body.name", "")
    rule = PolicyRule(
        id=new_id("rule"),
        name=body.name,
        kind=body.kind,
        resource=body.resource,
        role=body.role,
        node_id=body.node_id,
        params=params,
        enabled=body.enabled,
    )
    session.add(rule)
    session.flush()
    return idem.created(RuleOut.model_validate(rule, from_attributes=True), rule)


def _rule(session: Any, rule_id: str) -> PolicyRule:
    rule = session.scalar(select(PolicyRule).where((PolicyRule.id == rule_id) | (PolicyRule.name == rule_id)))
    if rule is None:
        raise not_found("policy rule", rule_id)
    return rule


@router.patch("/v1/policy-rules/{rule_id}", response_model=RuleOut)
def update_rule(
    rule_id: str,
    body: RuleUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: CanPolicyWrite,
) -> RuleOut:
    rule = _rule(session, rule_id)
    check_if_match(request, rule)
    if body.params is not None:
        rule.params = policy.validate_params(rule.kind, dict(body.params))
    if body.enabled is not None:
        rule.enabled = body.enabled
    session.flush()
    response.headers["ETag"] = etag_of(rule)
    return RuleOut.model_validate(rule, from_attributes=True)


@router.delete("/v1/policy-rules/{rule_id}", status_code=204)
def delete_rule(rule_id: str, session: SessionDep, principal: CanPolicyWrite) -> Response:
    session.delete(_rule(session, rule_id))
    return Response(status_code=204)

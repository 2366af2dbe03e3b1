"""/v1/quota: the quota tree (limits and usage bars per node), templates, reconciliation, and the
policy engine's rules (/v1/policy-rules)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, require, service
from novacron.api.listing import Page, list_query
from novacron.db.listing import ListParams
from novacron.db.models import PolicyRule, QuotaTemplate
from novacron.identity.principal import Principal
from novacron.quota.registry import RESOURCES
from novacron.quota.rules import PolicyRuleService, RuleSpec
from novacron.quota.service import NodeFilter, NodeRef, QuotaService, TemplateSpec

router = APIRouter(tags=["quota"])

CanQuotaRead = Annotated[Principal, Depends(require("quota:read"))]
QuotaReader = Annotated[QuotaService, Depends(service(QuotaService, "quota:read", write=False))]
QuotaWriter = Annotated[QuotaService, Depends(service(QuotaService, "quota:write"))]
QuotaAdmin = Annotated[QuotaService, Depends(service(QuotaService, "quota:admin"))]
RuleReader = Annotated[PolicyRuleService, Depends(service(PolicyRuleService, "quota:read", write=False))]
RuleWriter = Annotated[PolicyRuleService, Depends(service(PolicyRuleService, "policy:write"))]
NodeList = Annotated[ListParams, Depends(list_query(("created_at", "depth"), "created_at"))]
CreatedList = Annotated[ListParams, Depends(list_query(("created_at",), "created_at"))]

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


@router.get("/v1/quota", response_model=NodeOut)
def show_quota(
    response: Response,
    quota: QuotaReader,
    node_id: str | None = Query(None, max_length=100),
    tenant_id: str | None = Query(None, max_length=40),
    project_id: str | None = Query(None, max_length=40),
    user_id: str | None = Query(None, max_length=40),
) -> NodeOut:
    """One node's limits and usage (the caller's tenant by default). A node not created yet is shown
    as it would be (version 0); reading never creates it."""
    node, view = quota.show(NodeRef(node_id, tenant_id, project_id, user_id))
    set_etag(response, node)
    return NodeOut.model_validate(view)


@router.get("/v1/quota/nodes", response_model=Page[NodeOut])
def list_nodes(
    quota: QuotaReader,
    page: NodeList,
    parent_id: str | None = Query(None, max_length=100),
    tenant_id: str | None = Query(None, max_length=40),
    kind: Literal["system", "tenant", "project", "user"] | None = None,
) -> Page[NodeOut]:
    """Quota bars for the dashboard: used and limit per resource for each node (filter by parent)."""
    views, nxt = quota.list_nodes(page, NodeFilter(parent_id, tenant_id, kind))
    return Page[NodeOut](items=[NodeOut.model_validate(v) for v in views], next_cursor=nxt)


@router.patch("/v1/quota/nodes/{node_id}", response_model=LimitsOut)
def set_limits(
    node_id: str, body: LimitsUpdate, request: Request, response: Response, quota: QuotaWriter
) -> LimitsOut:
    """Set or unset limits at once; a child's limit never exceeds its parent's (If-Match honoured).
    A derived node id whose node does not exist yet is created now (an explicit write)."""
    check_if_match(request, quota.current(node_id))
    node, view = quota.set_limits(node_id, dict(body.limits))
    set_etag(response, node)
    return LimitsOut.model_validate(view)


@router.post("/v1/quota/reconcile")
def run_reconcile(body: ReconcileRequest, quota: QuotaAdmin) -> dict[str, Any]:
    """Compare counted usage with what exists; ``repair`` makes the counters right."""
    return quota.reconcile(body.repair)


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

    @classmethod
    def of(cls, t: QuotaTemplate) -> TemplateOut:
        return cls.model_validate(t, from_attributes=True)


@router.get("/v1/quota/templates", response_model=Page[TemplateOut])
def list_templates(quota: QuotaReader, page: CreatedList) -> Page[TemplateOut]:
    rows, nxt = quota.list_templates(page)
    return Page[TemplateOut](items=[TemplateOut.of(t) for t in rows], next_cursor=nxt)


@router.post("/v1/quota/templates", status_code=201, response_model=TemplateOut)
def create_template(body: TemplateIn, quota: QuotaAdmin, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    template = quota.create_template(TemplateSpec(**body.model_dump()))
    payload = TemplateOut.of(template).model_dump(mode="json")
    idem.remember(201, payload)
    return JSONResponse(payload, status_code=201)


@router.delete("/v1/quota/templates/{template_id}", status_code=204)
def delete_template(template_id: str, quota: QuotaAdmin) -> Response:
    quota.delete_template(template_id)
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

    @classmethod
    def of(cls, rule: PolicyRule) -> RuleOut:
        return cls.model_validate(rule, from_attributes=True)


@router.get("/v1/policy-rules", response_model=Page[RuleOut])
def list_rules(rules: RuleReader, page: CreatedList) -> Page[RuleOut]:
    rows, nxt = rules.list(page)
    return Page[RuleOut](items=[RuleOut.of(r) for r in rows], next_cursor=nxt)


@router.post("/v1/policy-rules", status_code=201, response_model=RuleOut)
def create_rule(body: RuleIn, rules: RuleWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    rule = rules.create(RuleSpec(**body.model_dump()))
    return idem.created(RuleOut.of(rule), rule)


@router.patch("/v1/policy-rules/{rule_id}", response_model=RuleOut)
def update_rule(
    rule_id: str, body: RuleUpdate, request: Request, response: Response, rules: RuleWriter
) -> RuleOut:
    rule = rules.get(rule_id)
    check_if_match(request, rule)
    rules.update(rule, body.params, body.enabled)
    set_etag(response, rule)
    return RuleOut.of(rule)


@router.delete("/v1/policy-rules/{rule_id}", status_code=204)
def delete_rule(rule_id: str, rules: RuleWriter) -> Response:
    rules.delete(rule_id)
    return Response(status_code=204)

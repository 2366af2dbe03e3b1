"""/v1/alert-rules and /v1/alert-receivers: what is watched, and where its alerts are sent."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.db.listing import ListParams
from novacron.db.models import AlertReceiver, AlertRule
from novacron.monitoring.alerting.rules import RuleSpec
from novacron.monitoring.alerting.service import AlertReceiverService, AlertRuleService, ReceiverSpec

router = APIRouter(tags=["alerts"])
RuleReader = Annotated[AlertRuleService, Depends(service(AlertRuleService, "alert:read", write=False))]
RuleWriter = Annotated[AlertRuleService, Depends(service(AlertRuleService, "alert:write"))]
ReceiverReader = Annotated[
    AlertReceiverService, Depends(service(AlertReceiverService, "alert:read", write=False))
]
ReceiverWriter = Annotated[
    AlertReceiverService, Depends(service(AlertReceiverService, "alert-receiver:write"))
]
Listing = Annotated[ListParams, Depends(list_query(("name", "created_at"), "name"))]
NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$"
DURATION = r"^(\d+(ms|s|m|h|d|w))+$"
LabelMap = dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=1024)]]


class Matcher(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64)
    op: Literal["=", "!=", "=~", "!~"] = "="
    value: str = Field(max_length=1024)


class RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(pattern=NAME)
    kind: Literal["threshold", "rate_of_change", "absence", "anomaly", "burn_rate"]
    metric: str | None = Field(
        default=None, max_length=200, description="the series name (anomaly: the scored one)"
    )
    matchers: LabelMap = Field(default_factory=dict, max_length=16, description="label equality filters")
    function: Literal["rate", "increase", "avg_over_time", "max_over_time", "min_over_time"] | None = Field(
        default=None, description="threshold: a range function applied first (rate for counters)"
    )
    window: str = Field(default="1m", pattern=DURATION, description="the range the function reads")
    op: Literal[">", ">=", "<", "<=", "==", "!="] = ">"
    value: float | None = Field(default=None, allow_inf_nan=False)
    expr: str | None = Field(
        default=None, max_length=2000, description="burn_rate: the whole PromQL expression"
    )
    for_: str = Field(
        default="0s", alias="for", pattern=DURATION, description="how long it must hold to fire"
    )
    severity: Literal["info", "warning", "critical"] = "warning"
    labels: LabelMap = Field(default_factory=dict, max_length=16)
    annotations: LabelMap = Field(default_factory=dict, max_length=16)
    receivers: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=8)
    tenant_id: str | None = Field(default=None, max_length=40, description="administrators: the owner")
    enabled: bool = True


class RuleOut(BaseModel):
    id: str
    tenant_id: str | None
    name: str
    kind: str
    spec: dict[str, Any]
    expr: str
    for_s: int
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    receiver_ids: list[str]
    enabled: bool
    created_at: datetime
    version: int

    @classmethod
    def of(cls, rule: AlertRule) -> RuleOut:
        return cls.model_validate(rule, from_attributes=True)


@router.post("/v1/alert-rules", status_code=201, response_model=RuleOut)
def create_rule(body: RuleCreate, rules: RuleWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    fields = body.model_dump()
    rule = rules.create(RuleSpec(**fields))
    return idem.created(RuleOut.of(rule), rule)


@router.get("/v1/alert-rules", response_model=Page[RuleOut])
def list_rules(rules: RuleReader, page: Listing, name: str | None = None) -> Page[RuleOut]:
    rows, nxt = rules.list(page, name=name)
    return Page[RuleOut](items=[RuleOut.of(r) for r in rows], next_cursor=nxt)


@router.get("/v1/alert-rules/{rule_id}", response_model=RuleOut)
def get_rule(rule_id: str, response: Response, rules: RuleReader) -> RuleOut:
    rule = rules.get(rule_id)
    set_etag(response, rule)
    return RuleOut.of(rule)


class RuleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(description="false: the rule is not evaluated (its alerts resolve), and is kept")


@router.patch("/v1/alert-rules/{rule_id}", response_model=RuleOut)
def update_rule(
    rule_id: str, body: RuleUpdate, request: Request, response: Response, rules: RuleWriter
) -> RuleOut:
    rule = rules.get(rule_id)
    check_if_match(request, rule)
    rules.set_enabled(rule, body.enabled)
    set_etag(response, rule)
    return RuleOut.of(rule)


@router.delete("/v1/alert-rules/{rule_id}", status_code=204)
def delete_rule(rule_id: str, request: Request, rules: RuleWriter) -> Response:
    rule = rules.get(rule_id)
    check_if_match(request, rule)
    rules.delete(rule)
    return Response(status_code=204)


class ReceiverCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    kind: Literal["webhook", "email"]
    url: str | None = Field(default=None, max_length=2048, description="webhook: where it is POSTed")
    email_to: str | None = Field(
        default=None, max_length=254, pattern=r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$", description="email"
    )
    signing_secret: str | None = Field(
        default=None, min_length=16, max_length=256, description="webhook: the HMAC-SHA256 key (write-only)"
    )
    group_by: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=16)
    group_wait_s: int = Field(default=0, ge=0, le=3600)
    group_interval_s: int = Field(default=60, ge=1, le=86400)
    repeat_interval_s: int = Field(default=4 * 3600, ge=1, le=30 * 86400)
    matchers: list[Matcher] = Field(default_factory=list, max_length=16)
    tenant_id: str | None = Field(default=None, max_length=40, description="administrators: the owner")


class ReceiverOut(BaseModel):
    id: str
    tenant_id: str | None
    name: str
    kind: str
    url: str | None = Field(description="the webhook's URL without credentials or query (sealed at rest)")
    email_to: str | None
    signing_secret_set: bool
    group_by: list[str]
    group_wait_s: int
    group_interval_s: int
    repeat_interval_s: int
    matchers: list[Matcher]
    created_at: datetime
    version: int

    @classmethod
    def of(cls, r: AlertReceiver) -> ReceiverOut:
        return cls(
            id=r.id,
            tenant_id=r.tenant_id,
            name=r.name,
            kind=r.kind,
            url=r.url_shown,
            email_to=r.email_to,
            signing_secret_set=r.signing_secret is not None,
            group_by=list(r.group_by),
            group_wait_s=r.group_wait_s,
            group_interval_s=r.group_interval_s,
            repeat_interval_s=r.repeat_interval_s,
            matchers=[Matcher.model_validate(m) for m in r.matchers],
            created_at=r.created_at,
            version=r.version,
        )


@router.post("/v1/alert-receivers", status_code=201, response_model=ReceiverOut)
def create_receiver(body: ReceiverCreate, receivers: ReceiverWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    receiver = receivers.create(ReceiverSpec(**body.model_dump()))
    return idem.created(ReceiverOut.of(receiver), receiver)


@router.get("/v1/alert-receivers", response_model=Page[ReceiverOut])
def list_receivers(receivers: ReceiverReader, page: Listing, name: str | None = None) -> Page[ReceiverOut]:
    rows, nxt = receivers.list(page, name=name)
    return Page[ReceiverOut](items=[ReceiverOut.of(r) for r in rows], next_cursor=nxt)


@router.get("/v1/alert-receivers/{receiver_id}", response_model=ReceiverOut)
def get_receiver(receiver_id: str, response: Response, receivers: ReceiverReader) -> ReceiverOut:
    receiver = receivers.get(receiver_id)
    set_etag(response, receiver)
    return ReceiverOut.of(receiver)


@router.delete("/v1/alert-receivers/{receiver_id}", status_code=204)
def delete_receiver(receiver_id: str, request: Request, receivers: ReceiverWriter) -> Response:
    receiver = receivers.get(receiver_id)
    check_if_match(request, receiver)
    receivers.delete(receiver)
    return Response(status_code=204)

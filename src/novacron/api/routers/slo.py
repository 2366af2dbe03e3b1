"""/v1/probes, /v1/slos and /v1/slo-report: synthetic probes into tenant networks and SLOs on them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.db.listing import ListParams
from novacron.db.models import ProbeResult
from novacron.monitoring.slo.promql import BurnRule
from novacron.monitoring.slo.report import to_csv, to_html
from novacron.monitoring.slo.service import (
    NewProbe,
    NewSLO,
    ProbeService,
    ProbeView,
    SLOService,
    SLOStatus,
    SLOView,
)

router = APIRouter(tags=["slos"])

ProbeReader = Annotated[ProbeService, Depends(service(ProbeService, "slo:read", write=False))]
ProbeWriter = Annotated[ProbeService, Depends(service(ProbeService, "slo:write"))]
SLOReader = Annotated[SLOService, Depends(service(SLOService, "slo:read", write=False))]
SLOWriter = Annotated[SLOService, Depends(service(SLOService, "slo:write"))]
ProbeList = Annotated[ListParams, Depends(list_query(("name", "created_at"), "name"))]
SLOList = Annotated[ListParams, Depends(list_query(("name", "created_at"), "name"))]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]


class ProbeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    kind: Literal["icmp", "tcp", "http", "https"]
    vm_id: str = Field(max_length=64, description="the VM probed (id or name): one of yours")
    port_id: str | None = Field(None, max_length=64, description="which of its ports (default: its first)")
    target_port: int | None = Field(None, ge=1, le=65535, description="TCP port (tcp, http, https)")
    path: str = Field("/", pattern=r"^/[\x21-\x7e]{0,255}$", description="http(s): the path requested")
    expected_status: int = Field(200, ge=100, le=599, description="http(s): the status that counts as up")
    body_contains: str | None = Field(
        None, min_length=1, max_length=256, description="http(s): text the body must hold"
    )
    interval_s: int = Field(10, ge=1, le=3600)
    timeout_s: float = Field(2.0, ge=0.1, le=60)
    tls_verify: bool | None = Field(
        None,
        description="https: verify the certificate's chain and name (default true); "
        "false checks reachability and the answer only",
    )
    tls_server_name: str | None = Field(
        None,
        max_length=253,
        pattern=r"^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$",
        description="https: the name the certificate must be for, sent as SNI and Host "
        "(default: the address)",
    )
    tls_ca_pem: str | None = Field(
        None, max_length=65536, description="https: CA certificates (PEM) trusted instead of the system's"
    )


class ProbeResultOut(BaseModel):
    checked_at: datetime
    success: bool
    duration_s: float
    error: str | None
    vantage: str | None = Field(description="host:namespace the check ran from (administrators only)")

    @classmethod
    def of(cls, r: ProbeResult, show_vantage: bool) -> ProbeResultOut:
        return cls(
            checked_at=r.checked_at,
            success=r.success,
            duration_s=r.duration_s,
            error=r.error,
            vantage=r.vantage if show_vantage else None,
        )


class ProbeOut(BaseModel):
    id: str
    name: str
    kind: str
    project_id: str
    tenant_id: str
    vm_id: str | None
    port_id: str
    address: str
    target_port: int | None
    path: str
    expected_status: int
    body_contains: str | None
    interval_s: int
    timeout_s: float
    tls_verify: bool
    tls_server_name: str | None
    tls_ca_pem: str | None
    enabled: bool
    created_at: datetime
    last_result: ProbeResultOut | None

    @classmethod
    def of(cls, view: ProbeView) -> ProbeOut:
        p, last = view.probe, view.last
        return cls(
            id=p.id,
            name=p.name,
            kind=p.kind,
            project_id=p.project_id,
            tenant_id=p.tenant_id,
            vm_id=p.vm_id,
            port_id=p.port_id,
            address=p.address,
            target_port=p.target_port,
            path=p.path,
            expected_status=p.expected_status,
            body_contains=p.body_contains,
            interval_s=p.interval_s,
            timeout_s=p.timeout_s,
            tls_verify=p.tls_verify,
            tls_server_name=p.tls_server_name,
            tls_ca_pem=p.tls_ca_pem,
            enabled=p.enabled,
            created_at=p.created_at,
            last_result=ProbeResultOut.of(last, view.show_vantage) if last is not None else None,
        )


@router.get("/v1/probes", response_model=Page[ProbeOut])
def list_probes(probes: ProbeReader, page: ProbeList, name: str | None = None) -> Page[ProbeOut]:
    views, nxt = probes.list(page, name=name)
    return Page[ProbeOut](items=[ProbeOut.of(v) for v in views], next_cursor=nxt)


@router.post("/v1/probes", status_code=201, response_model=ProbeOut)
def create_probe(body: ProbeCreate, probes: ProbeWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    view = probes.create(NewProbe(**body.model_dump()))
    return idem.created(ProbeOut.of(view), view.probe)


@router.get("/v1/probes/{probe_id}", response_model=ProbeOut)
def get_probe(probe_id: str, response: Response, probes: ProbeReader) -> ProbeOut:
    view = probes.view(probe_id)
    set_etag(response, view.probe)
    return ProbeOut.of(view)


@router.delete("/v1/probes/{probe_id}", status_code=204)
def delete_probe(probe_id: str, probes: ProbeWriter) -> Response:
    probes.delete(probe_id)
    return Response(status_code=204)


class SLOCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    probe_id: str = Field(max_length=64, description="the probe measured (id or name)")
    indicator: Literal["success", "latency"] = Field(
        "success",
        description="success: the probe's success ratio; latency: its successes within the threshold",
    )
    latency_threshold_s: float | None = Field(None, gt=0, le=60)
    target_percent: float = Field(ge=50, le=99.999, description="the good share aimed at, e.g. 99.9")
    window_days: int = Field(30, ge=1, le=90)
    alerts: bool = Field(
        True, description="make its burn-rate rules in the alerting engine (/v1/alert-rules)"
    )
    alert_receivers: list[str] = Field(
        default_factory=list, max_length=8, description="receivers (ids or names) its alerts are sent to"
    )


class AlertRuleOut(BaseModel):
    name: str
    severity: str
    expr: str = Field(description="PromQL the alerting engine evaluates")
    rule_id: str | None = Field(description="the rule in /v1/alert-rules (None: not made in the engine)")

    @classmethod
    def of(cls, r: BurnRule, rule_id: str | None) -> AlertRuleOut:
        return cls(name=r.name, severity=r.severity, expr=r.expr, rule_id=rule_id)


class SLOOut(BaseModel):
    id: str
    name: str
    project_id: str
    tenant_id: str
    probe_id: str
    indicator: str
    latency_threshold_s: float | None
    target_percent: float
    window_days: int
    created_at: datetime
    alert_rules: list[AlertRuleOut]

    @classmethod
    def of(cls, view: SLOView) -> SLOOut:
        s, rules = view.slo, view.rules
        return cls(
            id=s.id,
            name=s.name,
            project_id=s.project_id,
            tenant_id=s.tenant_id,
            probe_id=s.probe_id,
            indicator=s.indicator,
            latency_threshold_s=s.latency_threshold_s,
            target_percent=round(s.target * 100, 6),
            window_days=s.window_days,
            created_at=s.created_at,
            alert_rules=[
                AlertRuleOut.of(r, made) for r, made in zip(rules, _padded(s.alert_rule_ids), strict=False)
            ],
        )


def _padded(ids: list[str] | None) -> list[str | None]:
    """The rule ids made for an SLO, one per generated rule (None where none was made)."""
    made: list[str | None] = list(ids or [])
    return made + [None] * (3 - len(made))


class SLOStatusOut(BaseModel):
    at: datetime
    sli: float | None = Field(description="good share over the window (None: no data yet)")
    error_budget: float = Field(description="the bad share allowed: 1 - target")
    budget_consumed: float | None = Field(description="share of the budget spent over the window")
    budget_remaining: float | None = Field(description="1 - budget_consumed (negative: overspent)")
    burn_rate_5m: float | None
    burn_rate_1h: float | None

    @classmethod
    def of(cls, s: SLOStatus) -> SLOStatusOut:
        return cls(
            at=datetime.fromtimestamp(s.at, UTC),
            sli=s.sli,
            error_budget=s.error_budget,
            budget_consumed=s.budget_consumed,
            budget_remaining=s.budget_remaining,
            burn_rate_5m=s.burn_rate_5m,
            burn_rate_1h=s.burn_rate_1h,
        )


@router.get("/v1/slos", response_model=Page[SLOOut])
def list_slos(slos: SLOReader, page: SLOList, name: str | None = None) -> Page[SLOOut]:
    views, nxt = slos.list(page, name=name)
    return Page[SLOOut](items=[SLOOut.of(v) for v in views], next_cursor=nxt)


@router.post("/v1/slos", status_code=201, response_model=SLOOut)
def create_slo(body: SLOCreate, slos: SLOWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    fields = body.model_dump(exclude={"target_percent", "alert_receivers"})
    receivers = tuple(body.alert_receivers)
    view = slos.create(
        NewSLO(**fields, alert_receivers=receivers, target=round(body.target_percent / 100, 9))
    )
    return idem.created(SLOOut.of(view), view.slo)


@router.get("/v1/slos/{slo_id}", response_model=SLOOut)
def get_slo(slo_id: str, response: Response, slos: SLOReader) -> SLOOut:
    view = slos.view(slo_id)
    set_etag(response, view.slo)
    return SLOOut.of(view)


@router.get("/v1/slos/{slo_id}/status", response_model=SLOStatusOut)
def slo_status(
    slo_id: str,
    slos: SLOReader,
    at: float | None = Query(None, ge=0, le=4102444800, description="unix time (default: now)"),
) -> SLOStatusOut:
    return SLOStatusOut.of(slos.status(slo_id, at))


@router.delete("/v1/slos/{slo_id}", status_code=204)
def delete_slo(slo_id: str, slos: SLOWriter) -> Response:
    slos.delete(slo_id)
    return Response(status_code=204)


@router.get(
    "/v1/slo-report",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "text/html": {}}, "description": "the month's SLA report"}},
)
def slo_report(
    slos: SLOReader,
    month: str = Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM (UTC)"),
    format: Literal["html", "csv"] = "html",  # noqa: A002 - the query parameter's name
    tenant_id: str | None = Query(None, description="platform administrators: the tenant reported"),
) -> Response:
    tenant, rows = slos.report(month, tenant_id)
    if format == "csv":
        disposition = f'attachment; filename="sla-{month}.csv"'
        return Response(to_csv(rows), media_type="text/csv", headers={"Content-Disposition": disposition})
    return Response(to_html(tenant, month, rows), media_type="text/html")

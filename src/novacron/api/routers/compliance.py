"""/v1/compliance: the catalogue of checks and controls, runs with their evidence, the evidence
report (JSON, CSV, HTML); /v1/tenants/{id}/export and /erase: GDPR (compliance/)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.deps import IdempotencyDep, service
from novacron.compliance import report
from novacron.compliance.catalogue import CHECKS, CONTROLS
from novacron.compliance.gdpr import GdprService
from novacron.compliance.service import ComplianceService
from novacron.db.models import ComplianceResult, ComplianceRun

router = APIRouter(tags=["compliance"])
Reader = Annotated[ComplianceService, Depends(service(ComplianceService, "compliance:run", write=False))]
Runner = Annotated[ComplianceService, Depends(service(ComplianceService, "compliance:run"))]
Exporter = Annotated[GdprService, Depends(service(GdprService, "compliance:run"))]
ExportReader = Annotated[GdprService, Depends(service(GdprService, "compliance:run", write=False))]
Eraser = Annotated[GdprService, Depends(service(GdprService, "tenant:write"))]


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: a tenant's id or name; left out: the caller's tenant (administrators: the platform)
    tenant_id: str | None = Field(None, max_length=64)


class ResultOut(BaseModel):
    check: str
    status: str
    summary: str
    checked_at: datetime
    evidence: dict[str, Any]

    @classmethod
    def of(cls, r: ComplianceResult) -> ResultOut:
        return cls(
            check=r.check_id, status=r.status, summary=r.summary, checked_at=r.checked_at, evidence=r.evidence
        )


class RunOut(BaseModel):
    id: str
    tenant_id: str | None
    trigger: str
    started_at: datetime
    finished_at: datetime
    passed: int
    failed: int
    not_applicable: int
    results: list[ResultOut]

    @classmethod
    def of(cls, run: ComplianceRun, results: list[ComplianceResult]) -> RunOut:
        return cls(
            id=run.id,
            tenant_id=run.tenant_id,
            trigger=run.trigger,
            started_at=run.started_at,
            finished_at=run.finished_at,
            passed=run.passed,
            failed=run.failed,
            not_applicable=run.not_applicable,
            results=[ResultOut.of(r) for r in results],
        )


class RunList(BaseModel):
    items: list[RunOut]


class CheckOut(BaseModel):
    id: str
    title: str
    description: str


class ControlOut(BaseModel):
    framework: str
    id: str
    title: str
    checks: list[str]


class CatalogueOut(BaseModel):
    checks: list[CheckOut]
    controls: list[ControlOut]


class ErasureOut(BaseModel):
    tenant_id: str
    users_anonymised: int
    tenant_deleted: bool
    kept_because: str | None


@router.get("/v1/compliance/catalogue", response_model=CatalogueOut)
def catalogue(_compliance: Reader) -> CatalogueOut:
    """Every automated check and the framework controls (SOC 2, ISO 27001, GDPR, HIPAA, PCI-DSS) it backs."""
    return CatalogueOut(
        checks=[
            CheckOut(id=c.id, title=c.title, description=" ".join((c.run.__doc__ or "").split()))
            for c in CHECKS
        ],
        controls=[
            ControlOut(framework=c.framework, id=c.id, title=c.title, checks=list(c.checks)) for c in CONTROLS
        ],
    )


@router.post("/v1/compliance/runs", status_code=201, response_model=RunOut)
def run_checks(body: RunCreate, compliance: Runner, idem: IdempotencyDep) -> Response:
    """Run every check now for a tenant (or the platform) and store the run with its evidence."""
    if (replay := idem.replay(body)) is not None:
        return replay
    payload = RunOut.of(*compliance.run(body.tenant_id)).model_dump(mode="json")
    idem.remember(201, payload)
    return JSONResponse(payload, status_code=201)


@router.get("/v1/compliance/runs", response_model=RunList)
def list_runs(compliance: Reader, tenant_id: str | None = None) -> RunList:
    """The latest 50 runs of a scope, newest first (without their results)."""
    return RunList(items=[RunOut.of(r, []) for r in compliance.history(tenant_id)])


@router.get("/v1/compliance/latest", response_model=RunOut)
def latest_run(compliance: Reader, tenant_id: str | None = None) -> RunOut:
    """The last run of a scope with every check's result and evidence."""
    return RunOut.of(*compliance.latest(tenant_id))


@router.get(
    "/v1/compliance/report",
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "text/csv": {}, "text/html": {}}}},
)
def evidence_report(
    compliance: Reader, tenant_id: str | None = None, format: Literal["json", "csv", "html"] = "json"
) -> Response:
    """The evidence report of the last run of a scope, as a download in JSON, CSV or HTML."""
    run, results = compliance.latest(tenant_id)
    name = f"compliance-{run.tenant_id or 'platform'}-{run.started_at:%Y%m%dT%H%M%SZ}.{format}"
    return Response(
        report.render(run, results, format),
        media_type=report.FORMATS[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/v1/tenants/{tenant_id}/export", response_class=Response)
def export_tenant(tenant_id: str, gdpr: Exporter) -> Response:
    """GDPR export: a zip of the tenant's rows (one JSON file per table) and audit records."""
    name, data = gdpr.export(tenant_id)
    return Response(
        data, media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


class ExportAccepted(BaseModel):
    task_id: str


@router.post("/v1/tenants/{tenant_id}/exports", status_code=202, response_model=ExportAccepted)
def start_export(tenant_id: str, gdpr: Exporter, idem: IdempotencyDep) -> Response:
    """GDPR export as a durable task with progress (a large tenant); download it when it succeeded."""
    if (replay := idem.replay()) is not None:
        return replay
    payload = ExportAccepted(task_id=gdpr.start_export(tenant_id).id).model_dump(mode="json")
    idem.remember(202, payload)
    return JSONResponse(payload, status_code=202)


@router.get(
    "/v1/tenants/{tenant_id}/exports/{task_id}",
    response_class=FileResponse,
)
def download_export(tenant_id: str, task_id: str, gdpr: ExportReader) -> FileResponse:
    """The zip an export task wrote (409 until the task succeeded)."""
    name, path = gdpr.export_file(tenant_id, task_id)
    return FileResponse(path, media_type="application/octet-stream", filename=name)


@router.post("/v1/tenants/{tenant_id}/erase", response_model=ErasureOut)
def erase_tenant(tenant_id: str, gdpr: Eraser, idem: IdempotencyDep) -> Response:
    """GDPR erasure: anonymise the tenant's users, then delete the tenant (step-up required)."""
    if (replay := idem.replay()) is not None:
        return replay
    payload = ErasureOut(**gdpr.erase(tenant_id)).model_dump(mode="json")
    idem.remember(200, payload)
    return JSONResponse(payload)

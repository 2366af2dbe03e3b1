"""/v1/dr/runbooks: DR runbooks, drills, failover / dry run / fail-back, RPO and RTO against targets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from novacron.api.concurrency import Idempotency, check_if_match, set_etag
from novacron.api.deps import CtxDep, IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.backup.drsteps import map_hook_urls
from novacron.backup.runbooks import RunbookService, RunbookSpec, RunbookView
from novacron.db.listing import ListParams
from novacron.identity.encryption import MASK

router = APIRouter(prefix="/v1/dr/runbooks", tags=["dr"])

RunbookReader = Annotated[RunbookService, Depends(service(RunbookService, "dr:read", write=False))]
RunbookWriter = Annotated[RunbookService, Depends(service(RunbookService, "dr:write"))]
RunbookList = Annotated[ListParams, Depends(list_query(("name", "created_at"), "name"))]
NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class Hook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    when: Literal["before", "after"] = "before"
    command: list[str] | None = Field(
        default=None, min_length=1, max_length=50, description="argv run on the control plane (admins only)"
    )
    url: str | None = Field(default=None, pattern=r"^https?://", max_length=500, description="webhook (POST)")
    timeout_s: int = Field(default=60, ge=1, le=3600)
    on_failure: Literal["fail", "continue"] = "fail"

    @model_validator(mode="after")
    def _one(self) -> Hook:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command and url")
        return self


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["console", "tcp", "running"] = "running"
    marker: str | None = Field(default=None, min_length=1, max_length=200, description="console: text to see")
    address: str | None = Field(default=None, max_length=255, description="tcp: address to reach")
    port: int | None = Field(default=None, ge=1, le=65535)
    timeout_s: int = Field(default=300, ge=1, le=3600)

    @model_validator(mode="after")
    def _complete(self) -> Health:
        if self.kind == "console" and not self.marker:
            raise ValueError("a console check needs a marker")
        if self.kind == "tcp" and not (self.address and self.port):
            raise ValueError("a tcp check needs an address and a port")
        return self


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vm: str = Field(min_length=1, max_length=64, description="id or name of the backed-up VM")
    name: str | None = Field(default=None, pattern=NAME, description="name of the restored VM")
    wait_for: str | None = Field(default=None, min_length=1, max_length=200, description="console marker")
    health: Health | None = Field(default=None, description="when the step's VM counts as up")
    hooks: list[Hook] = Field(default_factory=list, max_length=20)
    rpo_target_s: int | None = Field(
        default=None, ge=1, description="this VM's RPO target (default: runbook's)"
    )


class RunbookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    project_id: str | None = Field(default=None, max_length=40)
    steps: list[Step] = Field(min_length=1, max_length=100, description="restored in this order")
    rpo_target_s: int = Field(default=86400, ge=1, description="newest backup at most this old")
    rto_target_s: int = Field(default=3600, ge=1, description="every VM up within this long")
    recovery_group: str | None = Field(
        default=None, max_length=64, description="aggregate (host group) to fail over to"
    )
    network_map: dict[str, str] = Field(
        default_factory=dict, description="source network -> network at the recovery site (ids or names)"
    )
    test_network: str | None = Field(
        default=None, max_length=64, description="isolated network for dry runs (default: no NIC)"
    )


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dry_run: bool = Field(default=False, description="prove the runbook without touching production")


class RunbookOut(BaseModel):
    id: str
    name: str
    project_id: str
    tenant_id: str
    steps: list[dict[str, Any]]
    rpo_target_s: int
    rto_target_s: int
    last_drill: dict[str, Any] | None
    last_drill_at: datetime | None
    recovery_group: str | None
    network_map: dict[str, str]
    test_network: str | None
    #: normal, failed-over, failed-back
    state: str
    state_changed_at: datetime | None
    failover: list[dict[str, Any]] | None
    last_test: dict[str, Any] | None
    rpo_missed: list[str]
    #: each VM's RPO now: age of its newest available backup, and (``replicated``) of its newest
    #: good replicated one against the VM's target (what ``dr.rpo_missed`` watches)
    rpo: list[dict[str, Any]] = Field(default_factory=list)
    created_at: datetime
    version: int

    @classmethod
    def of(cls, view: RunbookView) -> RunbookOut:
        out = cls.model_validate(view.row, from_attributes=True)
        out.steps, out.rpo = view.steps, view.rpo
        return out


def _started(ctx: CtxDep, idem: Idempotency, payload: dict[str, Any]) -> JSONResponse:
    """The 202 answer to a run of a runbook (remembered for a retry with the same key)."""
    idem.remember(202, payload)
    if ctx.tasks is not None:
        ctx.tasks.wake()
    return JSONResponse(payload, status_code=202, headers={"Location": f"/v1/tasks/{payload['task_id']}"})


@router.post("", status_code=201, response_model=RunbookOut)
def create_runbook(body: RunbookCreate, runbooks: RunbookWriter, idem: IdempotencyDep) -> Any:
    if (replay := idem.replay(body)) is not None:
        return replay
    steps = [s.model_dump(exclude_none=True) for s in body.steps]
    spec = RunbookSpec(**{**body.model_dump(exclude={"steps"}), "steps": steps})
    out = RunbookOut.of(runbooks.create(spec))
    # a replay answers with the webhook URLs masked: the stored answer is not a clear copy of them
    remembered = {**out.model_dump(mode="json"), "steps": map_hook_urls(out.steps, lambda _: MASK)}
    idem.remember(201, remembered)
    return out


@router.get("", response_model=Page[RunbookOut])
def list_runbooks(runbooks: RunbookReader, page: RunbookList, name: str | None = None) -> Page[RunbookOut]:
    views, nxt = runbooks.list(page, name=name)
    return Page[RunbookOut](items=[RunbookOut.of(v) for v in views], next_cursor=nxt)


@router.get("/{runbook_id}", response_model=RunbookOut)
def get_runbook(runbook_id: str, response: Response, runbooks: RunbookReader) -> RunbookOut:
    view = runbooks.get(runbook_id)
    set_etag(response, view.row)
    return RunbookOut.of(view)


@router.delete("/{runbook_id}", status_code=204)
def delete_runbook(runbook_id: str, request: Request, runbooks: RunbookWriter) -> Response:
    runbook = runbooks.find(runbook_id)
    check_if_match(request, runbook)
    runbooks.delete(runbook)
    return Response(status_code=204)


@router.post("/{runbook_id}/drill", status_code=202)
def drill(runbook_id: str, ctx: CtxDep, runbooks: RunbookWriter, idem: IdempotencyDep) -> Response:
    """Run the runbook for real: restore every VM in order and measure RPO and RTO."""
    runbook = runbooks.find(runbook_id)
    if (replay := idem.replay({"drill": runbook.id})) is not None:
        return replay
    task = runbooks.drill(runbook)
    return _started(ctx, idem, {"task_id": task.id, "runbook_id": runbook.id})


def _run(runbooks: RunbookService, ctx: CtxDep, idem: Idempotency, runbook_id: str, kind: str) -> Response:
    runbook = runbooks.find(runbook_id)
    if (replay := idem.replay({kind: runbook.id})) is not None:
        return replay
    task = runbooks.run(runbook, kind)
    return _started(ctx, idem, {"task_id": task.id, "runbook_id": runbook.id, "kind": kind})


@router.post("/{runbook_id}/failover", status_code=202)
def failover(
    runbook_id: str,
    ctx: CtxDep,
    runbooks: RunbookWriter,
    idem: IdempotencyDep,
    body: RunRequest | None = None,
) -> Response:
    """Fail the runbook's VMs over to its recovery group from the replicated store (or a dry run)."""
    kind = "dr.dry_run" if body is not None and body.dry_run else "dr.failover"
    return _run(runbooks, ctx, idem, runbook_id, kind)


@router.post("/{runbook_id}/failback", status_code=202)
def failback(runbook_id: str, ctx: CtxDep, runbooks: RunbookWriter, idem: IdempotencyDep) -> Response:
    """Back the recovered VMs up at the recovery site and restore them over the originals."""
    return _run(runbooks, ctx, idem, runbook_id, "dr.failback")

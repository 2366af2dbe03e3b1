"""/v1/dr/runbooks: DR runbooks, drills, failover / dry run / fail-back, RPO and RTO against targets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select

from novacron.api.concurrency import Idempotency, check_if_match, set_etag
from novacron.api.deps import CtxDep, ReadSessionDep, SessionDep, require
from novacron.api.errors import conflict, invalid, name_taken
from novacron.api.listing import Page
from novacron.backup.dr import DRDrill, rpo_status
from novacron.backup.drsteps import hook_url_aad, map_hook_urls, refused_target
from novacron.backup.drwatch import rpo_of
from novacron.backup.failover import DRDryRun, DRFailback, DRFailover
from novacron.compute.scope import get_visible, resolve_project, scoped
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import Aggregate, DRRunbook, Task
from novacron.identity.encryption import MASK, encryption_for
from novacron.identity.principal import Principal
from novacron.netguard import EgressPolicy
from novacron.network.service import find_network
from novacron.tasks.runner import TaskHandler, create_task

router = APIRouter(prefix="/v1/dr/runbooks", tags=["dr"])

CanRead = Annotated[Principal, Depends(require("dr:read"))]
CanWrite = Annotated[Principal, Depends(require("dr:write"))]
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


def _references(
    session: Any, principal: Principal, body: RunbookCreate
) -> tuple[str | None, dict[str, str], str | None]:
    """The aggregate's id and the networks' ids, each refused by field when it does not exist."""
    group = None
    if body.recovery_group is not None:
        group = session.scalar(
            select(Aggregate.id).where(
                (Aggregate.id == body.recovery_group) | (Aggregate.name == body.recovery_group)
            )
        )
        if group is None:
            raise invalid(
                "body.recovery_group", f"no aggregate '{body.recovery_group}'; see GET /v1/aggregates"
            )
    network_map = {
        find_network(session, principal, src, f"network_map.{src}").id: find_network(
            session, principal, dst, f"network_map.{src}"
        ).id
        for src, dst in body.network_map.items()
    }
    test_network = None
    if body.test_network is not None:
        test_network = find_network(session, principal, body.test_network, "test_network").id
    return group, network_map, test_network


def _out(ctx: Any, session: Any, r: DRRunbook, with_rpo: bool = False) -> RunbookOut:
    out = RunbookOut.model_validate(r, from_attributes=True)
    enc, aad = encryption_for(ctx.settings), hook_url_aad(r.id)
    out.steps = map_hook_urls(out.steps, lambda url: enc.open_text(url, aad))  # sealed at rest
    if with_rpo:  # the newest backup anywhere, and the newest at the recovery site (what failover uses)
        out.rpo = [
            {**now, "replicated": rpo_of(session, r, step)}
            for now, step in zip(rpo_status(session, r), r.steps, strict=True)
        ]
    return out


@router.post("", status_code=201, response_model=RunbookOut)
def create_runbook(
    request: Request, ctx: CtxDep, session: SessionDep, principal: CanWrite, body: RunbookCreate
) -> Any:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    project = resolve_project(session, principal, body.project_id)
    if not principal.is_global and any(h.command for st in body.steps for h in st.hooks):
        raise invalid("body.steps.hooks", "command hooks run on the control plane: platform admins only")
    steps = [s.model_dump(exclude_none=True) for s in body.steps]
    # webhooks and tcp checks leave from the control plane: the egress guard, for every role
    if (refused := refused_target(steps, EgressPolicy.from_settings(ctx.settings))) is not None:
        raise invalid(f"body.{refused[0]}", refused[1])
    group, network_map, test_network = _references(session, principal, body)
    runbook_id, enc = new_id("drb"), encryption_for(ctx.settings)
    steps = map_hook_urls(steps, lambda url: enc.seal_text(url, hook_url_aad(runbook_id)))
    if session.scalar(
        select(DRRunbook.id).where(DRRunbook.project_id == project.id, DRRunbook.name == body.name)
    ):
        raise name_taken("runbook", body.name, "body.name")
    runbook = DRRunbook(
        id=runbook_id,
        tenant_id=project.tenant_id,
        project_id=project.id,
        name=body.name,
        steps=steps,
        rpo_target_s=body.rpo_target_s,
        rto_target_s=body.rto_target_s,
        recovery_group=group,
        network_map=network_map,
        test_network=test_network,
    )
    session.add(runbook)
    session.flush()
    out = _out(ctx, session, runbook)
    # a replay answers with the webhook URLs masked: the stored answer is not a clear copy of them
    remembered = {**out.model_dump(mode="json"), "steps": map_hook_urls(out.steps, lambda _: MASK)}
    idem.remember(201, remembered)
    return out


@router.get("", response_model=Page[RunbookOut])
def list_runbooks(
    ctx: CtxDep,
    session: ReadSessionDep,
    principal: CanRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "name",
    name: str | None = None,
) -> Page[RunbookOut]:
    stmt = scoped(select(DRRunbook), DRRunbook, principal)
    if name is not None:
        stmt = stmt.where(DRRunbook.name == name)
    rows, nxt = paginate(session, stmt, DRRunbook, ListParams(limit, cursor, sort, ("name", "created_at")))
    return Page[RunbookOut](items=[_out(ctx, session, r) for r in rows], next_cursor=nxt)


@router.get("/{runbook_id}", response_model=RunbookOut)
def get_runbook(
    runbook_id: str, ctx: CtxDep, response: Response, session: ReadSessionDep, principal: CanRead
) -> RunbookOut:
    runbook = get_visible(session, DRRunbook, runbook_id, principal, "runbook")
    set_etag(response, runbook)
    return _out(ctx, session, runbook, with_rpo=True)


def _refuse_while_running(session: Any, runbook: DRRunbook) -> None:
    if session.scalar(
        select(Task.id).where(Task.resource_id == runbook.id, Task.state.in_(("pending", "running"))).limit(1)
    ):
        raise conflict(f"A run of runbook '{runbook.name}' is still going; wait for it (novacron task list).")


@router.delete("/{runbook_id}", status_code=204)
def delete_runbook(runbook_id: str, request: Request, session: SessionDep, principal: CanWrite) -> Response:
    runbook = get_visible(session, DRRunbook, runbook_id, principal, "runbook")
    check_if_match(request, runbook)
    if runbook.state == "failed-over":
        raise conflict(f"Runbook '{runbook.name}' is failed over; fail it back first.")
    _refuse_while_running(session, runbook)
    session.delete(runbook)
    return Response(status_code=204)


@router.post("/{runbook_id}/drill", status_code=202)
def drill(
    runbook_id: str, request: Request, ctx: CtxDep, session: SessionDep, principal: CanWrite
) -> Response:
    """Run the runbook for real: restore every VM in order and measure RPO and RTO."""
    runbook = get_visible(session, DRRunbook, runbook_id, principal, "runbook")
    idem = Idempotency(request, principal, session, {"drill": runbook.id})
    if (replay := idem.replay()) is not None:
        return replay
    task = create_task(
        session, DRDrill, "dr-runbook", runbook.id, tenant_id=runbook.tenant_id, project_id=runbook.project_id
    )
    payload = {"task_id": task.id, "runbook_id": runbook.id}
    idem.remember(202, payload)
    if ctx.tasks is not None:
        ctx.tasks.wake()
    return JSONResponse(payload, status_code=202, headers={"Location": f"/v1/tasks/{task.id}"})


def _run(
    request: Request, ctx: Any, session: Any, principal: Principal, runbook_id: str, kind: str
) -> Response:
    runbook = get_visible(session, DRRunbook, runbook_id, principal, "runbook")
    idem = Idempotency(request, principal, session, {kind: runbook.id})
    if (replay := idem.replay()) is not None:
        return replay
    if kind == "dr.failback" and runbook.state != "failed-over":
        raise conflict(f"Runbook '{runbook.name}' is {runbook.state}: only a failed-over runbook fails back.")
    if kind != "dr.failback" and runbook.recovery_group is None:
        raise conflict("The runbook names no recovery_group (the host group to restore into).")
    if kind == "dr.failover" and runbook.state == "failed-over":
        raise conflict(f"Runbook '{runbook.name}' is already failed over; fail it back first.")
    _refuse_while_running(session, runbook)
    handlers: dict[str, type[TaskHandler]] = {
        "dr.failover": DRFailover, "dr.dry_run": DRDryRun, "dr.failback": DRFailback
    }  # fmt: skip
    handler = handlers[kind]
    task = create_task(
        session, handler, "dr-runbook", runbook.id, tenant_id=runbook.tenant_id, project_id=runbook.project_id
    )
    payload = {"task_id": task.id, "runbook_id": runbook.id, "kind": kind}
    idem.remember(202, payload)
    if ctx.tasks is not None:
        ctx.tasks.wake()
    return JSONResponse(payload, status_code=202, headers={"Location": f"/v1/tasks/{task.id}"})


@router.post("/{runbook_id}/failover", status_code=202)
def failover(
    runbook_id: str,
    request: Request,
    ctx: CtxDep,
    session: SessionDep,
    principal: CanWrite,
    body: RunRequest | None = None,
) -> Response:
    """Fail the runbook's VMs over to its recovery group from the replicated store (or a dry run)."""
    kind = "dr.dry_run" if body is not None and body.dry_run else "dr.failover"
    return _run(request, ctx, session, principal, runbook_id, kind)


@router.post("/{runbook_id}/failback", status_code=202)
def failback(
    runbook_id: str, request: Request, ctx: CtxDep, session: SessionDep, principal: CanWrite
) -> Response:
    """Back the recovered VMs up at the recovery site and restore them over the originals."""
    return _run(request, ctx, session, principal, runbook_id, "dr.failback")

"""/v1/vms: virtual machines and their lifecycle actions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from novacron.agent.protocol import ConsoleRead
from novacron.api.audit import audit_detail
from novacron.api.concurrency import Idempotency, check_if_match, set_etag
from novacron.api.deps import CtxDep, ReadSessionDep, SessionDep, require
from novacron.api.errors import Problem, invalid
from novacron.api.listing import Page
from novacron.api.routers.hosts import Labels
from novacron.compute import hostops
from novacron.compute import vms as vm_service
from novacron.compute.scope import get_visible, resolve_project, scoped
from novacron.db.listing import ListParams, paginate
from novacron.db.models import VM, Flavor, Task
from novacron.identity.principal import Principal
from novacron.network.service import NicRequest
from novacron.network.sync import syncing
from novacron.quota.policy import Decisions
from novacron.tasks.runner import StepFailed
from novacron.virt.consolelog import read_log

router = APIRouter(prefix="/v1/vms", tags=["vms"])

CanMetricsRead = Annotated[Principal, Depends(require("metrics:read"))]
CanVmConsole = Annotated[Principal, Depends(require("vm:console"))]
CanVmCreate = Annotated[Principal, Depends(require("vm:create"))]
CanVmDelete = Annotated[Principal, Depends(require("vm:delete"))]
CanVmPower = Annotated[Principal, Depends(require("vm:power"))]
CanVmRead = Annotated[Principal, Depends(require("vm:read"))]
CanVmSnapshot = Annotated[Principal, Depends(require("vm:snapshot"))]
CanVmUpdate = Annotated[Principal, Depends(require("vm:update"))]

NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class PlacementRequest(BaseModel):
    """Where the VM may go, beyond its flavor's traits: an aggregate and host labels."""

    model_config = ConfigDict(extra="forbid")
    aggregate: str | None = Field(default=None, min_length=1, max_length=64, description="id or name")
    labels: Labels = Field(default_factory=dict, max_length=16, description="host labels, all must match")


class NicIn(BaseModel):
    """A NIC on a tenant network: a port made with the VM and deleted with it."""

    model_config = ConfigDict(extra="forbid")
    network: str = Field(min_length=1, max_length=64, description="network id or name")
    fixed_ip: str | None = Field(default=None, max_length=64, description="a specific address")
    security_groups: list[str] | None = Field(default=None, max_length=16, description="default: 'default'")
    vnic_type: Literal["normal", "direct", "vhost-user"] = Field(
        default="normal",
        description="direct (SR-IOV) needs a host with trait sriov, vhost-user one with dpdk",
    )
    qos_policy: str | None = Field(default=None, max_length=64)


class VMCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME, description="DNS-style name, unique in the project; also the hostname")
    image: str = Field(min_length=1, max_length=128, description="image id or name")
    flavor: str = Field(min_length=1, max_length=64, description="flavor id or name")
    project_id: str | None = Field(default=None, max_length=40)
    user_data: str = Field(default="", description="cloud-init user-data, up to 64 KiB")
    metadata: dict[str, Annotated[str, Field(max_length=255)]] = Field(default_factory=dict, max_length=64)
    server_group: str | None = Field(
        default=None, min_length=1, max_length=64, description="server group id or name (same project)"
    )
    placement: PlacementRequest | None = None
    ha: bool = Field(
        default=False, description="restart on another host when its host fails (shared storage)"
    )
    ha_priority: int = Field(default=0, ge=-1000, le=1000, description="HA restart order: higher first")
    budget_override: bool = Field(
        default=False, description="create even past the month's budget (needs budget:override)"
    )
    networks: list[NicIn] | None = Field(default=None, max_length=8, description="NICs on tenant networks")
    labels: Labels = Field(default_factory=dict, max_length=32, description="what label policies select")


class VMUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    flavor: str | None = Field(default=None, min_length=1, max_length=64)
    vcpus: int | None = Field(default=None, ge=1, le=64)
    ram_mb: int | None = Field(default=None, ge=64, le=262144)
    metadata: dict[str, Annotated[str, Field(max_length=255)]] | None = Field(default=None, max_length=64)
    ha: bool | None = Field(default=None, description="restart on another host when its host fails")
    ha_priority: int | None = Field(default=None, ge=-1000, le=1000, description="HA restart order")
    labels: Labels | None = Field(default=None, max_length=32, description="replaces the VM's labels")


class ActionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    force: bool = Field(default=False, description="stop: power off at once instead of ACPI shutdown")
    timeout_s: float = Field(default=60, ge=1, le=3600, description="stop: wait this long before forcing")


class SnapshotRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class VMOut(BaseModel):
    id: str
    name: str
    project_id: str
    tenant_id: str
    image_id: str | None
    flavor_id: str | None
    host_id: str | None
    vcpus: int
    ram_mb: int
    disk_gb: int
    state: str
    desired_state: str
    task_state: str | None
    error: str | None
    metadata: dict[str, str]
    server_group_id: str | None = None
    placement: dict[str, Any] = Field(default_factory=dict)
    ha: bool = False
    ha_priority: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, vm: VM) -> VMOut:
        return cls(
            id=vm.id,
            name=vm.name,
            project_id=vm.project_id,
            tenant_id=vm.tenant_id,
            image_id=vm.image_id,
            flavor_id=vm.flavor_id,
            host_id=vm.host_id,
            vcpus=vm.vcpus,
            ram_mb=vm.ram_mb,
            disk_gb=vm.disk_gb,
            state=vm.state,
            desired_state=vm.desired_state,
            task_state=vm.task_state,
            error=vm.error,
            metadata=dict(vm.meta or {}),
            server_group_id=vm.server_group_id,
            placement=dict(vm.placement or {}),
            ha=vm.ha,
            ha_priority=vm.ha_priority,
            labels=dict(vm.labels or {}),
            created_at=vm.created_at,
            updated_at=vm.updated_at,
            version=vm.version,
        )


#: a VM list selects plain rows of these columns: no ORM objects on the hottest read path
LIST_COLUMNS = (
    VM.id,
    VM.name,
    VM.project_id,
    VM.tenant_id,
    VM.image_id,
    VM.flavor_id,
    VM.host_id,
    VM.vcpus,
    VM.ram_mb,
    VM.disk_gb,
    VM.state,
    VM.desired_state,
    VM.task_state,
    VM.error,
    VM.meta.label("metadata"),
    VM.server_group_id,
    VM.placement,
    VM.ha,
    VM.ha_priority,
    VM.labels,
    VM.created_at,
    VM.updated_at,
    VM.version,
)


def _out_of_row(row: Any) -> VMOut:
    fields = dict(row._mapping)
    fields["metadata"] = fields["metadata"] or {}
    fields["placement"] = fields["placement"] or {}
    fields["labels"] = fields["labels"] or {}
    # rows of our own table, already typed by their columns: no validation pass needed
    return VMOut.model_construct(**fields)


class Accepted(BaseModel):
    task_id: str
    vm: VMOut
    #: the policy engine's warnings (a threshold passed, a burst in use, a budget overridden)
    warnings: list[str] = Field(default_factory=list)


class SnapshotAccepted(BaseModel):
    task_id: str
    image_id: str


class MetricsOut(BaseModel):
    vm_id: str
    interval_s: float
    samples: list[dict[str, float | int]]


def _accepted(ctx: CtxDep, idem: Idempotency, task: Task, body: BaseModel) -> JSONResponse:
    payload = body.model_dump(mode="json")
    idem.remember(202, payload)
    if ctx.tasks is not None:
        ctx.tasks.wake()
    return JSONResponse(payload, status_code=202, headers={"Location": f"/v1/tasks/{task.id}"})


@router.get("", response_model=Page[VMOut])
def list_vms(
    session: ReadSessionDep,
    principal: CanVmRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "created_at",
    name: str | None = None,
    state: str | None = None,
    project_id: str | None = None,
    host_id: str | None = None,
) -> Page[VMOut]:
    stmt = scoped(select(*LIST_COLUMNS), VM, principal)
    for col, value in (
        (VM.name, name),
        (VM.state, state),
        (VM.project_id, project_id),
        (VM.host_id, host_id),
    ):
        if value is not None:
            stmt = stmt.where(col == value)
    rows, nxt = paginate(
        session,
        stmt,
        VM,
        ListParams(limit, cursor, sort, ("created_at", "name", "state", "updated_at")),
        as_rows=True,
    )
    page = Page[VMOut].model_construct(items=[_out_of_row(r) for r in rows], next_cursor=nxt)
    # already validated: skip FastAPI's second pass over the response model
    return Response(page.model_dump_json(), media_type="application/json")  # type: ignore[return-value]


@router.post("", status_code=202, response_model=Accepted, responses={202: {"model": Accepted}})
def create_vm(
    request: Request, ctx: CtxDep, session: SessionDep, principal: CanVmCreate, body: VMCreate
) -> Response:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    project = resolve_project(session, principal, body.project_id)
    decisions = Decisions()
    audit_detail(request, decisions.items)  # recorded whatever the outcome, refusals included
    vm, task = vm_service.create_vm(
        session,
        principal,
        project,
        name=body.name,
        image_ref=body.image,
        flavor_ref=body.flavor,
        user_data=body.user_data,
        metadata=body.metadata,
        server_group=body.server_group,
        aggregate=body.placement.aggregate if body.placement else None,
        labels=body.placement.labels if body.placement else None,
        ha=body.ha,
        ha_priority=body.ha_priority,
        budget_override=body.budget_override,
        decisions=decisions,
        vm_labels=body.labels,
        nics=[
            NicRequest(
                n.network,
                n.fixed_ip,
                tuple(n.security_groups) if n.security_groups is not None else None,
                n.vnic_type,
                n.qos_policy,
            )
            for n in body.networks or []
        ],
    )
    if not decisions.items:
        decisions.add("allow", "quota", "within every quota, policy rule and budget")
    return _accepted(ctx, idem, task, Accepted(task_id=task.id, vm=VMOut.of(vm), warnings=decisions.warnings))


@router.get("/{vm_id}", response_model=VMOut)
def get_vm(vm_id: str, response: Response, session: ReadSessionDep, principal: CanVmRead) -> VMOut:
    vm = get_visible(session, VM, vm_id, principal, "vm")
    set_etag(response, vm)
    return VMOut.of(vm)


@router.patch("/{vm_id}", response_model=VMOut)
def update_vm(
    vm_id: str,
    body: VMUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: CanVmUpdate,
) -> VMOut:
    vm = get_visible(session, VM, vm_id, principal, "vm")
    check_if_match(request, vm)
    if body.flavor is not None or body.vcpus is not None or body.ram_mb is not None:
        flavor = None
        if body.flavor is not None:
            flavor = session.scalar(
                select(Flavor).where((Flavor.id == body.flavor) | (Flavor.name == body.flavor))
            )
            if flavor is None:
                raise invalid("body.flavor", f"no flavor '{body.flavor}'")
        vm_service.resize(vm, flavor, body.vcpus, body.ram_mb)
    if body.metadata is not None:
        vm.meta = dict(body.metadata)
    if body.ha is not None:
        vm.ha = body.ha
    if body.ha_priority is not None:
        vm.ha_priority = body.ha_priority
    if body.labels is not None and body.labels != (vm.labels or {}):
        with syncing(session, vm.tenant_id):  # label policies now select other addresses
            vm.labels = dict(body.labels)
    session.flush()
    set_etag(response, vm)
    return VMOut.of(vm)


@router.delete("/{vm_id}", status_code=202, response_model=Accepted)
def delete_vm(
    vm_id: str, request: Request, ctx: CtxDep, session: SessionDep, principal: CanVmDelete
) -> Response:
    vm = get_visible(session, VM, vm_id, principal, "vm")
    check_if_match(request, vm)
    idem = Idempotency(request, principal, session, {"delete": vm.id})
    if (replay := idem.replay()) is not None:
        return replay
    task = vm_service.request_delete(session, vm)
    session.flush()
    return _accepted(ctx, idem, task, Accepted(task_id=task.id, vm=VMOut.of(vm)))


@router.post("/{vm_id}/actions/{action}", status_code=202, response_model=Accepted)
def vm_action(
    vm_id: str,
    action: Literal["start", "stop", "reboot", "pause", "resume"],
    request: Request,
    ctx: CtxDep,
    session: SessionDep,
    principal: CanVmPower,
    body: Annotated[ActionRequest | None, Body()] = None,
) -> Response:
    vm = get_visible(session, VM, vm_id, principal, "vm")
    params = (body or ActionRequest()).model_dump()
    idem = Idempotency(request, principal, session, {"action": action, **params})
    if (replay := idem.replay()) is not None:
        return replay
    task = vm_service.request_action(session, vm, action, params)
    session.flush()
    return _accepted(ctx, idem, task, Accepted(task_id=task.id, vm=VMOut.of(vm)))


@router.post("/{vm_id}/snapshot", status_code=202, response_model=SnapshotAccepted)
def snapshot_vm(
    vm_id: str,
    body: SnapshotRequest,
    request: Request,
    ctx: CtxDep,
    session: SessionDep,
    principal: CanVmSnapshot,
) -> Response:
    vm = get_visible(session, VM, vm_id, principal, "vm")
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    image, task = vm_service.request_snapshot(session, principal, vm, body.image_name)
    return _accepted(ctx, idem, task, SnapshotAccepted(task_id=task.id, image_id=image.id))


@router.get("/{vm_id}/console-log", response_class=PlainTextResponse)
def console_log(
    vm_id: str,
    ctx: CtxDep,
    principal: CanVmConsole,
    offset: int = Query(0, ge=0, description="byte offset to read from"),
    tail: int | None = Query(None, ge=1, le=1_048_576, description="only the last N bytes"),
) -> PlainTextResponse:
    """The serial console log, read on the VM's host; ``X-Next-Offset`` is where to read on from."""
    # no request session here: a remote host's answer is awaited, and no lock may be held meanwhile
    with ctx.db.session() as s:
        vm = get_visible(s, VM, vm_id, principal, "vm")
        vm_id, host_id = vm.id, vm.host_id
    if host_id is None:
        return PlainTextResponse("", headers={"X-Next-Offset": str(offset)})
    if ctx.agent is not None and host_id == ctx.agent.host_id:
        data, next_offset = read_log(ctx.agent.driver.console_log(vm_id), offset, tail)
        text = data.decode("utf-8", "replace")
    else:
        try:
            answer = hostops.call_blocking(ctx, host_id, ConsoleRead(offset, tail), vm_id)
        except StepFailed as exc:
            raise Problem(503, "Service Unavailable", f"{exc} Retry when the host is back.") from exc
        text, next_offset = str(answer["text"]), int(answer["next_offset"])
    return PlainTextResponse(text, headers={"X-Next-Offset": str(next_offset)})


@router.get("/{vm_id}/metrics", response_model=MetricsOut)
def vm_metrics(
    vm_id: str,
    ctx: CtxDep,
    session: ReadSessionDep,
    principal: CanMetricsRead,
    since: float | None = Query(None, description="only samples after this unix time"),
) -> MetricsOut:
    vm = get_visible(session, VM, vm_id, principal, "vm")
    samples: list[dict[str, Any]] = ctx.metrics.get(vm.id, since)
    return MetricsOut(vm_id=vm.id, interval_s=ctx.settings.metrics_interval_s, samples=samples)

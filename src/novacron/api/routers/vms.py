"""/v1/vms: virtual machines and their lifecycle actions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.audit import audit_detail
from novacron.api.concurrency import Idempotency, check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.api.routers.hosts import Labels
from novacron.api.routers.metrics_query import (
    LIVE_CHART_RESPONSES,
    ChartOut,
    ChartRange,
    ChartReader,
    live_chart_response,
)
from novacron.api.rowpage import RowPage
from novacron.compute import hardware, live_resize
from novacron.compute.guestinfo import GuestView
from novacron.compute.vms import LIST_SORTS, VMChange, VMService, VMSpec
from novacron.db.listing import ListParams
from novacron.db.models import VM, Task
from novacron.network.service import NicRequest
from novacron.quota.policy import Decisions

router = APIRouter(prefix="/v1/vms", tags=["vms"])


VMReader = Annotated[VMService, Depends(service(VMService, "vm:read", write=False))]
VMCreator = Annotated[VMService, Depends(service(VMService, "vm:create"))]
VMUpdater = Annotated[VMService, Depends(service(VMService, "vm:update"))]
VMDeleter = Annotated[VMService, Depends(service(VMService, "vm:delete"))]
VMPower = Annotated[VMService, Depends(service(VMService, "vm:power"))]
VMSnapshotter = Annotated[VMService, Depends(service(VMService, "vm:snapshot"))]
#: a read session, ended before the VM's host is asked: no transaction waits on a remote answer
VMConsole = Annotated[VMService, Depends(service(VMService, "vm:console", write=False))]
VMMetrics = Annotated[VMService, Depends(service(VMService, "metrics:read", write=False))]
VMList = Annotated[ListParams, Depends(list_query(LIST_SORTS))]

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
    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="image id or name (default: the boot volume's)",
    )
    flavor: str = Field(min_length=1, max_length=64, description="flavor id or name")
    boot_volume: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="boot from this available volume (its root disk)",
    )
    volumes: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        max_length=16,
        description="available volumes (ids or names) attached from the start",
    )
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
    secrets: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]] = Field(
        default_factory=list,
        max_length=32,
        description="the tenant's secrets (names) cloud-init writes into the guest (POST /v1/kms/secrets)",
    )


class VMUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    flavor: str | None = Field(default=None, min_length=1, max_length=64)
    vcpus: int | None = Field(default=None, ge=1, le=64)
    ram_mb: int | None = Field(default=None, ge=64, le=262144)
    disk_gb: int | None = Field(
        default=None, ge=1, le=65536, description="grow the root disk (never shrinks)"
    )
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


class GuestNic(BaseModel):
    name: str
    mac: str
    ips: list[str] = Field(description="addr/prefix")


class GuestFilesystem(BaseModel):
    mountpoint: str
    type: str
    total_bytes: int | None = None
    used_bytes: int | None = None


class GuestOut(BaseModel):
    """What the guest's qemu-guest-agent tells (empty when none answers) and the DHCP leases."""

    agent_at: datetime | None = Field(description="when a guest agent last answered; null: none answers")
    hostname: str
    os: dict[str, str] = Field(description="pretty-name, name, version, kernel-release, machine")
    interfaces: list[GuestNic]
    filesystems: list[GuestFilesystem]
    lease_ips: list[str] = Field(description="addresses the network's DHCP server leased to the VM's NICs")

    @classmethod
    def of(cls, g: GuestView) -> GuestOut:
        return cls.model_validate(
            {
                "agent_at": g.agent_at,
                "hostname": g.hostname,
                "os": g.os,
                "interfaces": g.interfaces,
                "filesystems": g.filesystems,
                "lease_ips": g.lease_ips,
            }
        )


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
    #: machine, firmware, secure_boot, tpm (from its flavor and image at create time)
    hardware: dict[str, Any] = Field(default_factory=dict)
    #: what it can grow to while it runs (live resize); None: booted without headroom
    max_vcpus: int | None = None
    max_ram_mb: int | None = None
    created_at: datetime
    updated_at: datetime
    version: int
    ips: list[str] = Field(default_factory=list, description="the VM's addresses, by ``ip_source``")
    ip_source: Literal["agent", "lease", "port", ""] = Field(
        default="",
        description="agent: the guest's qemu-guest-agent; lease: the network's DHCP server leased them;"
        " port: the fixed IPs of its ports (nothing answered yet)",
    )
    #: in a single VM's answer only (not in lists)
    guest: GuestOut | None = None

    @classmethod
    def of(cls, vm: VM, guest: GuestView | None = None) -> VMOut:
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
            hardware=hardware.of_vm(vm.hardware),
            max_vcpus=live_resize.limits(vm)[0],
            max_ram_mb=live_resize.limits(vm)[1],
            created_at=vm.created_at,
            updated_at=vm.updated_at,
            version=vm.version,
            ips=guest.ips if guest else [],
            ip_source=guest.source if guest else "",  # type: ignore[arg-type]
            guest=GuestOut.of(guest) if guest else None,
        )


#: a list page serialised straight from its rows (api/rowpage.py), as ``Page[VMOut]`` would be
_LIST_PAGE = RowPage(VMOut)


def _list_row(fields: dict[str, Any]) -> dict[str, Any]:
    # rows of our own table, already typed by their columns: no validation pass needed
    fields["ips"] = fields["ips"] or []
    fields["ip_source"] = fields["ip_source"] or ""
    fields["metadata"] = fields["metadata"] or {}
    fields["placement"] = fields["placement"] or {}
    fields["labels"] = fields["labels"] or {}
    return fields


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


def accepted(idem: Idempotency, task: Task, body: BaseModel) -> JSONResponse:
    """202 with the task to follow, remembered for a retry with the same key."""
    payload = body.model_dump(mode="json")
    idem.remember(202, payload)
    return JSONResponse(payload, status_code=202, headers={"Location": f"/v1/tasks/{task.id}"})


def _spec(body: VMCreate) -> VMSpec:
    placement = body.placement or PlacementRequest()
    return VMSpec(
        name=body.name,
        image=body.image or "",
        flavor=body.flavor,
        boot_volume=body.boot_volume,
        volumes=tuple(body.volumes),
        user_data=body.user_data,
        metadata=body.metadata,
        server_group=body.server_group,
        aggregate=placement.aggregate,
        host_labels=placement.labels if body.placement else None,
        ha=body.ha,
        ha_priority=body.ha_priority,
        budget_override=body.budget_override,
        labels=body.labels,
        secrets=tuple(body.secrets),
        nics=tuple(
            NicRequest(
                n.network,
                n.fixed_ip,
                tuple(n.security_groups) if n.security_groups is not None else None,
                n.vnic_type,
                n.qos_policy,
            )
            for n in body.networks or []
        ),
    )


@router.get("", response_model=Page[VMOut])
def list_vms(
    vms: VMReader,
    page: VMList,
    name: str | None = None,
    state: str | None = None,
    project_id: str | None = None,
    host_id: str | None = None,
) -> Page[VMOut]:
    rows, nxt = vms.list_rows(page, name=name, state=state, project_id=project_id, host_id=host_id)
    body = _LIST_PAGE.dump_json([_list_row(r) for r in rows], nxt)
    # already typed: no model per row, and no second pass of FastAPI's over the response model
    return Response(body, media_type="application/json")  # type: ignore[return-value]


@router.post("", status_code=202, response_model=Accepted, responses={202: {"model": Accepted}})
def create_vm(request: Request, vms: VMCreator, body: VMCreate, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    project = vms.project(body.project_id)
    decisions = Decisions()
    # recorded whatever the outcome, refusals included (once the project is known, as always)
    audit_detail(request, decisions.items)
    vm, task = vms.create(project, _spec(body), decisions)
    return accepted(idem, task, Accepted(task_id=task.id, vm=VMOut.of(vm), warnings=decisions.warnings))


@router.get("/{vm_id}", response_model=VMOut)
def get_vm(vm_id: str, response: Response, vms: VMReader) -> VMOut:
    vm = vms.get(vm_id)
    set_etag(response, vm)
    return VMOut.of(vm, vms.guest(vm))


@router.patch("/{vm_id}", response_model=VMOut)
def update_vm(vm_id: str, body: VMUpdate, request: Request, response: Response, vms: VMUpdater) -> VMOut:
    vm = vms.get(vm_id)
    check_if_match(request, vm)
    vm = vms.update(vm, VMChange(**body.model_dump()))
    set_etag(response, vm)
    return VMOut.of(vm)


@router.delete("/{vm_id}", status_code=202, response_model=Accepted)
def delete_vm(vm_id: str, request: Request, vms: VMDeleter, idem: IdempotencyDep) -> Response:
    vm = vms.get(vm_id)
    check_if_match(request, vm)
    if (replay := idem.replay({"delete": vm.id})) is not None:
        return replay
    task = vms.delete(vm)
    return accepted(idem, task, Accepted(task_id=task.id, vm=VMOut.of(vm)))


@router.post("/{vm_id}/actions/{action}", status_code=202, response_model=Accepted)
def vm_action(
    vm_id: str,
    action: Literal["start", "stop", "reboot", "pause", "resume"],
    vms: VMPower,
    idem: IdempotencyDep,
    body: Annotated[ActionRequest | None, Body()] = None,
) -> Response:
    vm = vms.get(vm_id)
    params = (body or ActionRequest()).model_dump()
    if (replay := idem.replay({"action": action, **params})) is not None:
        return replay
    task = vms.act(vm, action, params)
    return accepted(idem, task, Accepted(task_id=task.id, vm=VMOut.of(vm)))


@router.post("/{vm_id}/snapshot", status_code=202, response_model=SnapshotAccepted)
def snapshot_vm(vm_id: str, body: SnapshotRequest, vms: VMSnapshotter, idem: IdempotencyDep) -> Response:
    vm = vms.get(vm_id)
    if (replay := idem.replay(body)) is not None:
        return replay
    image, task = vms.snapshot(vm, body.image_name)
    return accepted(idem, task, SnapshotAccepted(task_id=task.id, image_id=image.id))


@router.get("/{vm_id}/console-log", response_class=PlainTextResponse)
def console_log(
    vm_id: str,
    vms: VMConsole,
    offset: int = Query(0, ge=0, description="byte offset to read from"),
    tail: int | None = Query(None, ge=1, le=1_048_576, description="only the last N bytes"),
) -> PlainTextResponse:
    """The serial console log, read on the VM's host; ``X-Next-Offset`` is where to read on from."""
    text, next_offset = vms.console_log(vm_id, offset, tail)
    return PlainTextResponse(text, headers={"X-Next-Offset": str(next_offset)})


@router.get("/{vm_id}/metrics", response_model=MetricsOut | ChartOut)
def vm_metrics(
    vm_id: str,
    vms: VMMetrics,
    charts: ChartReader,
    since: float | None = Query(None, description="only samples after this unix time"),
    chart_range: ChartRange = None,
) -> MetricsOut | Response:
    """The recent raw samples, or with ``range`` the VM's chart from the metrics store."""
    if chart_range is not None:
        return ChartOut.response(charts.vm_chart(vm_id, chart_range))
    vm_id, interval_s, samples = vms.metrics(vm_id, since)
    return MetricsOut(vm_id=vm_id, interval_s=interval_s, samples=samples)


@router.get("/{vm_id}/metrics/live", response_class=StreamingResponse, responses=LIVE_CHART_RESPONSES)
def vm_metrics_live(vm_id: str, charts: ChartReader) -> StreamingResponse:
    """The VM's live 5-minute chart pushed as server-sent events: ``event: chart`` (the whole chart,
    as ``?range=5m`` answers it), then each step ``event: points`` (the new start and end, and each
    line's new points, merged by time). The caller's right to the VM is checked when it subscribes."""
    return live_chart_response(charts.vm_live(vm_id))

"""Migrating one VM (live when running, cold when stopped), and draining a host (every VM off it)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from novacron import events
from novacron.api.concurrency import Idempotency
from novacron.api.deps import CtxDep, SessionDep, require
from novacron.api.errors import Problem, invalid, not_found
from novacron.api.routers.vms import Accepted, VMOut
from novacron.compute import vms as vm_service
from novacron.compute.scope import get_visible
from novacron.db.models import VM, Host
from novacron.identity.principal import Principal

router = APIRouter(tags=["migration"])

CanMigrate = Annotated[Principal, Depends(require("vm:migrate"))]


class MigrateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str | None = Field(
        default=None, max_length=128, description="target host id or name; default: chosen"
    )
    storage: Literal["auto", "local", "shared"] = Field(
        default="auto",
        description="shared: the destination opens the same disk on shared storage (nothing copied); "
        "local: the disk is mirrored (live) or copied (cold); auto: shared when the destination "
        "reaches the VM's disk, else local",
    )
    max_downtime_ms: int | None = Field(
        default=None, ge=1, le=60_000, description="longest pause for the final copy, ms (default 30)"
    )
    max_bandwidth_mbps: int | None = Field(
        default=None, ge=1, le=1_000_000, description="cap on RAM and disk transfer, megabits/s (live)"
    )
    auto_converge: bool = Field(
        default=False, description="throttle the guest's vCPUs when it dirties RAM faster than it moves"
    )


class DrainOut(BaseModel):
    host_id: str
    state: str
    task_ids: list[str]
    #: VMs not moved (busy with another task, or neither running nor stopped)
    left: list[str]


def _host(session: SessionDep, ref: str, field: str) -> Host:
    host = session.scalar(select(Host).where((Host.id == ref) | (Host.name == ref)))
    if host is None:
        raise invalid(field, f"no host '{ref}'", 404 if field == "path.host_id" else 422)
    return host


@router.post("/v1/vms/{vm_id}/migrate", status_code=202, response_model=Accepted, tags=["vms"])
def migrate_vm(
    vm_id: str,
    request: Request,
    ctx: CtxDep,
    session: SessionDep,
    principal: CanMigrate,
    body: MigrateRequest | None = None,
) -> Response:
    """Live-migrate a running VM (the guest does not restart), or cold-migrate a stopped one."""
    body = body or MigrateRequest()
    vm = get_visible(session, VM, vm_id, principal, "vm")
    idem = Idempotency(request, principal, session, {"migrate": vm.id, **body.model_dump()})
    if (replay := idem.replay()) is not None:
        return replay
    target = _host(session, body.host, "body.host").id if body.host else None
    if target is not None and target == vm.host_id:
        raise invalid("body.host", "the VM already runs there", 409)
    options = body.model_dump(exclude={"host"}, exclude_none=True)
    task = vm_service.request_migrate(session, vm, target, options)
    session.flush()
    payload = Accepted(task_id=task.id, vm=VMOut.of(vm)).model_dump(mode="json")
    idem.remember(202, payload)
    if ctx.tasks is not None:
        ctx.tasks.wake()
    return JSONResponse(payload, status_code=202, headers={"Location": f"/v1/tasks/{task.id}"})


@router.post("/v1/hosts/{host_id}/drain", status_code=202, response_model=DrainOut, tags=["hosts"])
def drain_host(host_id: str, ctx: CtxDep, session: SessionDep, principal: CanMigrate) -> DrainOut:
    """Put the host in maintenance (no new VMs); live-migrate its running VMs, cold-migrate stopped ones."""
    host = session.scalar(select(Host).where((Host.id == host_id) | (Host.name == host_id)))
    if host is None:
        raise not_found("host", host_id)
    if host.state == "down":
        raise Problem(409, "Conflict", f"Host '{host.name}' is down: its VMs cannot be live-migrated.")
    host.state = "maintenance"
    events.publish(session, "host.maintenance", "host", host.id, tenant_id=None, name=host.name)
    task_ids, left = [], []
    for vm in session.scalars(select(VM).where(VM.host_id == host.id)):
        if vm.state in ("running", "stopped") and vm.task_state is None:
            task_ids.append(vm_service.request_migrate(session, vm, None).id)
        else:
            left.append(vm.id)
    session.flush()
    if ctx.tasks is not None:
        ctx.tasks.wake()
    return DrainOut(host_id=host.id, state=host.state, task_ids=task_ids, left=left)

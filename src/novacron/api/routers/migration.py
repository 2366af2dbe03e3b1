"""Migrating one VM (live when running, cold when stopped), and draining a host (every VM off it)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.deps import IdempotencyDep, service
from novacron.api.routers.vms import Accepted, VMOut, accepted
from novacron.compute.cluster import ClusterService
from novacron.compute.vms import VMService

router = APIRouter(tags=["migration"])

VMMigrator = Annotated[VMService, Depends(service(VMService, "vm:migrate"))]
HostDrainer = Annotated[ClusterService, Depends(service(ClusterService, "vm:migrate"))]


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


@router.post("/v1/vms/{vm_id}/migrate", status_code=202, response_model=Accepted, tags=["vms"])
def migrate_vm(
    vm_id: str, vms: VMMigrator, idem: IdempotencyDep, body: MigrateRequest | None = None
) -> Response:
    """Live-migrate a running VM (the guest does not restart), or cold-migrate a stopped one."""
    body = body or MigrateRequest()
    vm = vms.get(vm_id)
    if (replay := idem.replay({"migrate": vm.id, **body.model_dump()})) is not None:
        return replay
    task = vms.migrate(vm, body.host, body.model_dump(exclude={"host"}, exclude_none=True))
    return accepted(idem, task, Accepted(task_id=task.id, vm=VMOut.of(vm)))


@router.post("/v1/hosts/{host_id}/drain", status_code=202, response_model=DrainOut, tags=["hosts"])
def drain_host(host_id: str, cluster: HostDrainer) -> DrainOut:
    """Put the host in maintenance (no new VMs); live-migrate its running VMs, cold-migrate stopped ones."""
    drained = cluster.drain(host_id)
    return DrainOut(
        host_id=drained.host_id, state=drained.state, task_ids=drained.task_ids, left=drained.left
    )

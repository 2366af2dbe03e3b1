"""/v1/vms/{vm_id}/snapshots: live snapshots of a VM (disk, optionally RAM), a tree per VM.

Create, revert and delete answer 202 with the task doing the work (``Location`` names it); each
takes an ``Idempotency-Key``. A snapshot is addressed by id or by its name on the VM.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import Idempotency, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.compute.vm_snapshots import SnapshotSpec, VmSnapshotService
from novacron.db.models import Task, VmSnapshot

router = APIRouter(prefix="/v1/vms/{vm_id}/snapshots", tags=["vm snapshots"])

SnapReader = Annotated[VmSnapshotService, Depends(service(VmSnapshotService, "vm:read", write=False))]
SnapWriter = Annotated[VmSnapshotService, Depends(service(VmSnapshotService, "vm:snapshot"))]


class SnapshotCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", description="unique on the VM")
    description: str = Field(default="", max_length=1024)
    memory: bool = Field(
        default=False, description="include the guest's RAM (running VMs): a revert resumes it"
    )
    quiesce: bool = Field(
        default=True, description="freeze the guest's filesystems through qemu-guest-agent when it runs one"
    )


class SnapshotOut(BaseModel):
    id: str
    vm_id: str
    name: str
    description: str
    parent_id: str | None
    current: bool
    memory: bool
    consistency: str = Field(description="crash, application or memory ('' while it is being taken)")
    vm_state_bytes: int
    status: str
    error: str | None
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, s: VmSnapshot) -> SnapshotOut:
        return cls(
            id=s.id,
            vm_id=s.vm_id,
            name=s.name,
            description=s.description,
            parent_id=s.parent_id,
            current=s.current,
            memory=s.memory,
            consistency=s.consistency,
            vm_state_bytes=s.vm_state_bytes,
            status=s.status,
            error=s.error,
            created_at=s.created_at,
            updated_at=s.updated_at,
            version=s.version,
        )


class SnapshotList(BaseModel):
    items: list[SnapshotOut]


class SnapshotAccepted(BaseModel):
    task_id: str
    snapshot: SnapshotOut


def _accepted(idem: Idempotency, task: Task, snap: VmSnapshot) -> JSONResponse:
    payload = SnapshotAccepted(task_id=task.id, snapshot=SnapshotOut.of(snap)).model_dump(mode="json")
    idem.remember(202, payload)
    return JSONResponse(payload, status_code=202, headers={"Location": f"/v1/tasks/{task.id}"})


@router.get("", response_model=SnapshotList)
def list_snapshots(vm_id: str, snaps: SnapReader) -> SnapshotList:
    """Every snapshot of the VM, oldest first; ``parent_id`` links make the tree."""
    return SnapshotList(items=[SnapshotOut.of(s) for s in snaps.list(snaps.vm(vm_id))])


@router.post("", status_code=202, response_model=SnapshotAccepted)
def create_snapshot(vm_id: str, body: SnapshotCreate, snaps: SnapWriter, idem: IdempotencyDep) -> Response:
    vm = snaps.vm(vm_id)
    if (replay := idem.replay({"vm": vm.id, **body.model_dump()})) is not None:
        return replay
    spec = SnapshotSpec(body.name, body.description, body.memory, body.quiesce)
    snap, task = snaps.create(vm, spec)
    return _accepted(idem, task, snap)


@router.get("/{snapshot_id}", response_model=SnapshotOut)
def get_snapshot(vm_id: str, snapshot_id: str, response: Response, snaps: SnapReader) -> SnapshotOut:
    snap = snaps.get(snaps.vm(vm_id), snapshot_id)
    set_etag(response, snap)
    return SnapshotOut.of(snap)


@router.delete("/{snapshot_id}", status_code=202, response_model=SnapshotAccepted)
def delete_snapshot(vm_id: str, snapshot_id: str, snaps: SnapWriter, idem: IdempotencyDep) -> Response:
    vm = snaps.vm(vm_id)
    snap = snaps.get(vm, snapshot_id)
    if (replay := idem.replay({"delete": snap.id})) is not None:
        return replay
    return _accepted(idem, snaps.delete(vm, snap), snap)


@router.post("/{snapshot_id}/revert", status_code=202, response_model=SnapshotAccepted)
def revert_snapshot(vm_id: str, snapshot_id: str, snaps: SnapWriter, idem: IdempotencyDep) -> Response:
    vm = snaps.vm(vm_id)
    snap = snaps.get(vm, snapshot_id)
    if (replay := idem.replay({"revert": snap.id})) is not None:
        return replay
    return _accepted(idem, snaps.revert(vm, snap), snap)

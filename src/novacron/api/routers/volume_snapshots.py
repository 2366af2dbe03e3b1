"""/v1/volume-snapshots: points in time of a volume (qcow2 internal snapshots in its file).

Create and delete answer 202 with the task doing the work (``Location`` names it); a new volume
is made from a snapshot with ``POST /v1/volumes {"snapshot": ...}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.audit import audit_hint
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.compute.volume_snapshots import VolumeSnapshotService
from novacron.db.listing import ListParams
from novacron.db.models import VolumeSnapshot

router = APIRouter(prefix="/v1/volume-snapshots", tags=["volumes"])

SnapshotReader = Annotated[
    VolumeSnapshotService, Depends(service(VolumeSnapshotService, "volume:read", write=False))
]
SnapshotWriter = Annotated[VolumeSnapshotService, Depends(service(VolumeSnapshotService, "volume:write"))]
SnapshotList = Annotated[ListParams, Depends(list_query(("created_at", "name")))]


class SnapshotCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", description="unique in the project")
    volume: str = Field(min_length=1, max_length=64, description="volume id or name (attached or not)")


class SnapshotOut(BaseModel):
    id: str
    name: str
    volume_id: str
    project_id: str
    tenant_id: str
    size_gb: int
    status: str
    error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, s: VolumeSnapshot) -> SnapshotOut:
        return cls(
            id=s.id,
            name=s.name,
            volume_id=s.volume_id,
            project_id=s.project_id,
            tenant_id=s.tenant_id,
            size_gb=s.size_gb,
            status=s.status,
            error=s.error,
            created_at=s.created_at,
            updated_at=s.updated_at,
        )


class SnapshotAccepted(BaseModel):
    task_id: str
    snapshot: SnapshotOut


@router.get("", response_model=Page[SnapshotOut])
def list_snapshots(
    snapshots: SnapshotReader, page: SnapshotList, volume_id: str | None = None, name: str | None = None
) -> Page[SnapshotOut]:
    rows, nxt = snapshots.list(page, volume_id=volume_id, name=name)
    return Page[SnapshotOut](items=[SnapshotOut.of(s) for s in rows], next_cursor=nxt)


@router.post("", status_code=202, response_model=SnapshotAccepted)
def create_snapshot(
    body: SnapshotCreate, request: Request, snapshots: SnapshotWriter, idem: IdempotencyDep
) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    snap, task = snapshots.create(body.volume, body.name)
    audit_hint(request, resource_id=snap.id)  # the answer's id is the task's
    payload = SnapshotAccepted(task_id=task.id, snapshot=SnapshotOut.of(snap)).model_dump(mode="json")
    idem.remember(202, payload)
    return JSONResponse(payload, status_code=202, headers={"Location": f"/v1/tasks/{task.id}"})


@router.get("/{snapshot_id}", response_model=SnapshotOut)
def get_snapshot(snapshot_id: str, snapshots: SnapshotReader) -> SnapshotOut:
    return SnapshotOut.of(snapshots.get(snapshot_id))


@router.delete("/{snapshot_id}", status_code=202, response_model=SnapshotAccepted)
def delete_snapshot(snapshot_id: str, snapshots: SnapshotWriter, idem: IdempotencyDep) -> Response:
    snap = snapshots.get(snapshot_id)
    if (replay := idem.replay({"delete": snap.id})) is not None:
        return replay
    task = snapshots.delete(snap)
    payload = SnapshotAccepted(task_id=task.id, snapshot=SnapshotOut.of(snap)).model_dump(mode="json")
    idem.remember(202, payload)
    return JSONResponse(payload, status_code=202, headers={"Location": f"/v1/tasks/{task.id}"})

"""/v1/volumes: block storage volumes of a project, attached to and detached from VMs.

Create (blank, from an image, from a volume snapshot, or a clone of a volume), attach, detach,
extend and a change of I/O limits answer 202 with the task doing the work (``Location`` names
it); delete answers 204 at once, and 409 for a volume still attached or with snapshots.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.audit import audit_hint
from novacron.api.concurrency import Idempotency, check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.compute.volume_limits import MAX_BPS, MAX_BURST_S, MAX_IOPS
from novacron.compute.volumes import MAX_SIZE_GB, VolumeService, VolumeSpec
from novacron.db.listing import ListParams
from novacron.db.models import Task, Volume

router = APIRouter(prefix="/v1/volumes", tags=["volumes"])
Iops = Annotated[int, Field(ge=0, le=MAX_IOPS)]
Bps = Annotated[int, Field(ge=0, le=MAX_BPS)]
BurstS = Annotated[int, Field(ge=0, le=MAX_BURST_S)]

VolumeReader = Annotated[VolumeService, Depends(service(VolumeService, "volume:read", write=False))]
VolumeWriter = Annotated[VolumeService, Depends(service(VolumeService, "volume:write"))]
VolumeList = Annotated[ListParams, Depends(list_query(("created_at", "name")))]


class IoLimits(BaseModel):
    """A volume's I/O limits (its QEMU throttle group); 0 or absent: no limit."""

    model_config = ConfigDict(extra="forbid")
    iops_total: Iops = Field(default=0, description="operations/s, reads and writes together")
    iops_read: Iops = Field(default=0, description="read operations/s (not with iops_total)")
    iops_write: Iops = Field(default=0, description="write operations/s (not with iops_total)")
    bps_total: Bps = Field(default=0, description="bytes/s, reads and writes together")
    bps_read: Bps = Field(default=0, description="bytes read/s (not with bps_total)")
    bps_write: Bps = Field(default=0, description="bytes written/s (not with bps_total)")
    iops_total_max: Iops = Field(default=0, description="burst operations/s, at least iops_total")
    iops_total_max_length: BurstS = Field(default=0, description="seconds a burst may last")
    bps_total_max: Bps = Field(default=0, description="burst bytes/s, at least bps_total")
    bps_total_max_length: BurstS = Field(default=0, description="seconds a burst may last")

    def asked(self) -> dict[str, int | None]:
        return dict(self.model_dump())


class VolumeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", description="unique in the project")
    size_gb: int | None = Field(
        default=None, ge=1, le=MAX_SIZE_GB, description="GiB; default: the image's virtual size"
    )
    image: str | None = Field(
        default=None, min_length=1, max_length=128, description="copy this image (id or name)"
    )
    snapshot: str | None = Field(
        default=None, min_length=1, max_length=64, description="copy this volume snapshot (id or name)"
    )
    source_volume: str | None = Field(
        default=None, min_length=1, max_length=64, description="clone this volume (id or name), live or not"
    )
    io_limits: IoLimits | None = None
    project_id: str | None = Field(default=None, max_length=40)
    pool: Literal["file", "rbd"] | None = Field(
        default=None,
        description="storage pool: file (qcow2 files), rbd (Ceph, when configured); default: the "
        "source volume's or snapshot's pool (a copy stays in its source's pool), else file",
    )


class AttachRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vm: str = Field(min_length=1, max_length=64, description="VM id or name (same project)")


class ExtendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size_gb: int = Field(ge=1, le=MAX_SIZE_GB, description="the new size, larger than the current one")


class VolumeOut(BaseModel):
    id: str
    name: str
    project_id: str
    tenant_id: str
    size_gb: int
    pool: str
    status: str
    vm_id: str | None
    boot: bool
    io_limits: dict[str, int]
    source_image_id: str | None
    source_snapshot_id: str | None
    source_volume_id: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, v: Volume) -> VolumeOut:
        return cls(
            id=v.id,
            name=v.name,
            project_id=v.project_id,
            tenant_id=v.tenant_id,
            size_gb=v.size_gb,
            pool=v.pool,
            status=v.status,
            vm_id=v.vm_id,
            boot=bool(v.boot),
            io_limits=dict(v.io_limits or {}),
            source_image_id=v.source_image_id,
            source_snapshot_id=v.source_snapshot_id,
            source_volume_id=v.source_volume_id,
            error=v.error,
            created_at=v.created_at,
            updated_at=v.updated_at,
            version=v.version,
        )


class VolumeAccepted(BaseModel):
    task_id: str
    volume: VolumeOut


def _accepted(idem: Idempotency, task: Task, volume: Volume) -> JSONResponse:
    payload = VolumeAccepted(task_id=task.id, volume=VolumeOut.of(volume)).model_dump(mode="json")
    idem.remember(202, payload)
    return JSONResponse(payload, status_code=202, headers={"Location": f"/v1/tasks/{task.id}"})


@router.get("", response_model=Page[VolumeOut])
def list_volumes(  # noqa: PLR0913 (the listing's filters)
    volumes: VolumeReader,
    page: VolumeList,
    name: str | None = None,
    project_id: str | None = None,
    vm_id: str | None = None,
    status: str | None = None,
) -> Page[VolumeOut]:
    rows, nxt = volumes.list(page, name=name, project_id=project_id, vm_id=vm_id, status=status)
    return Page[VolumeOut](items=[VolumeOut.of(v) for v in rows], next_cursor=nxt)


@router.post("", status_code=202, response_model=VolumeAccepted)
def create_volume(
    body: VolumeCreate, request: Request, volumes: VolumeWriter, idem: IdempotencyDep
) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    limits = body.io_limits.asked() if body.io_limits else None
    spec = VolumeSpec(
        body.name,
        body.size_gb,
        body.image,
        body.project_id,
        body.snapshot,
        body.source_volume,
        limits,
        pool=body.pool,
    )
    volume, task = volumes.create(spec)
    audit_hint(request, resource_id=volume.id)  # the answer's id is the task's
    return _accepted(idem, task, volume)


@router.get("/{volume_id}", response_model=VolumeOut)
def get_volume(volume_id: str, response: Response, volumes: VolumeReader) -> VolumeOut:
    volume = volumes.get(volume_id)
    set_etag(response, volume)
    return VolumeOut.of(volume)


@router.delete("/{volume_id}", status_code=204)
def delete_volume(volume_id: str, request: Request, volumes: VolumeWriter) -> Response:
    volume = volumes.get(volume_id)
    check_if_match(request, volume)
    volumes.delete(volume)
    return Response(status_code=204)


@router.post("/{volume_id}/attach", status_code=202, response_model=VolumeAccepted)
def attach_volume(
    volume_id: str, body: AttachRequest, volumes: VolumeWriter, idem: IdempotencyDep
) -> Response:
    volume = volumes.get(volume_id)
    if (replay := idem.replay({"attach": volume.id, **body.model_dump()})) is not None:
        return replay
    return _accepted(idem, volumes.attach(volume, body.vm), volume)


@router.post("/{volume_id}/detach", status_code=202, response_model=VolumeAccepted)
def detach_volume(volume_id: str, volumes: VolumeWriter, idem: IdempotencyDep) -> Response:
    volume = volumes.get(volume_id)
    if (replay := idem.replay({"detach": volume.id})) is not None:
        return replay
    return _accepted(idem, volumes.detach(volume), volume)


@router.post("/{volume_id}/extend", status_code=202, response_model=VolumeAccepted)
def extend_volume(
    volume_id: str, body: ExtendRequest, volumes: VolumeWriter, idem: IdempotencyDep
) -> Response:
    volume = volumes.get(volume_id)
    if (replay := idem.replay({"extend": volume.id, **body.model_dump()})) is not None:
        return replay
    return _accepted(idem, volumes.extend(volume, body.size_gb), volume)


@router.put("/{volume_id}/limits", status_code=202, response_model=VolumeAccepted)
def set_volume_limits(
    volume_id: str, body: IoLimits, volumes: VolumeWriter, idem: IdempotencyDep
) -> Response:
    """Replace the volume's I/O limits (those left out are lifted); a running guest has them at once."""
    volume = volumes.get(volume_id)
    if (replay := idem.replay({"limits": volume.id, **body.model_dump()})) is not None:
        return replay
    return _accepted(idem, volumes.set_limits(volume, body.asked()), volume)

"""/v1/backups, /v1/backup-targets: VM backups, restores, verification, legal holds.

Every backup is a durable task on the VM (``backup.create``): incremental from the previous backup
when the disk's dirty bitmap allows, full otherwise, and the backup says which and why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from novacron.api.concurrency import Idempotency, check_if_match, set_etag
from novacron.api.deps import CtxDep, IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.backup.service import BackupFilter, BackupService, RestoreSpec
from novacron.backup.target_service import BackupTargetService, TargetSpec, TargetView
from novacron.backup.volbackup import volume_of
from novacron.db.listing import ListParams
from novacron.db.models import BackupSnapshot

router = APIRouter(tags=["backups"])

BackupReader = Annotated[BackupService, Depends(service(BackupService, "backup:read", write=False))]
BackupCreator = Annotated[BackupService, Depends(service(BackupService, "backup:create"))]
BackupRestorer = Annotated[BackupService, Depends(service(BackupService, "backup:restore"))]
BackupDeleter = Annotated[BackupService, Depends(service(BackupService, "backup:delete"))]
BackupHolder = Annotated[BackupService, Depends(service(BackupService, "backup:hold"))]
TargetReader = Annotated[
    BackupTargetService, Depends(service(BackupTargetService, "backup:read", write=False))
]
TargetWriter = Annotated[BackupTargetService, Depends(service(BackupTargetService, "backup-target:write"))]
BackupList = Annotated[
    ListParams, Depends(list_query(("created_at", "completed_at", "vm_name"), "-created_at"))
]

NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class TargetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    type: Literal["local", "s3", "azure", "gcs"]
    config: dict[str, Any] = Field(
        description="local: path; s3: bucket, prefix, endpoint_url, credentials; azure: container, "
        "connection_string; gcs: bucket, prefix"
    )
    chunk_size: int = Field(default=4 << 20, ge=1 << 16, le=1 << 26, description="a power of two")
    replicate_to: str | None = Field(
        default=None, max_length=64, description="target (id or name) at the recovery site to copy to"
    )
    replicate_every_s: int = Field(default=300, ge=1, le=86400, description="how often replication runs")


class TargetOut(BaseModel):
    id: str
    name: str
    type: str
    chunk_size: int
    replica_target_id: str | None = None
    replicate_every_s: int = 300
    replicated_at: datetime | None = None
    replication_error: str | None = None
    #: only shown to those who may edit targets; credentials are write-only: their value is "***"
    config: dict[str, Any] | None = None
    #: the credential fields that hold a value (their values are never shown)
    secrets_set: list[str] = Field(default_factory=list)
    created_at: datetime
    version: int = 1

    @classmethod
    def of(cls, v: TargetView) -> TargetOut:
        t = v.row
        return cls(
            id=t.id, name=t.name, type=t.type, chunk_size=t.chunk_size, created_at=t.created_at,
            config=v.config, secrets_set=v.secrets_set,
            replica_target_id=t.replica_target_id, replicate_every_s=t.replicate_every_s,
            replicated_at=t.replicated_at, replication_error=t.replication_error, version=t.version,
        )  # fmt: skip


class TargetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, pattern=NAME, description="a new name (the id stays)")
    config: dict[str, Any] | None = Field(
        default=None,
        description="fields to change (merged into the configuration; null removes one). A credential "
        'left out, or sent as "***", keeps its stored value',
    )
    replicate_every_s: int | None = Field(default=None, ge=1, le=86400)


class BackupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vm: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="VM id or name (its attached volumes are in the backup)",
    )
    volume: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="a detached volume's id or name, backed up alone",
    )
    target: str | None = Field(
        default=None, max_length=64, description="target id or name (default: the only one)"
    )
    full: bool = Field(default=False, description="read the whole disk even when changes are tracked")


class RestoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    new_vm: str | None = Field(default=None, pattern=NAME, description="restore into a new VM of this name")
    vm: str | None = Field(default=None, max_length=64, description="restore over this stopped VM")
    image_name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="restore the disk as a new image",
    )
    instant: bool = Field(
        default=False,
        description="with new_vm: boot at once reading from the backup, and copy the disk in behind",
    )
    copy_rate_mib: int | None = Field(
        default=None, ge=1, le=100_000, description="instant restore: cap the copy at this many MiB/s"
    )
    new_volume: str | None = Field(
        default=None, pattern=NAME, description="a volume's backup: restore it as a new volume of this name"
    )

    @model_validator(mode="after")
    def _one(self) -> RestoreRequest:
        if sum(v is not None for v in (self.new_vm, self.vm, self.image_name, self.new_volume)) != 1:
            raise ValueError("give exactly one of new_vm, vm, image_name and new_volume")
        return self


class RestoreTestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    marker: str | None = Field(
        default=None, min_length=1, max_length=200, description="console line to wait for"
    )


class HoldRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


class BackupOut(BaseModel):
    id: str
    vm_id: str | None
    vm_name: str
    project_id: str
    tenant_id: str
    target_id: str
    policy_id: str | None
    parent_id: str | None
    state: str
    mode: str | None
    reason: str | None
    consistency: str | None
    disks: list[dict[str, Any]]
    size_bytes: int
    bytes_read: int
    changed_bytes: int
    chunks_total: int
    chunks_changed: int
    chunks_uploaded: int
    bytes_uploaded: int
    verify_result: dict[str, Any] | None
    restore_test_result: dict[str, Any] | None
    legal_hold: bool
    hold_reason: str | None
    immutable_until: datetime | None
    task_id: str | None
    error: str | None
    created_at: datetime
    completed_at: datetime | None
    #: the replica target holding a complete copy (what failover restores from), and since when
    replica_target_id: str | None = None
    replicated_at: datetime | None = None
    version: int
    #: a detached volume's own backup: the volume (``vm_name`` is its name then; ``vm_id`` is empty)
    volume_id: str | None = None

    @classmethod
    def of(cls, s: BackupSnapshot) -> BackupOut:
        out = cls.model_validate(s, from_attributes=True)
        out.volume_id = volume_of(s)
        return out


class Accepted(BaseModel):
    task_id: str
    backup: BackupOut | None = None
    restore_job_id: str | None = None
    vm_id: str | None = None
    image_id: str | None = None
    volume_id: str | None = None


def _accepted(ctx: CtxDep, idem: Idempotency, body: Accepted) -> JSONResponse:
    payload = body.model_dump(mode="json")
    idem.remember(202, payload)
    if ctx.tasks is not None:
        ctx.tasks.wake()
    return JSONResponse(payload, status_code=202, headers={"Location": f"/v1/tasks/{body.task_id}"})


# ---- targets ---------------------------------------------------------------------------------


@router.post("/v1/backup-targets", status_code=201, response_model=TargetOut)
def create_target(body: TargetCreate, targets: TargetWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    view = targets.create(TargetSpec(**body.model_dump()))
    return idem.created(TargetOut.of(view), view.row)


@router.get("/v1/backup-targets", response_model=Page[TargetOut])
def list_targets(targets: TargetReader) -> Page[TargetOut]:
    return Page[TargetOut](items=[TargetOut.of(v) for v in targets.list()])


@router.get("/v1/backup-targets/{target_id}", response_model=TargetOut)
def get_target(target_id: str, response: Response, targets: TargetReader) -> TargetOut:
    view = targets.get(target_id)
    set_etag(response, view.row)
    return TargetOut.of(view)


@router.patch("/v1/backup-targets/{target_id}", response_model=TargetOut)
def update_target(
    target_id: str, request: Request, response: Response, targets: TargetWriter, body: TargetUpdate
) -> TargetOut:
    """Change a target's settings, e.g. new credentials; a credential not sent is kept."""
    view = targets.get(target_id)
    check_if_match(request, view.row)
    view = targets.update(view.row, body.config, body.replicate_every_s, body.name)
    set_etag(response, view.row)
    return TargetOut.of(view)


@router.delete("/v1/backup-targets/{target_id}", status_code=204)
def delete_target(
    target_id: str,
    request: Request,
    targets: TargetWriter,
    force: Annotated[
        bool,
        Query(description="also delete the backups stored on it (refused for held or immutable ones)"),
    ] = False,
) -> Response:
    """Delete a target: 409 while schedules, replication or (without force) backups use it."""
    view = targets.get(target_id)
    check_if_match(request, view.row)
    targets.delete(view.row, force)
    return Response(status_code=204)


# ---- backups ---------------------------------------------------------------------------------


@router.post("/v1/backups", status_code=202, response_model=Accepted)
def create_backup(body: BackupCreate, ctx: CtxDep, backups: BackupCreator, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    snap, task = backups.create(body.vm, body.target, body.full, body.volume)
    volume_id = task.resource_id if task.resource_type == "volume" else None
    accepted = Accepted(task_id=task.id, backup=BackupOut.of(snap), vm_id=snap.vm_id, volume_id=volume_id)
    return _accepted(ctx, idem, accepted)


@router.get("/v1/backups", response_model=Page[BackupOut])
def list_backups(
    backups: BackupReader,
    page: BackupList,
    vm_id: str | None = None,
    vm_name: str | None = None,
    state: str | None = None,
    project_id: str | None = None,
    policy_id: str | None = None,
) -> Page[BackupOut]:
    where = BackupFilter(vm_id, vm_name, state, project_id, policy_id)
    rows, nxt = backups.list(page, where)
    return Page[BackupOut](items=[BackupOut.of(r) for r in rows], next_cursor=nxt)


@router.get("/v1/backups/{backup_id}", response_model=BackupOut)
def get_backup(backup_id: str, response: Response, backups: BackupReader) -> BackupOut:
    snap = backups.get(backup_id)
    set_etag(response, snap)
    return BackupOut.of(snap)


@router.delete("/v1/backups/{backup_id}", status_code=204)
def delete_backup(backup_id: str, request: Request, backups: BackupDeleter) -> Response:
    snap = backups.get(backup_id)
    check_if_match(request, snap)
    backups.delete(snap)
    return Response(status_code=204)


@router.post("/v1/backups/{backup_id}/restore", status_code=202, response_model=Accepted)
def restore_backup(
    backup_id: str, body: RestoreRequest, ctx: CtxDep, backups: BackupRestorer, idem: IdempotencyDep
) -> Response:
    snap = backups.get(backup_id)  # an invisible backup is 404 before a replay
    if (replay := idem.replay(body)) is not None:
        return replay
    done = backups.restore(snap, RestoreSpec(**body.model_dump()))
    accepted = Accepted(
        task_id=done.task.id,
        restore_job_id=done.job.id,
        vm_id=done.vm_id,
        image_id=done.image_id,
        volume_id=done.volume_id,
    )
    return _accepted(ctx, idem, accepted)


@router.post("/v1/backups/{backup_id}/verify", status_code=202, response_model=Accepted)
def verify_backup(backup_id: str, ctx: CtxDep, backups: BackupRestorer, idem: IdempotencyDep) -> Response:
    snap = backups.get(backup_id)
    if (replay := idem.replay({"verify": snap.id})) is not None:
        return replay
    task = backups.verify(snap)
    return _accepted(ctx, idem, Accepted(task_id=task.id))


@router.post("/v1/backups/{backup_id}/restore-test", status_code=202, response_model=Accepted)
def restore_test(
    backup_id: str,
    ctx: CtxDep,
    backups: BackupRestorer,
    idem: IdempotencyDep,
    body: RestoreTestRequest | None = None,
) -> Response:
    snap = backups.get(backup_id)
    body = body or RestoreTestRequest()
    if (replay := idem.replay(body)) is not None:
        return replay
    task = backups.restore_test(snap, body.marker)
    return _accepted(ctx, idem, Accepted(task_id=task.id, vm_id=task.params["vm_id"]))


@router.post("/v1/backups/{backup_id}/hold", response_model=BackupOut)
def hold_backup(backup_id: str, backups: BackupHolder, body: HoldRequest) -> BackupOut:
    return BackupOut.of(backups.hold(backup_id, body.reason))


@router.post("/v1/backups/{backup_id}/release", response_model=BackupOut)
def release_backup(backup_id: str, backups: BackupHolder) -> BackupOut:
    return BackupOut.of(backups.release(backup_id))

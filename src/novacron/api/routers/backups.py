"""/v1/backups, /v1/backup-targets: VM backups, restores, verification, legal holds.

Every backup is a durable task on the VM (``backup.create``): incremental from the previous backup
when the disk's dirty bitmap allows, full otherwise, and the backup says which and why.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select

from novacron.api.concurrency import Idempotency, check_if_match, set_etag
from novacron.api.deps import CtxDep, ReadSessionDep, SessionDep, require
from novacron.api.errors import invalid, name_taken, not_found
from novacron.api.listing import Page
from novacron.backup import service, vmstore
from novacron.compute.scope import get_visible, scoped
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import VM, BackupSnapshot, BackupTarget
from novacron.errors import DomainError
from novacron.identity.encryption import MASK, encryption_for, is_secret_field, redact, scrub, secrets_set
from novacron.identity.principal import Principal

router = APIRouter(tags=["backups"])

CanRead = Annotated[Principal, Depends(require("backup:read"))]
CanCreate = Annotated[Principal, Depends(require("backup:create"))]
CanRestore = Annotated[Principal, Depends(require("backup:restore"))]
CanDelete = Annotated[Principal, Depends(require("backup:delete"))]
CanHold = Annotated[Principal, Depends(require("backup:hold"))]
CanTargets = Annotated[Principal, Depends(require("backup-target:write"))]

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


class TargetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: dict[str, Any] | None = Field(
        default=None,
        description="fields to change (merged into the configuration; null removes one). A credential "
        'left out, or sent as "***", keeps its stored value',
    )
    replicate_every_s: int | None = Field(default=None, ge=1, le=86400)


class BackupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vm: str = Field(min_length=1, max_length=64, description="VM id or name")
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

    @model_validator(mode="after")
    def _one(self) -> RestoreRequest:
        if sum(v is not None for v in (self.new_vm, self.vm, self.image_name)) != 1:
            raise ValueError("give exactly one of new_vm, vm and image_name")
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

    @classmethod
    def of(cls, s: BackupSnapshot) -> BackupOut:
        return cls.model_validate(s, from_attributes=True)


class Accepted(BaseModel):
    task_id: str
    backup: BackupOut | None = None
    restore_job_id: str | None = None
    vm_id: str | None = None
    image_id: str | None = None


def _accepted(ctx: CtxDep, idem: Idempotency, body: Accepted) -> JSONResponse:
    payload = body.model_dump(mode="json")
    idem.remember(202, payload)
    if ctx.tasks is not None:
        ctx.tasks.wake()
    return JSONResponse(payload, status_code=202, headers={"Location": f"/v1/tasks/{body.task_id}"})


# ---- targets ---------------------------------------------------------------------------------


def _target_out(t: BackupTarget, principal: Principal) -> TargetOut:
    editor = principal.can("backup-target:write")
    return TargetOut(
        id=t.id, name=t.name, type=t.type, chunk_size=t.chunk_size, created_at=t.created_at,
        config=redact(dict(t.config)) if editor else None,
        secrets_set=secrets_set(dict(t.config)) if editor else [],
        replica_target_id=t.replica_target_id, replicate_every_s=t.replicate_every_s,
        replicated_at=t.replicated_at, replication_error=t.replication_error, version=t.version,
    )  # fmt: skip


def _check_target(kind: str, config: dict[str, Any], chunk_size: int) -> vmstore.ChunkStore:
    """Open the target once to see that it answers; error messages never echo a credential."""
    try:
        return vmstore.ChunkStore(vmstore.target_from_config(kind, config), key_service_stub(), chunk_size)
    except (KeyError, TypeError) as exc:
        why = scrub(f"missing or wrong setting for a {kind} target: {exc}", config)
        raise invalid("body.config", why) from exc
    except Exception as exc:
        raise invalid("body.config", scrub(f"the target does not answer: {exc}", config)) from exc


@router.post("/v1/backup-targets", status_code=201, response_model=TargetOut)
def create_target(
    request: Request, ctx: CtxDep, session: SessionDep, principal: CanTargets, body: TargetCreate
) -> Any:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    if body.chunk_size & (body.chunk_size - 1):
        raise invalid("body.chunk_size", "must be a power of two")
    if session.scalar(select(BackupTarget.id).where(BackupTarget.name == body.name)):
        raise name_taken("backup target", body.name, "body.name", "")
    if body.type == "local":
        _check_local(body.config)
    store = _check_target(body.type, body.config, body.chunk_size)
    replica = None
    if body.replicate_to is not None:
        replica = session.scalar(
            select(BackupTarget).where(
                (BackupTarget.id == body.replicate_to) | (BackupTarget.name == body.replicate_to)
            )
        )
        if replica is None:
            raise invalid("body.replicate_to", f"no backup target '{body.replicate_to}'")
        if replica.chunk_size != store.chunk_size:  # the replica is a byte copy: chunk names must agree
            why = f"its chunk size is {replica.chunk_size}, not {store.chunk_size}"
            raise invalid("body.replicate_to", why)
    # an existing store keeps the chunk size it was made with; credentials are stored sealed
    target_id = new_id("bkt")
    config = encryption_for(ctx.settings).seal_fields(body.config, vmstore.config_aad(target_id))
    target = BackupTarget(
        id=target_id, name=body.name, type=body.type, config=config, chunk_size=store.chunk_size,
        replica_target_id=replica.id if replica else None, replicate_every_s=body.replicate_every_s,
    )  # fmt: skip
    session.add(target)
    session.flush()
    out = _target_out(target, principal)
    idem.remember(201, out.model_dump(mode="json"))
    return out


def _check_local(config: dict[str, Any]) -> None:
    """A local target is a new or empty directory, or an existing store; never any other folder."""
    path = Path(str(config.get("path", "")))
    if not path.is_absolute() or ".." in path.parts:
        raise invalid("body.config.path", "must be an absolute path without '..'")
    if not path.parent.is_dir():
        raise invalid("body.config.path", f"its parent {path.parent} is not a directory")
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / "config.json").exists())):
        raise invalid("body.config.path", "exists and is neither empty nor a backup store")


def key_service_stub() -> vmstore.KeyService:
    """Opening a store to check it needs no tenant key."""
    return vmstore.HandedKey("", b"")


@router.get("/v1/backup-targets", response_model=Page[TargetOut])
def list_targets(session: ReadSessionDep, principal: CanRead) -> Page[TargetOut]:
    rows = session.scalars(select(BackupTarget).order_by(BackupTarget.name).limit(500))
    return Page[TargetOut](items=[_target_out(t, principal) for t in rows])


def _target(session: Any, ref: str) -> BackupTarget:
    row = session.scalar(select(BackupTarget).where((BackupTarget.id == ref) | (BackupTarget.name == ref)))
    if row is None:
        raise not_found("backup target", ref)
    return row


@router.get("/v1/backup-targets/{target_id}", response_model=TargetOut)
def get_target(target_id: str, response: Response, session: ReadSessionDep, principal: CanRead) -> TargetOut:
    row = _target(session, target_id)
    set_etag(response, row)
    return _target_out(row, principal)


@router.patch("/v1/backup-targets/{target_id}", response_model=TargetOut)
def update_target(
    target_id: str, request: Request, response: Response, ctx: CtxDep, session: SessionDep,
    principal: CanTargets, body: TargetUpdate,
) -> TargetOut:  # fmt: skip
    """Change a target's settings, e.g. new credentials; a credential not sent is kept."""
    row = _target(session, target_id)
    check_if_match(request, row)
    if body.config is not None:
        enc, aad = encryption_for(ctx.settings), vmstore.config_aad(row.id)
        before = enc.open_fields(dict(row.config), aad)
        merged = dict(before)
        for name, value in body.config.items():
            if value is None:
                merged.pop(name, None)
            elif not (is_secret_field(name) and value == MASK):
                merged[name] = value
        if row.type == "local" and merged.get("path") != before.get("path"):
            raise invalid("body.config.path", "a local target's path cannot change")
        _check_target(row.type, merged, row.chunk_size)
        row.config = enc.seal_fields(merged, aad)
    if body.replicate_every_s is not None:
        row.replicate_every_s = body.replicate_every_s
    session.flush()
    set_etag(response, row)
    return _target_out(row, principal)


# ---- backups ---------------------------------------------------------------------------------


@router.post("/v1/backups", status_code=202, response_model=Accepted)
def create_backup(
    request: Request, ctx: CtxDep, session: SessionDep, principal: CanCreate, body: BackupCreate
) -> Any:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    try:
        vm = get_visible(session, VM, body.vm, principal, "vm")
    except DomainError as exc:
        raise invalid("body.vm", f"no VM '{body.vm}' is visible to you", 404) from exc
    target = service.default_target(session, body.target)
    snap, task = service.request_backup(session, vm, target, body.full)
    session.flush()
    return _accepted(ctx, idem, Accepted(task_id=task.id, backup=BackupOut.of(snap), vm_id=vm.id))


@router.get("/v1/backups", response_model=Page[BackupOut])
def list_backups(
    session: ReadSessionDep,
    principal: CanRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "-created_at",
    vm_id: str | None = None,
    vm_name: str | None = None,
    state: str | None = None,
    project_id: str | None = None,
    policy_id: str | None = None,
) -> Page[BackupOut]:
    stmt = scoped(select(BackupSnapshot), BackupSnapshot, principal)
    for col, value in (
        (BackupSnapshot.vm_id, vm_id),
        (BackupSnapshot.vm_name, vm_name),
        (BackupSnapshot.state, state),
        (BackupSnapshot.project_id, project_id),
        (BackupSnapshot.policy_id, policy_id),
    ):
        if value is not None:
            stmt = stmt.where(col == value)
    rows, nxt = paginate(
        session,
        stmt,
        BackupSnapshot,
        ListParams(limit, cursor, sort, ("created_at", "completed_at", "vm_name")),
    )
    return Page[BackupOut](items=[BackupOut.of(r) for r in rows], next_cursor=nxt)


def _visible(session: Any, backup_id: str, principal: Principal) -> BackupSnapshot:
    return get_visible(session, BackupSnapshot, backup_id, principal, "backup")


@router.get("/v1/backups/{backup_id}", response_model=BackupOut)
def get_backup(backup_id: str, response: Response, session: ReadSessionDep, principal: CanRead) -> BackupOut:
    snap = _visible(session, backup_id, principal)
    set_etag(response, snap)
    return BackupOut.of(snap)


@router.delete("/v1/backups/{backup_id}", status_code=204)
def delete_backup(
    backup_id: str, request: Request, ctx: CtxDep, session: SessionDep, principal: CanDelete
) -> Response:
    snap = _visible(session, backup_id, principal)
    check_if_match(request, snap)
    target = session.get(BackupTarget, snap.target_id)
    store = vmstore.server_store(ctx.settings, target) if target is not None else None
    service.delete_snapshot(session, snap, store)
    return Response(status_code=204)


@router.post("/v1/backups/{backup_id}/restore", status_code=202, response_model=Accepted)
def restore_backup(
    backup_id: str,
    request: Request,
    ctx: CtxDep,
    session: SessionDep,
    principal: CanRestore,
    body: RestoreRequest,
) -> Any:
    snap = _visible(session, backup_id, principal)
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    if body.instant and body.new_vm is None:
        raise invalid("body.instant", "an instant restore makes a new VM: give new_vm")
    if body.copy_rate_mib is not None and not body.instant:
        raise invalid("body.copy_rate_mib", "the copy rate applies to an instant restore only")
    if body.image_name is not None:
        job, task, image = service.request_restore_image(session, snap, body.image_name)
        session.flush()
        return _accepted(ctx, idem, Accepted(task_id=task.id, restore_job_id=job.id, image_id=image.id))
    vm = None
    if body.vm is not None:
        try:
            vm = get_visible(session, VM, body.vm, principal, "vm")
        except DomainError as exc:
            raise invalid("body.vm", f"no VM '{body.vm}' is visible to you", 404) from exc
    job, task, target_vm = service.request_restore(
        session, snap, principal, body.new_vm, vm, body.instant, body.copy_rate_mib
    )
    session.flush()
    return _accepted(ctx, idem, Accepted(task_id=task.id, restore_job_id=job.id, vm_id=target_vm.id))


@router.post("/v1/backups/{backup_id}/verify", status_code=202, response_model=Accepted)
def verify_backup(
    backup_id: str, request: Request, ctx: CtxDep, session: SessionDep, principal: CanRestore
) -> Any:
    snap = _visible(session, backup_id, principal)
    idem = Idempotency(request, principal, session, {"verify": snap.id})
    if (replay := idem.replay()) is not None:
        return replay
    task = service.request_verify(session, snap)
    return _accepted(ctx, idem, Accepted(task_id=task.id))


@router.post("/v1/backups/{backup_id}/restore-test", status_code=202, response_model=Accepted)
def restore_test(
    backup_id: str,
    request: Request,
    ctx: CtxDep,
    session: SessionDep,
    principal: CanRestore,
    body: RestoreTestRequest | None = None,
) -> Any:
    snap = _visible(session, backup_id, principal)
    body = body or RestoreTestRequest()
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    task = service.request_restore_test(session, snap, body.marker, principal)
    return _accepted(ctx, idem, Accepted(task_id=task.id, vm_id=task.params["vm_id"]))


def _store_hold(ctx: CtxDep, session: Any, snap: BackupSnapshot, hold: bool, reason: str, who: str) -> None:
    """Mirror the hold into the store, so pruning by the store itself refuses it too."""
    target = session.get(BackupTarget, snap.target_id)
    if target is None or snap.state != "available":
        return
    store = vmstore.server_store(ctx.settings, target)
    if hold:
        store.place_hold(snap.tenant_id, snap.id, "legal", reason, who)
    else:
        with contextlib.suppress(LookupError):
            store.release_hold(snap.tenant_id, snap.id, "legal", who)


@router.post("/v1/backups/{backup_id}/hold", response_model=BackupOut)
def hold_backup(
    backup_id: str, ctx: CtxDep, session: SessionDep, principal: CanHold, body: HoldRequest
) -> BackupOut:
    snap = _visible(session, backup_id, principal)
    _store_hold(ctx, session, snap, True, body.reason, principal.username)
    service.set_hold(snap, True, body.reason, principal)
    session.flush()
    return BackupOut.of(snap)


@router.post("/v1/backups/{backup_id}/release", response_model=BackupOut)
def release_backup(backup_id: str, ctx: CtxDep, session: SessionDep, principal: CanHold) -> BackupOut:
    snap = _visible(session, backup_id, principal)
    _store_hold(ctx, session, snap, False, "", principal.username)
    service.set_hold(snap, False, None, principal)
    session.flush()
    return BackupOut.of(snap)

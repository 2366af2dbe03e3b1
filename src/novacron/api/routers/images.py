"""/v1/images: register an image, then upload its disk (and kernel/initrd) or import it from a URL."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from novacron import events
from novacron.api.concurrency import Idempotency, check_if_match, set_etag
from novacron.api.deps import CtxDep, ReadSessionDep, SessionDep, require
from novacron.api.errors import Problem, invalid, name_taken
from novacron.api.listing import Page
from novacron.api.transport import streamed_body
from novacron.compute import images as image_service
from novacron.compute import storage
from novacron.compute.scope import get_visible, resolve_project, scoped
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import VM, Image
from novacron.identity.encryption import encryption_for
from novacron.identity.principal import Principal
from novacron.netguard import EgressDenied
from novacron.quota import enforce as quota
from novacron.tasks.runner import create_task
from novacron.virt.base import InvalidImage

router = APIRouter(prefix="/v1/images", tags=["images"])

CanImageRead = Annotated[Principal, Depends(require("image:read"))]
CanImageWrite = Annotated[Principal, Depends(require("image:write"))]


class ImageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    project_id: str | None = Field(default=None, max_length=40)
    public: bool = Field(default=False, description="visible to every tenant (administrators only)")
    source_url: AnyHttpUrl | None = Field(default=None, description="import from this URL in a task")
    kernel_cmdline: str = Field(default="", max_length=1024, description="for direct kernel boot")


class ImageUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public: bool | None = None
    kernel_cmdline: str | None = Field(default=None, max_length=1024)


class ImageOut(BaseModel):
    id: str
    name: str
    project_id: str
    status: str
    disk_format: str | None
    size_bytes: int
    virtual_size_bytes: int
    checksum_sha256: str | None
    public: bool
    has_kernel: bool
    has_initrd: bool
    kernel_cmdline: str
    error: str | None
    created_at: datetime
    task_id: str | None = None

    @classmethod
    def of(cls, i: Image, task_id: str | None = None) -> ImageOut:
        return cls(
            id=i.id,
            name=i.name,
            project_id=i.project_id,
            status=i.status,
            disk_format=i.disk_format,
            size_bytes=i.size_bytes,
            virtual_size_bytes=i.virtual_size_bytes,
            checksum_sha256=i.checksum_sha256,
            public=i.public,
            has_kernel=i.has_kernel,
            has_initrd=i.has_initrd,
            kernel_cmdline=i.kernel_cmdline,
            error=i.error,
            created_at=i.created_at,
            task_id=task_id,
        )


def _owned(session: SessionDep, principal: Principal, image_id: str) -> Image:
    """Public images are readable by all but writable only by their owner tenant or an admin."""
    image = get_visible(session, Image, image_id, principal, "image")
    if not principal.sees_tenant(image.tenant_id):
        raise Problem(403, "Forbidden", f"Image '{image.name}' is public but belongs to another tenant.")
    return image


@router.get("", response_model=Page[ImageOut])
def list_images(
    session: ReadSessionDep,
    principal: CanImageRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "created_at",
    name: str | None = None,
    status: str | None = None,
) -> Page[ImageOut]:
    stmt = scoped(select(Image), Image, principal)
    for col, value in ((Image.name, name), (Image.status, status)):
        if value is not None:
            stmt = stmt.where(col == value)
    rows, nxt = paginate(
        session, stmt, Image, ListParams(limit, cursor, sort, ("created_at", "name", "size_bytes"))
    )
    return Page[ImageOut](items=[ImageOut.of(i) for i in rows], next_cursor=nxt)


@router.post("", status_code=201, response_model=ImageOut)
def create_image(
    body: ImageCreate, request: Request, ctx: CtxDep, session: SessionDep, principal: CanImageWrite
) -> Response:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    if body.public and not principal.can("image:publish"):
        raise invalid("body.public", "only administrators publish images", 403)
    project = resolve_project(session, principal, body.project_id)
    if body.source_url is not None:  # before any row, task or request exists
        try:
            image_service.check_source_url(ctx.settings, str(body.source_url))
        except EgressDenied as exc:
            raise invalid("body.source_url", str(exc)) from exc
    if session.scalar(select(Image.id).where(Image.project_id == project.id, Image.name == body.name)):
        raise name_taken("image", body.name, "body.name")
    image = Image(
        id=new_id("img"),
        project_id=project.id,
        tenant_id=project.tenant_id,
        name=body.name,
        public=body.public,
        kernel_cmdline=body.kernel_cmdline,
        status="importing" if body.source_url else "queued",
    )
    session.add(image)
    session.flush()
    events.publish(
        session,
        "image.created",
        "image",
        image.id,
        tenant_id=image.tenant_id,
        project_id=image.project_id,
        name=image.name,
    )
    task_id = None
    if body.source_url is not None:
        task = create_task(
            session,
            image_service.ImportImage,
            "image",
            image.id,
            tenant_id=image.tenant_id,
            project_id=image.project_id,
            params={
                "source_url": encryption_for(ctx.settings).seal_text(
                    str(body.source_url), image_service.source_url_aad(image.id)
                )
            },
        )
        task_id = task.id
        if ctx.tasks is not None:
            ctx.tasks.wake()
    out = ImageOut.of(image, task_id).model_dump(mode="json")
    idem.remember(201, out)
    return JSONResponse(out, status_code=201)


@router.get("/{image_id}", response_model=ImageOut)
def get_image(
    image_id: str, response: Response, session: ReadSessionDep, principal: CanImageRead
) -> ImageOut:
    image = get_visible(session, Image, image_id, principal, "image")
    set_etag(response, image)
    return ImageOut.of(image)


@router.patch("/{image_id}", response_model=ImageOut)
def update_image(
    image_id: str,
    body: ImageUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: CanImageWrite,
) -> ImageOut:
    image = _owned(session, principal, image_id)
    check_if_match(request, image)
    if body.public is not None:
        if not principal.can("image:publish"):
            raise invalid("body.public", "only administrators publish images", 403)
        image.public = body.public
    if body.kernel_cmdline is not None:
        image.kernel_cmdline = body.kernel_cmdline
    session.flush()
    set_etag(response, image)
    return ImageOut.of(image)


@router.put(
    "/{image_id}/{part}",
    response_model=ImageOut,
    openapi_extra={
        "requestBody": {
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            "required": True,
        }
    },
)
@streamed_body
async def upload_part(
    image_id: str,
    part: Literal["file", "kernel", "initrd"],
    request: Request,
    ctx: CtxDep,
    principal: CanImageWrite,
) -> ImageOut:
    """Upload the disk (``file``: raw or qcow2), or a kernel/initrd for direct kernel boot."""

    # database work runs in threads: the event loop must not wait on the SQLite write lock
    def check() -> str:
        with ctx.db.session() as s:
            image = _owned(s, principal, image_id)
            if part == "file" and image.status not in ("queued", "error"):
                raise Problem(409, "Conflict", f"Image '{image.name}' already has its disk ({image.status}).")
            return image.id

    image_id = await run_in_threadpool(check)
    dest = {"file": storage.image_disk, "kernel": storage.image_kernel, "initrd": storage.image_initrd}[part](
        ctx.settings, image_id
    )
    try:
        size, sha = await image_service.write_stream(request.stream(), dest)
    except image_service.ImageTooLarge as exc:
        raise invalid("body", str(exc), 413) from exc
    if size == 0:
        dest.unlink(missing_ok=True)
        raise invalid("body", "empty upload; send the file's bytes as application/octet-stream", 400)
    if part == "file":
        try:
            await run_in_threadpool(image_service.activate_disk, ctx, image_id, size, sha)
        except InvalidImage as exc:
            raise invalid("body", str(exc), 422) from exc

    def finish() -> ImageOut:
        with ctx.db.session() as s:
            image = s.get(Image, image_id)
            assert image is not None
            if part != "file":
                setattr(image, f"has_{part}", True)
            s.flush()
            return ImageOut.of(image)

    return await run_in_threadpool(finish)


@router.delete("/{image_id}", status_code=204)
def delete_image(image_id: str, ctx: CtxDep, session: SessionDep, principal: CanImageWrite) -> Response:
    image = _owned(session, principal, image_id)
    if session.scalar(select(VM.id).where(VM.image_id == image.id).limit(1)):
        raise Problem(409, "Conflict", f"Image '{image.name}' backs existing VMs; delete them first.")
    events.publish(
        session,
        "image.deleted",
        "image",
        image.id,
        tenant_id=image.tenant_id,
        project_id=image.project_id,
        name=image.name,
    )
    session.delete(image)
    quota.release(session, "snapshot", image.id)
    session.flush()
    image_service.remove_files(ctx, image.id)
    return Response(status_code=204)

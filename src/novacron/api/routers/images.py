"""/v1/images: register an image, then upload its disk (and kernel/initrd) or import it from a URL."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import CtxDep, IdempotencyDep, require, service
from novacron.api.listing import Page, list_query
from novacron.api.routers.flavors import Hardware
from novacron.api.transport import streamed_body
from novacron.compute.imagesvc import ImageService, ImageSpec
from novacron.compute.imagesvc import upload_part as store_part
from novacron.db.listing import ListParams
from novacron.db.models import Image
from novacron.identity.principal import Principal

router = APIRouter(prefix="/v1/images", tags=["images"])

CanImageWrite = Annotated[Principal, Depends(require("image:write"))]
ImageReader = Annotated[ImageService, Depends(service(ImageService, "image:read", write=False))]
ImageWriter = Annotated[ImageService, Depends(service(ImageService, "image:write"))]
ImageList = Annotated[ListParams, Depends(list_query(("created_at", "name", "size_bytes")))]


class ImageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    project_id: str | None = Field(default=None, max_length=40)
    public: bool = Field(default=False, description="visible to every tenant (administrators only)")
    source_url: AnyHttpUrl | None = Field(default=None, description="import from this URL in a task")
    kernel_cmdline: str = Field(default="", max_length=1024, description="for direct kernel boot")
    hardware: Hardware = Field(default_factory=Hardware, description="what the guest needs")


class ImageUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public: bool | None = None
    kernel_cmdline: str | None = Field(default=None, max_length=1024)
    hardware: Hardware | None = Field(default=None, description="replaces the image's settings")


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
    hardware: dict[str, Any]
    template: bool = Field(default=False, description="the read-only base of linked clones")
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
            hardware=dict(i.hardware or {}),
            template=i.template,
            error=i.error,
            created_at=i.created_at,
            task_id=task_id,
        )


@router.get("", response_model=Page[ImageOut])
def list_images(
    images: ImageReader, page: ImageList, name: str | None = None, status: str | None = None
) -> Page[ImageOut]:
    rows, nxt = images.list(page, name=name, status=status)
    return Page[ImageOut](items=[ImageOut.of(i) for i in rows], next_cursor=nxt)


@router.post("", status_code=201, response_model=ImageOut)
def create_image(body: ImageCreate, images: ImageWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    source_url = str(body.source_url) if body.source_url is not None else None
    image, task_id = images.create(
        ImageSpec(
            body.name, body.project_id, body.public, source_url, body.kernel_cmdline, body.hardware.settings()
        )
    )
    out = ImageOut.of(image, task_id).model_dump(mode="json")
    idem.remember(201, out)
    return JSONResponse(out, status_code=201)


@router.get("/{image_id}", response_model=ImageOut)
def get_image(image_id: str, response: Response, images: ImageReader) -> ImageOut:
    image = images.get(image_id)
    set_etag(response, image)
    return ImageOut.of(image)


@router.patch("/{image_id}", response_model=ImageOut)
def update_image(
    image_id: str, body: ImageUpdate, request: Request, response: Response, images: ImageWriter
) -> ImageOut:
    image = images.owned(image_id)
    check_if_match(request, image)
    machine = body.hardware.settings() if body.hardware is not None else None
    images.update(image, public=body.public, kernel_cmdline=body.kernel_cmdline, machine=machine)
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
    return ImageOut.of(await store_part(ctx, principal, image_id, part, request.stream()))


@router.delete("/{image_id}", status_code=204)
def delete_image(image_id: str, images: ImageWriter) -> Response:
    images.delete(image_id)
    return Response(status_code=204)

"""Images as an API resource: register, read, publish, delete, and the files a caller may fetch or
upload. The disk's import and validation are ``compute/images.py``'s.

Public images are readable by every tenant but writable only by their owner tenant or an
administrator. Uploads stream to disk outside any request transaction (``upload_part``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio.to_thread
from sqlalchemy import select

from novacron import events
from novacron.compute import hardware, hostops, storage, templates
from novacron.compute import images as imports
from novacron.compute.scope import resolve_project
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import Image
from novacron.db.resolve import resolve, scoped
from novacron.errors import Conflict, FieldError, Forbidden, InvalidInput, MalformedInput, NameTaken, NotFound
from novacron.identity.encryption import encryption_for
from novacron.identity.principal import Principal
from novacron.netguard import EgressDenied
from novacron.quota import enforce as quota
from novacron.service import Service
from novacron.tasks.runner import create_task
from novacron.virt.base import InvalidImage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.orm import Session

    from novacron.context import Context

Part = Literal["file", "kernel", "initrd"]
PATH_OF = {"file": storage.image_disk, "kernel": storage.image_kernel, "initrd": storage.image_initrd}


@dataclass(frozen=True)
class ImageSpec:
    """An image to register, as the caller asked for it (already checked for shape by the API)."""

    name: str
    project_id: str | None = None
    public: bool = False
    #: import from this URL in a task; None: the caller uploads the disk
    source_url: str | None = None
    kernel_cmdline: str = ""
    #: machine, firmware, secure_boot, tpm the guest needs (compute.hardware)
    hardware: dict[str, Any] = field(default_factory=dict)


def _publish_refused() -> Forbidden:
    field = FieldError("public", "only administrators publish images")
    return Forbidden(f"{field.qualified()}: {field.reason}", fields=[field], title="Invalid request")


def _owned(session: Session, principal: Principal, ref: str) -> Image:
    """Public images are readable by all but writable only by their owner tenant or an admin."""
    image = resolve(session, principal, Image, ref)
    if not principal.sees_tenant(image.tenant_id):
        raise Forbidden(f"Image '{image.name}' is public but belongs to another tenant.")
    return image


class ImageService(Service):
    """Register, read, change and delete images; the import task of one registered from a URL."""

    def list(
        self, params: ListParams, *, name: str | None = None, status: str | None = None
    ) -> tuple[list[Image], str | None]:
        """One page of the images the caller sees (its tenant's and the public ones)."""
        stmt = scoped(select(Image), Image, self.principal)
        stmt = where_equal(stmt, (Image.name, name), (Image.status, status))
        return paginate(self.session, stmt, Image, params)

    def get(self, ref: str) -> Image:
        """The image of this id or name, among those the caller sees."""
        return resolve(self.session, self.principal, Image, ref)

    def owned(self, ref: str) -> Image:
        """The image of this id or name, which the caller may change."""
        return _owned(self.session, self.principal, ref)

    def create(self, spec: ImageSpec) -> tuple[Image, str | None]:
        """A new image (queued for its upload), and the id of its import task when from a URL."""
        if spec.public and not self.principal.can("image:publish"):
            raise _publish_refused()
        project = resolve_project(self.session, self.principal, spec.project_id)
        if spec.source_url is not None:  # before any row, task or request exists
            try:
                imports.check_source_url(self.ctx.settings, spec.source_url)
            except EgressDenied as exc:
                raise InvalidInput("source_url", str(exc)) from exc
        if self.session.scalar(
            select(Image.id).where(Image.project_id == project.id, Image.name == spec.name)
        ):
            raise NameTaken("image", spec.name, "name")
        machine = hardware.validated(spec.hardware)
        image = Image(
            id=new_id("img"),
            project_id=project.id,
            tenant_id=project.tenant_id,
            name=spec.name,
            public=spec.public,
            kernel_cmdline=spec.kernel_cmdline,
            hardware=machine,
            status="importing" if spec.source_url else "queued",
        )
        self.session.add(image)
        self.session.flush()
        self._publish("image.created", image)
        task_id = self._import(image, spec.source_url) if spec.source_url is not None else None
        return image, task_id

    def _import(self, image: Image, source_url: str) -> str:
        """Queue the task that downloads the image; its URL is sealed (it may carry credentials)."""
        sealed = encryption_for(self.ctx.settings).seal_text(source_url, imports.source_url_aad(image.id))
        task = create_task(
            self.session,
            imports.ImportImage,
            "image",
            image.id,
            tenant_id=image.tenant_id,
            project_id=image.project_id,
            params={"source_url": sealed},
        )
        if self.ctx.tasks is not None:
            self.ctx.tasks.wake()
        return task.id

    def update(
        self,
        image: Image,
        *,
        public: bool | None = None,
        kernel_cmdline: str | None = None,
        machine: dict[str, Any] | None = None,
    ) -> Image:
        """Publish or withdraw (administrators), change the kernel command line or the hardware the
        guest needs (VMs made from it keep theirs)."""
        if kernel_cmdline is not None and kernel_cmdline != image.kernel_cmdline:
            templates.check_mutable(image, "kernel_cmdline")
        if machine is not None:
            templates.check_mutable(image, "hardware")
        if public is not None:
            if not self.principal.can("image:publish"):
                raise _publish_refused()
            image.public = public
        if kernel_cmdline is not None:
            image.kernel_cmdline = kernel_cmdline
        if machine is not None:
            image.hardware = hardware.validated(machine)
        self.session.flush()
        return image

    def delete(self, ref: str) -> None:
        """Delete an image no VM uses, with its files and the quota it holds (a snapshot's)."""
        image = self.owned(ref)
        templates.check_unused(self.session, image, "delete")
        self._publish("image.deleted", image)
        self.session.delete(image)
        quota.release(self.session, "snapshot", image.id)
        self.session.flush()
        imports.remove_files(self.ctx, image.id)

    def part_file(self, ref: str, part: Part) -> Path:
        """The file of an image's part: agents fetch what their VMs need; tenants their own."""
        if self.principal.kind == "node":
            # a host's agent reads the images of its own VMs only; any other looks unknown
            image = self.session.get(Image, ref)
            if image is None or not hostops.host_needs_image(self.session, self.principal.user_id, image):
                raise NotFound("image", ref)
        else:
            image = self.get(ref)
        path = PATH_OF[part](self.ctx.settings, image.id)
        if not path.exists():
            raise NotFound("image", image.name, detail=f"Image '{image.name}' has no {part} uploaded.")
        return path

    def _publish(self, kind: str, image: Image) -> None:
        events.publish(
            self.session,
            kind,
            "image",
            image.id,
            tenant_id=image.tenant_id,
            project_id=image.project_id,
            name=image.name,
        )


def _writable_part(ctx: Context, principal: Principal, ref: str, part: Part) -> str:
    with ctx.db.session() as s:
        image = _owned(s, principal, ref)
        if part != "file":
            templates.check_mutable(image, "part", part="path")
        if part == "file" and image.status not in ("queued", "error"):
            raise Conflict(f"Image '{image.name}' already has its disk ({image.status}).")
        return image.id


def _mark_part(ctx: Context, image_id: str, part: Part) -> Image:
    with ctx.db.session() as s:
        image = s.get(Image, image_id)
        assert image is not None
        if part != "file":
            setattr(image, f"has_{part}", True)
        s.flush()
        return image


async def upload_part(
    ctx: Context, principal: Principal, ref: str, part: Part, chunks: AsyncIterator[bytes]
) -> Image:
    """Store an uploaded disk (``file``: raw or qcow2, then validated and activated), kernel or
    initrd. Database work runs in threads, each its own transaction: the event loop must not wait
    on the SQLite write lock, and none is held while the bytes stream in."""
    image_id = await anyio.to_thread.run_sync(_writable_part, ctx, principal, ref, part)
    dest = PATH_OF[part](ctx.settings, image_id)
    size, sha = await imports.receive_upload(chunks, dest)
    if size == 0:
        dest.unlink(missing_ok=True)
        raise MalformedInput(
            "body", "empty upload; send the file's bytes as application/octet-stream", part=""
        )
    if part == "file":
        try:
            await anyio.to_thread.run_sync(imports.activate_disk, ctx, image_id, size, sha)
        except InvalidImage as exc:
            raise InvalidInput("body", str(exc), part="") from exc
    return await anyio.to_thread.run_sync(_mark_part, ctx, image_id, part)

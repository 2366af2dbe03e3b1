"""Image import: the disk is written beside its row, checked with ``qemu-img info``, then activated."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import httpx

from novacron import events, netguard
from novacron.compute import storage
from novacron.db.models import Image, Task
from novacron.errors import FieldError, TooLarge
from novacron.identity.encryption import encryption_for
from novacron.tasks.runner import StepFailed, TaskHandler
from novacron.virt.base import ImageInfo, InvalidImage
from novacron.virt.images import inspect_image

if TYPE_CHECKING:
    from novacron.config import Settings
    from novacron.context import Context

log = logging.getLogger(__name__)
ACCEPTED_FORMATS = ("raw", "qcow2")
MAX_IMAGE_BYTES = 64 * 2**30


class ImageTooLarge(Exception):
    """A download or upload passed ``MAX_IMAGE_BYTES``; its text says by how much."""


async def write_stream(
    chunks: AsyncIterator[bytes], dest: Path, on_progress: object = None
) -> tuple[int, str]:
    """Write to ``dest`` through a temp file renamed at the end, so a half upload never looks whole."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    digest = hashlib.sha256()
    size = 0
    try:
        with tmp.open("wb") as f:
            async for chunk in chunks:
                size += len(chunk)
                if size > MAX_IMAGE_BYTES:
                    raise ImageTooLarge(f"larger than {MAX_IMAGE_BYTES // 2**30} GiB")
                digest.update(chunk)
                f.write(chunk)
                if callable(on_progress):
                    on_progress(size)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return size, digest.hexdigest()


async def receive_upload(chunks: AsyncIterator[bytes], dest: Path) -> tuple[int, str]:
    """``write_stream`` of a client's upload, whose excess is the client's error (413 on ``body``)."""
    try:
        return await write_stream(chunks, dest)
    except ImageTooLarge as exc:
        field = FieldError("body", str(exc), part="")
        raise TooLarge(f"body: {exc}", fields=[field], title="Invalid request") from exc


def check_source_url(settings: Settings, url: str) -> None:
    """Refuse (netguard.EgressDenied, saying why) a URL the platform must not fetch, before any request."""
    netguard.check_url(url, netguard.EgressPolicy.from_settings(settings))


def activate_disk(ctx: Context, image_id: str, size: int, sha256: str) -> ImageInfo:
    """Validate the stored disk (``qemu-img info``) and mark the image active; an invalid file is removed."""
    path = storage.image_disk(ctx.settings, image_id)
    try:
        info = inspect_image(path)
    except InvalidImage:
        path.unlink(missing_ok=True)
        raise
    with ctx.db.session() as s:
        image = s.get(Image, image_id)
        assert image is not None
        image.disk_format = info.format
        image.virtual_size_bytes = info.virtual_size_bytes
        image.size_bytes = size
        image.checksum_sha256 = sha256
        image.status = "active"
        image.error = None
        events.publish(
            s, "image.active", "image", image.id, tenant_id=image.tenant_id, project_id=image.project_id
        )
    return info


def describe_derived(settings: Settings, image: Image, info: ImageInfo, source: Image | None) -> None:
    """An image made from a VM's disk (snapshot, restore): its disk figures, and the kernel, initrd
    and command line of the image the VM booted from, so it boots the same way."""
    image.disk_format = info.format
    image.virtual_size_bytes = info.virtual_size_bytes
    image.size_bytes = info.actual_size_bytes
    if source is None:
        return
    for flag, path_of in (("has_kernel", storage.image_kernel), ("has_initrd", storage.image_initrd)):
        if getattr(source, flag):
            shutil.copyfile(path_of(settings, source.id), path_of(settings, image.id))
            setattr(image, flag, True)
    image.kernel_cmdline = source.kernel_cmdline


def remove_files(ctx: Context, image_id: str) -> None:
    shutil.rmtree(storage.image_dir(ctx.settings, image_id), ignore_errors=True)


def source_url_aad(image_id: str) -> str:
    """What an image import's sealed source URL is bound to."""
    return f"tasks.params.source_url:{image_id}"


class ImportImage(TaskHandler):
    """Download an image from a URL with progress, then validate it."""

    kind = "image.import"
    steps: ClassVar[list[str]] = ["download", "validate"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        image_id = task.resource_id
        dest = storage.image_disk(ctx.settings, image_id)
        if step == "download":
            # sealed in the task row: a URL may carry credentials (user:password@, a signed query)
            url = encryption_for(ctx.settings).open_text(task.params["source_url"], source_url_aad(image_id))
            await self._download(ctx, task, url, dest)
        else:
            try:
                await asyncio.to_thread(
                    activate_disk, ctx, image_id, task.params["size"], task.params["sha256"]
                )
            except InvalidImage as exc:
                raise StepFailed(str(exc)) from exc

    async def _download(self, ctx: Context, task: Task, url: str, dest: Path) -> None:
        def progress(done: int, total: int) -> None:
            with ctx.db.session() as s:
                row = s.get(Task, task.id)
                if row is not None and total:
                    row.progress = min(49, int(50 * done / total))

        policy = netguard.EgressPolicy.from_settings(ctx.settings)
        try:
            async with netguard.request("GET", url, policy, timeout=60) as r:
                if r.status_code != 200:
                    raise StepFailed(f"GET {netguard.safe_url(url)} answered HTTP {r.status_code}.")
                total = int(r.headers.get("content-length", "0") or 0)
                marks = {"last": 0}

                def on_progress(done: int) -> None:
                    if done - marks["last"] >= 8 * 2**20:
                        marks["last"] = done
                        progress(done, total)

                size, sha = await write_stream(r.aiter_bytes(), dest, on_progress)
        except (netguard.EgressDenied, netguard.FetchFailed, httpx.HTTPError) as exc:
            # one message for a refused target, a closed port, a silent one and a broken read:
            # the task's error must not make the platform a port scanner (details: server log)
            shown = netguard.safe_url(url)  # the URL is sealed at rest: no credential in the error
            log.warning("image %s: download from %s failed: %r", task.resource_id, shown, exc)
            raise StepFailed(f"Could not download from the URL {shown}.") from exc
        except ImageTooLarge as exc:
            raise StepFailed(f"The image at {netguard.safe_url(url)} is {exc}.") from exc
        with ctx.db.session() as s:
            row = s.get(Task, task.id)
            assert row is not None
            row.params = {**row.params, "size": size, "sha256": sha}
            task.params = row.params

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        remove_files(ctx, task.resource_id)
        with ctx.db.session() as s:
            image = s.get(Image, task.resource_id)
            if image is not None:
                image.status = "error"
                image.error = error

"""``novacron image ...``: import disk images (from a local file or a URL), list, show, delete."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from novacron.cli.client import ApiError, Client, CliError, resolve
from novacron.cli.common import (
    CURSOR,
    FIRMWARE,
    JSON,
    LIMIT,
    MACHINE,
    SECURE_BOOT,
    TPM,
    client_of,
    create_in_project,
    hardware_body,
)
from novacron.cli.output import Column, ago, err, human_size, info, print_detail, print_json, print_list
from novacron.cli.watch import watch_task

app = typer.Typer(no_args_is_help=True)
CHUNK = 1 << 20

IMAGE_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("STATUS", "status"),
    ("FORMAT", "disk_format"),
    ("SIZE", lambda i: human_size(i.get("size_bytes"))),
    ("VIRTUAL", lambda i: human_size(i.get("virtual_size_bytes"))),
    ("PUBLIC", "public"),
    ("KERNEL", "has_kernel"),
    ("CREATED", lambda i: ago(i.get("created_at"))),
]


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def file_chunks(path: Path, on_chunk: Callable[[int], None], chunk_size: int = CHUNK) -> Iterator[bytes]:
    """Stream a file in chunks (never the whole file in memory), reporting each chunk's size."""
    with path.open("rb") as f:
        while chunk := f.read(chunk_size):
            on_chunk(len(chunk))
            yield chunk


def upload(
    client: Client, image_id: str, part: str, path: Path, progress: Progress, bar: TaskID
) -> dict[str, Any]:
    """PUT one file as application/octet-stream with a progress bar over the bytes sent."""
    size = path.stat().st_size

    def body() -> Iterator[bytes]:
        progress.reset(bar, total=size)
        return file_chunks(path, lambda n: progress.advance(bar, n))

    r = client.send(
        "PUT",
        f"/v1/images/{image_id}/{part}",
        content=body,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        timeout=httpx.Timeout(60.0, read=600.0),
    )
    result: dict[str, Any] = r.json()
    return result


def _check_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise CliError(f"{what} {path} does not exist")
    if not path.is_file():
        raise CliError(f"{what} {path} is not a regular file")
    if path.stat().st_size == 0:
        raise CliError(f"{what} {path} is empty")
    return path


def _import_file(
    client: Client,
    path: Path,
    body: dict[str, Any],
    project: str | None,
    kernel: Path | None,
    initrd: Path | None,
    quiet: bool,
) -> dict[str, Any]:
    parts = [("file", path)] + [(p, f) for p, f in (("kernel", kernel), ("initrd", initrd)) if f is not None]
    image: dict[str, Any] = create_in_project(client, "/v1/images", body, project)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
    )
    try:
        with progress:
            for part, file in parts:
                bar = progress.add_task(f"{part:6} {file.name}", total=file.stat().st_size)
                image = upload(client, image["id"], part, file, progress, bar)
    except (CliError, KeyboardInterrupt) as exc:
        with contextlib.suppress(CliError):
            client.delete(f"/v1/images/{image['id']}")
        if isinstance(exc, ApiError):
            exc.hint = (exc.hint + " " if exc.hint else "") + (
                f"The image '{body['name']}' was not imported (its record was removed). "
                "Accepted disk formats: raw or qcow2."
            )
            raise
        if isinstance(exc, KeyboardInterrupt):
            raise CliError("import interrupted; the partial image was removed", exit_code=130) from None
        raise
    return image


@app.command("import")
def import_image(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="a local raw/qcow2 disk file, or an http(s) URL to import from"),
    name: str = typer.Option(..., "--name", "-n", help="image name"),
    kernel: Path | None = typer.Option(None, "--kernel", help="kernel for direct kernel boot"),
    initrd: Path | None = typer.Option(None, "--initrd", help="initrd for direct kernel boot"),
    cmdline: str = typer.Option("", "--cmdline", help="kernel command line for direct kernel boot"),
    public: bool = typer.Option(False, "--public", help="visible to every tenant (administrators only)"),
    project: str | None = typer.Option(None, "--project", help="project name or id (default: your project)"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="URL: wait for the import task to finish"),
    machine: str | None = MACHINE,
    firmware: str | None = FIRMWARE,
    secure_boot: bool | None = SECURE_BOOT,
    tpm: bool | None = TPM,
    as_json: bool = JSON,
) -> None:
    """Import an image: upload a local file (with a progress bar), or have the server fetch a URL."""
    client = client_of(ctx)
    body: dict[str, Any] = {"name": name, "public": public, "kernel_cmdline": cmdline}
    if hardware := hardware_body(machine, firmware, secure_boot, tpm):
        body["hardware"] = hardware
    if is_url(source):
        if kernel or initrd:
            raise CliError(
                "--kernel and --initrd need a local disk file, not a URL",
                hint="Import the URL, then upload them with the API (PUT /v1/images/{id}/kernel).",
            )
        body["source_url"] = source
        image: dict[str, Any] = create_in_project(client, "/v1/images", body, project)
        if wait and image.get("task_id"):
            watch_task(client, image["task_id"], label=f"import {name}", show=not as_json)
            image = client.get(f"/v1/images/{image['id']}")
        elif not as_json:
            task_id = image.get("task_id")
            info(f"import accepted as task {task_id}: novacron task watch {task_id}")
    else:
        path = _check_file(Path(source).expanduser(), "image file")
        kernel = _check_file(kernel, "kernel") if kernel else None
        initrd = _check_file(initrd, "initrd") if initrd else None
        image = _import_file(client, path, body, project, kernel, initrd, quiet=as_json)
    if as_json:
        print_json(image)
    else:
        print_detail(image, as_json=False)


@app.command("list")
def list_images(
    ctx: typer.Context,
    name: str | None = typer.Option(None, "--name"),
    status: str | None = typer.Option(None, "--status"),
    limit: int | None = LIMIT,
    cursor: str | None = CURSOR,
    as_json: bool = JSON,
) -> None:
    """List images."""
    page = client_of(ctx).list_all("/v1/images", limit=limit, cursor=cursor, name=name, status=status)
    print_list(page, IMAGE_COLUMNS, as_json=as_json, empty="No images.")


@app.command()
def show(
    ctx: typer.Context, image: str = typer.Argument(..., help="image name or id"), as_json: bool = JSON
) -> None:
    """Show one image."""
    print_detail(resolve(client_of(ctx), "images", image, "image"), as_json=as_json)


@app.command()
def delete(ctx: typer.Context, image: str = typer.Argument(..., help="image name or id")) -> None:
    """Delete an image (refused while VMs use it)."""
    client = client_of(ctx)
    found = resolve(client, "images", image, "image")
    client.delete(f"/v1/images/{found['id']}")
    info(f"[green]Image {found['name']} ({found['id']}) deleted.[/]")

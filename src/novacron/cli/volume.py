"""``novacron volume ...``: block storage volumes (and ``volume snapshot ...``). Every command
takes a volume name or id; I/O limits are ``--limit KEY=VALUE`` (``iops_total=100``)."""

from __future__ import annotations

import uuid
from typing import Any

import typer

from novacron.cli import volume_backup, volume_snapshot
from novacron.cli.client import CliError, resolve
from novacron.cli.common import (
    CURSOR,
    JSON,
    LIMIT,
    client_of,
    create_in_project,
    key_values,
    post_idempotent,
    resolve_vm,
)
from novacron.cli.output import Column, ago, gib, info, print_detail, print_list
from novacron.cli.watch import follow_accepted

app = typer.Typer(no_args_is_help=True)
app.add_typer(volume_snapshot.app, name="snapshot", help="Volume snapshots: create, list, delete.")
app.command("backup")(volume_backup.backup)
app.command("restore")(volume_backup.restore)

COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("SIZE", lambda v: gib(v.get("size_gb"))),
    ("POOL", "pool"),
    ("STATUS", "status"),
    ("VM", "vm_id"),
    ("LIMITS", lambda v: limits_text(v.get("io_limits") or {})),
    ("CREATED", lambda v: ago(v.get("created_at"))),
]
FIELDS: list[Column] = [
    ("name", "name"),
    ("id", "id"),
    ("size_gb", "size_gb"),
    ("status", "status"),
    ("error", "error"),
    ("vm_id", "vm_id"),
    ("boot", "boot"),
    ("io_limits", lambda v: limits_text(v.get("io_limits") or {})),
    ("pool", "pool"),
    ("source_image_id", "source_image_id"),
    ("source_snapshot_id", "source_snapshot_id"),
    ("source_volume_id", "source_volume_id"),
    ("project_id", "project_id"),
    ("tenant_id", "tenant_id"),
    ("created_at", "created_at"),
    ("updated_at", "updated_at"),
]
VOLUME_ARG = typer.Argument(..., help="volume name or id")
WAIT = typer.Option(True, "--wait/--no-wait", help="wait for the task to finish (default) or return at once")
TIMEOUT = typer.Option(None, "--wait-timeout", help="give up waiting after this many seconds")
LIMITS = typer.Option(
    [],
    "--limit",
    help="I/O limit KEY=VALUE, repeatable: iops_total, iops_read, iops_write, bps_total, bps_read, "
    "bps_write, iops_total_max (burst), iops_total_max_length (s), bps_total_max, bps_total_max_length",
)


def limits_text(limits: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(limits.items())) or "-"


def parse_limits(items: list[str]) -> dict[str, int]:
    """``--limit`` options as the API's ``io_limits`` (``iops-total`` is ``iops_total`` too)."""
    out: dict[str, int] = {}
    for key, value in key_values(items, "--limit").items():
        try:
            out[key.replace("-", "_")] = int(value)
        except ValueError:
            raise CliError(f"--limit {key}={value}: the value must be a whole number") from None
    return out


def _volume(ctx: typer.Context, ref: str) -> dict[str, Any]:
    return dict(resolve(client_of(ctx), "volumes", ref, "volume"))


def _finish(
    ctx: typer.Context, accepted: dict[str, Any], label: str, wait: bool, as_json: bool, timeout: float | None
) -> None:
    """After a 202: print the acceptance, or follow the task with a progress bar and show the volume."""
    client = client_of(ctx)
    if not follow_accepted(client, accepted, label, wait=wait, as_json=as_json, timeout_s=timeout):
        return
    print_detail(client.get(f"/v1/volumes/{accepted['volume']['id']}"), as_json=as_json, fields=FIELDS)


@app.command("list")
def list_volumes(
    ctx: typer.Context,
    vm: str | None = typer.Option(None, "--vm", help="only the volumes attached to this VM"),
    status: str | None = typer.Option(None, "--status", help="only volumes in this status"),
    limit: int | None = LIMIT,
    cursor: str | None = CURSOR,
    as_json: bool = JSON,
) -> None:
    """List volumes."""
    vm_id = resolve_vm(ctx, vm)["id"] if vm else None
    page = client_of(ctx).list_all("/v1/volumes", limit=limit, cursor=cursor, vm_id=vm_id, status=status)
    print_list(page, COLUMNS, as_json=as_json, empty="No volumes.")


@app.command()
def show(ctx: typer.Context, volume: str = VOLUME_ARG, as_json: bool = JSON) -> None:
    """Show one volume."""
    print_detail(_volume(ctx, volume), as_json=as_json, fields=FIELDS)


@app.command()
def create(  # noqa: PLR0913 (the command's options)
    ctx: typer.Context,
    name: str = typer.Option(..., "--name", "-n", help="unique in the project"),
    size_gb: int | None = typer.Option(None, "--size", "-s", min=1, help="GiB (default: the image's size)"),
    image: str | None = typer.Option(None, "--image", "-i", help="copy this image (name or id)"),
    snapshot: str | None = typer.Option(None, "--snapshot", help="copy this volume snapshot (name or id)"),
    source: str | None = typer.Option(None, "--from-volume", help="clone this volume (name or id)"),
    limit: list[str] = LIMITS,
    project: str | None = typer.Option(None, "--project", help="project name or id (default: your project)"),
    pool: str | None = typer.Option(
        None, "--pool", help="storage pool: file or rbd (Ceph); default: the source's pool, else file"
    ),
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Create a volume: blank (--size), or a copy of an image, a volume snapshot or a volume (a clone);
    by default wait until it is available."""
    body: dict[str, Any] = {"name": name}
    if pool is not None:
        body["pool"] = pool
    if size_gb is not None:
        body["size_gb"] = size_gb
    for key, value in (("image", image), ("snapshot", snapshot), ("source_volume", source)):
        if value is not None:
            body[key] = value
    if limit:
        body["io_limits"] = parse_limits(limit)
    accepted = create_in_project(client_of(ctx), "/v1/volumes", body, project, idempotent=True)
    _finish(ctx, accepted, f"create {name}", wait, as_json, wait_timeout)


@app.command()
def attach(
    ctx: typer.Context,
    volume: str = VOLUME_ARG,
    vm: str = typer.Argument(
        ..., help="VM name or id: hot-plugged when it runs, at its next start if stopped"
    ),
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Attach a volume to a VM of its project."""
    v, target = _volume(ctx, volume), resolve_vm(ctx, vm)
    accepted = post_idempotent(client_of(ctx), f"/v1/volumes/{v['id']}/attach", {"vm": target["id"]})
    _finish(ctx, accepted, f"attach {v['name']} to {target['name']}", wait, as_json, wait_timeout)


@app.command()
def detach(
    ctx: typer.Context,
    volume: str = VOLUME_ARG,
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Detach a volume from its VM (a running guest must release the disk)."""
    v = _volume(ctx, volume)
    accepted = post_idempotent(client_of(ctx), f"/v1/volumes/{v['id']}/detach", {})
    _finish(ctx, accepted, f"detach {v['name']}", wait, as_json, wait_timeout)


@app.command()
def extend(
    ctx: typer.Context,
    volume: str = VOLUME_ARG,
    size_gb: int = typer.Option(..., "--size", "-s", min=1, help="the new size in GiB"),
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Grow a volume (online when its VM runs: the guest sees the new size)."""
    v = _volume(ctx, volume)
    accepted = post_idempotent(client_of(ctx), f"/v1/volumes/{v['id']}/extend", {"size_gb": size_gb})
    _finish(ctx, accepted, f"extend {v['name']}", wait, as_json, wait_timeout)


@app.command()
def limits(
    ctx: typer.Context,
    volume: str = VOLUME_ARG,
    limit: list[str] = LIMITS,
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Replace a volume's I/O limits (none given: unlimited); a running guest has them at once."""
    v = _volume(ctx, volume)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    path = f"/v1/volumes/{v['id']}/limits"
    accepted = client_of(ctx).send("PUT", path, json_body=parse_limits(limit), headers=key).json()
    _finish(ctx, accepted, f"limit {v['name']}", wait, as_json, wait_timeout)


@app.command()
def delete(ctx: typer.Context, volume: str = VOLUME_ARG) -> None:
    """Delete a volume that no VM has attached."""
    v = _volume(ctx, volume)
    client_of(ctx).delete(f"/v1/volumes/{v['id']}")
    info(f"Deleted volume {v['name']}.")

"""``novacron volume snapshot ...``: points in time of a volume (attached or not); a new volume is
made from one with ``novacron volume create --snapshot NAME``."""

from __future__ import annotations

from typing import Any

import typer

from novacron.cli.client import resolve
from novacron.cli.common import CURSOR, JSON, LIMIT, client_of, post_idempotent
from novacron.cli.output import Column, ago, info, print_detail, print_json, print_list
from novacron.cli.watch import watch_task

app = typer.Typer(no_args_is_help=True)

COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("VOLUME", "volume_id"),
    ("SIZE GB", "size_gb"),
    ("STATUS", "status"),
    ("CREATED", lambda v: ago(v.get("created_at"))),
]
FIELDS: list[Column] = [
    (k, k)
    for k in (
        "name",
        "id",
        "volume_id",
        "size_gb",
        "status",
        "error",
        "project_id",
        "created_at",
        "updated_at",
    )
]
WAIT = typer.Option(True, "--wait/--no-wait", help="wait for the task to finish (default) or return at once")


def _follow(ctx: typer.Context, accepted: dict[str, Any], label: str, wait: bool, as_json: bool) -> None:
    if not wait:
        if as_json:
            print_json(accepted)
        else:
            info(f"{label}: accepted as task {accepted['task_id']}")
        return
    watch_task(client_of(ctx), accepted["task_id"], label=label, show=not as_json)


@app.command("list")
def list_snapshots(
    ctx: typer.Context,
    volume: str | None = typer.Option(None, "--volume", help="only the snapshots of this volume"),
    limit: int | None = LIMIT,
    cursor: str | None = CURSOR,
    as_json: bool = JSON,
) -> None:
    """List volume snapshots."""
    client = client_of(ctx)
    volume_id = resolve(client, "volumes", volume, "volume")["id"] if volume else None
    page = client.list_all("/v1/volume-snapshots", limit=limit, cursor=cursor, volume_id=volume_id)
    print_list(page, COLUMNS, as_json=as_json, empty="No volume snapshots.")


@app.command()
def create(
    ctx: typer.Context,
    volume: str = typer.Argument(..., help="volume name or id"),
    name: str = typer.Option(..., "--name", "-n", help="unique in the project"),
    wait: bool = WAIT,
    as_json: bool = JSON,
) -> None:
    """Snapshot a volume (live when a guest runs it); by default wait until it is available."""
    accepted = post_idempotent(client_of(ctx), "/v1/volume-snapshots", {"volume": volume, "name": name})
    _follow(ctx, accepted, f"snapshot {volume}", wait, as_json)
    if wait:
        snap = client_of(ctx).get(f"/v1/volume-snapshots/{accepted['snapshot']['id']}")
        print_detail(snap, as_json=as_json, fields=FIELDS)


@app.command()
def delete(
    ctx: typer.Context,
    snapshot: str = typer.Argument(..., help="snapshot name or id"),
    wait: bool = WAIT,
) -> None:
    """Delete a volume snapshot."""
    snap = resolve(client_of(ctx), "volume-snapshots", snapshot, "volume snapshot")
    client = client_of(ctx)
    accepted = client.send(
        "DELETE", f"/v1/volume-snapshots/{snap['id']}", headers={"Idempotency-Key": f"del-{snap['id']}"}
    ).json()
    _follow(ctx, accepted, f"delete {snap['name']}", wait, False)
    if wait:
        info(f"Deleted volume snapshot {snap['name']}.")

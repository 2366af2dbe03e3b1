"""``novacron volume backup|restore``: a detached volume backed up on its own, and such a backup
restored as a new volume (a volume attached to a VM is backed up with it: ``novacron backup create``)."""

from __future__ import annotations

from typing import Any

import typer

from novacron.cli.client import resolve
from novacron.cli.common import JSON, client_of, post_idempotent
from novacron.cli.output import Column, print_detail
from novacron.cli.watch import follow_accepted

BACKUP_FIELDS: list[Column] = [
    ("id", "id"),
    ("volume", "vm_name"),
    ("state", "state"),
    ("mode", "mode"),
    ("reason", "reason"),
    ("size_bytes", "size_bytes"),
    ("bytes_read", "bytes_read"),
    ("parent_id", "parent_id"),
    ("target_id", "target_id"),
]
WAIT = typer.Option(True, "--wait/--no-wait", help="wait for the task to finish (default) or return at once")
TIMEOUT = typer.Option(None, "--wait-timeout", help="give up waiting after this many seconds")


def backup(
    ctx: typer.Context,
    volume: str = typer.Argument(..., help="a detached volume's name or id"),
    target: str | None = typer.Option(None, "--target", "-t", help="backup target (default: the only one)"),
    full: bool = typer.Option(False, "--full", help="read the whole volume even when changes are tracked"),
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Back a detached volume up on its own (incremental from its previous backup when it can)."""
    client = client_of(ctx)
    v = resolve(client, "volumes", volume, "volume")
    body: dict[str, Any] = {"volume": v["id"], "full": full}
    if target:
        body["target"] = target
    accepted = post_idempotent(client, "/v1/backups", body)
    if follow_accepted(
        client, accepted, f"backup {v['name']}", wait=wait, as_json=as_json, timeout_s=wait_timeout
    ):
        print_detail(
            client.get(f"/v1/backups/{accepted['backup']['id']}"), as_json=as_json, fields=BACKUP_FIELDS
        )


def restore(
    ctx: typer.Context,
    backup_id: str = typer.Argument(..., help="the volume's backup (id)"),
    name: str = typer.Argument(..., help="the new volume's name"),
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Restore a volume's backup as a new volume of its project."""
    client = client_of(ctx)
    accepted = post_idempotent(client, f"/v1/backups/{backup_id}/restore", {"new_volume": name})
    if follow_accepted(
        client, accepted, f"restore {name}", wait=wait, as_json=as_json, timeout_s=wait_timeout
    ):
        from novacron.cli.volume import FIELDS  # the volume's own fields, as `volume show` prints them

        print_detail(client.get(f"/v1/volumes/{accepted['volume_id']}"), as_json=as_json, fields=FIELDS)

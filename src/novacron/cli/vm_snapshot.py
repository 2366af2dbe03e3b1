"""``novacron vm snapshot-create/snapshot-list/snapshot-revert/snapshot-delete``: live VM snapshots.

Registered on the ``vm`` sub-app (``novacron vm snapshot`` still saves a stopped VM's disk as an
image). The listing draws the VM's snapshot tree, the current one marked.
"""

from __future__ import annotations

import uuid
from typing import Any

import typer

from novacron.cli.common import JSON, client_of, post_idempotent, resolve_vm
from novacron.cli.output import info, print_detail, print_json
from novacron.cli.vm import app
from novacron.cli.watch import follow_accepted

VM_ARG = typer.Argument(..., help="VM name or id")
SNAP_ARG = typer.Argument(..., help="snapshot name or id")
WAIT = typer.Option(True, "--wait/--no-wait", help="wait for the task to finish (default) or return at once")
TIMEOUT = typer.Option(None, "--wait-timeout", help="give up waiting after this many seconds")
FIELDS = [
    (name, name)
    for name in ("name", "id", "status", "current", "parent_id", "consistency", "memory", "vm_state_bytes",
                 "error", "description", "created_at")
]  # fmt: skip


def _base(ctx: typer.Context, vm: str) -> str:
    return f"/v1/vms/{resolve_vm(ctx, vm)['id']}/snapshots"


def _finish(  # noqa: PLR0913 (the command's options, passed on)
    ctx: typer.Context,
    accepted: dict[str, Any],
    label: str,
    wait: bool,
    as_json: bool,
    timeout: float | None,
    base: str,
    gone: bool = False,
) -> None:
    """After a 202: print the acceptance, or follow the task with its progress and show the result."""
    client = client_of(ctx)
    if not follow_accepted(client, accepted, label, wait=wait, as_json=as_json, timeout_s=timeout):
        return
    if gone:
        info(f"[green]{label}: done.[/]") if not as_json else print_json(
            {"deleted": accepted["snapshot"]["id"]}
        )
        return
    print_detail(client.get(f"{base}/{accepted['snapshot']['id']}"), as_json=as_json, fields=FIELDS)


@app.command("snapshot-create")
def snapshot_create(  # noqa: PLR0913 (the snapshot's options)
    ctx: typer.Context,
    vm: str = VM_ARG,
    name: str = typer.Argument(..., help="the snapshot's name (unique on the VM)"),
    memory: bool = typer.Option(False, "--memory", help="include the guest's RAM (a revert resumes it)"),
    quiesce: bool = typer.Option(
        True, "--quiesce/--no-quiesce", help="freeze the guest's filesystems through its guest agent"
    ),
    description: str = typer.Option("", "--description"),
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Take a live snapshot of a running (or stopped) VM."""
    base = _base(ctx, vm)
    body = {"name": name, "memory": memory, "quiesce": quiesce, "description": description}
    accepted = post_idempotent(client_of(ctx), base, body)
    _finish(ctx, accepted, f"snapshot {name} of {vm}", wait, as_json, wait_timeout, base)


@app.command("snapshot-list")
def snapshot_list(ctx: typer.Context, vm: str = VM_ARG, as_json: bool = JSON) -> None:
    """The VM's snapshot tree ('*' marks the one its disk stands on now)."""
    data = client_of(ctx).get(_base(ctx, vm))
    if as_json:
        print_json(data)
        return
    items = data["items"]
    if not items:
        info("no snapshots")
        return
    for line in tree_lines(items):
        typer.echo(line)


def tree_lines(items: list[dict[str, Any]]) -> list[str]:
    """The snapshots as an indented tree, children under their parent, oldest first."""
    ids = {s["id"] for s in items}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in items:
        children.setdefault(s["parent_id"] if s["parent_id"] in ids else None, []).append(s)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in children.get(parent, []):
            mark = "*" if s["current"] else " "
            detail = f"{s['status']}, {s['consistency'] or '-'}" + (", RAM" if s["memory"] else "")
            lines.append(f"{mark} {'  ' * depth}{s['name']}  ({s['id']}; {detail}; {s['created_at']})")
            walk(s["id"], depth + 1)

    walk(None, 0)
    return lines


@app.command("snapshot-revert")
def snapshot_revert(
    ctx: typer.Context,
    vm: str = VM_ARG,
    snapshot: str = SNAP_ARG,
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Revert the VM to a snapshot (a running VM restarts on it, or resumes there with its RAM)."""
    base = _base(ctx, vm)
    accepted = post_idempotent(client_of(ctx), f"{base}/{snapshot}/revert", {})
    _finish(ctx, accepted, f"revert {vm} to {snapshot}", wait, as_json, wait_timeout, base)


@app.command("snapshot-delete")
def snapshot_delete(
    ctx: typer.Context,
    vm: str = VM_ARG,
    snapshot: str = SNAP_ARG,
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Delete a snapshot (online); the others keep their data, its children take its parent."""
    base = _base(ctx, vm)
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    accepted = client_of(ctx).send("DELETE", f"{base}/{snapshot}", headers=headers).json()
    _finish(
        ctx, accepted, f"delete snapshot {snapshot} of {vm}", wait, as_json, wait_timeout, base, gone=True
    )

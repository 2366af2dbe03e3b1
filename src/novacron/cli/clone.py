"""``novacron vm clone``, ``novacron vm template`` and ``novacron image template``: clones and templates.

The commands join the ``vm`` and ``image`` apps on import. Many linked clones of a template are
``novacron vm create --image TEMPLATE --count N``.
"""

from __future__ import annotations

import typer

from novacron.cli import image, vm
from novacron.cli.client import resolve
from novacron.cli.common import JSON, client_of, post_idempotent, resolve_vm
from novacron.cli.output import info, print_detail, print_json
from novacron.cli.watch import watch_task

#: what ``main`` checks, so that importing this module is not dropped as unused
registered = True


@vm.app.command()
def clone(  # noqa: PLR0913 (the command's options)
    ctx: typer.Context,
    source: str = vm.VM_ARG,
    name: str = typer.Option(..., "--name", "-n", help="the clone's name (same project as the source)"),
    mode: str | None = typer.Option(
        None,
        "--mode",
        help="full (a copy of the disk; the default) or linked (the default with --from-snapshot); "
        "linked clones of a template: vm create --image",
    ),
    snapshot: str | None = typer.Option(
        None,
        "--from-snapshot",
        help="one of the VM's snapshots (name or id): a linked clone of it (--full: a copy of it)",
    ),
    full: bool = typer.Option(False, "--full", help="a full, standalone copy (same as --mode full)"),
    user_data: typer.FileText | None = typer.Option(None, "--user-data", help="the clone's user-data file"),
    wait: bool = vm.WAIT,
    wait_timeout: float | None = vm.TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Clone a VM, running or stopped: a full copy of its disk, or a linked clone of one of its
    snapshots (linked, or with --full a standalone copy of it), booted as a new VM on its host."""
    if full and mode not in (None, "full"):
        raise typer.BadParameter("--full is --mode full", param_hint="--full")
    mode = "full" if full else mode
    found = resolve_vm(ctx, source)
    body: dict[str, object] = {"name": name}
    if mode is not None:
        body["mode"] = mode
    if snapshot is not None:
        body["snapshot"] = snapshot
    if user_data is not None:
        body["user_data"] = user_data.read()
    accepted = post_idempotent(client_of(ctx), f"/v1/vms/{found['id']}/clone", body)
    vm._finish(
        ctx, accepted, wait=wait, as_json=as_json, label=f"clone {found['name']}", wait_timeout=wait_timeout
    )


@vm.app.command()
def template(
    ctx: typer.Context,
    source: str = vm.VM_ARG,
    image_name: str = typer.Option(..., "--image-name", help="the template's name"),
    wait: bool = vm.WAIT,
    wait_timeout: float | None = vm.TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Turn a stopped VM into a template image (the VM is removed, as Proxmox's convert does)."""
    client = client_of(ctx)
    found = resolve_vm(ctx, source)
    accepted = post_idempotent(client, f"/v1/vms/{found['id']}/template", {"image_name": image_name})
    if not wait:
        if as_json:
            print_json(accepted)
        else:
            info(f"template accepted: image {accepted['image_id']}, task {accepted['task_id']}")
        return
    label = f"template {found['name']}"
    watch_task(client, accepted["task_id"], label=label, timeout_s=wait_timeout, show=not as_json)
    made = client.get(f"/v1/images/{accepted['image_id']}")
    if as_json:
        print_json(made)
    else:
        info(
            f"[green]Template {made['name']} ({made['id']}) is {made['status']}; "
            f"VM {found['name']} is gone.[/]"
        )


@image.app.command("template")
def mark_template(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="image name or id"),
    off: bool = typer.Option(False, "--off", help="unmark: an ordinary image again (no VM may use it)"),
    as_json: bool = JSON,
) -> None:
    """Mark an image as a template: its boot settings freeze, it stays while VMs use it."""
    client = client_of(ctx)
    found = resolve(client, "images", ref, "image")
    marked = post_idempotent(client, f"/v1/images/{found['id']}/template", {"template": not off})
    print_detail(marked, as_json=as_json)

"""``novacron vm ...``: virtual machines. Every command takes a VM name or id."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer

from novacron.cli import vmmetrics
from novacron.cli.client import CliError
from novacron.cli.common import CURSOR, JSON, LIMIT, client_of, create_in_project, key_values, resolve_vm
from novacron.cli.guestinfo import GUEST_FIELDS, ip_cell
from novacron.cli.names import VM_STATES, choose
from novacron.cli.output import (
    Column,
    ago,
    gib,
    info,
    mib,
    print_detail,
    print_json,
    print_list,
)
from novacron.cli.watch import follow_accepted, watch_task

app = typer.Typer(no_args_is_help=True)
#: states in which a VM's guest runs: `vm delete` wants --force for them
LIVE_STATES = ("running", "paused")

VM_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("STATE", "state"),
    ("IP", ip_cell),
    ("TASK", "task_state"),
    ("VCPUS", "vcpus"),
    ("RAM", lambda v: mib(v.get("ram_mb"))),
    ("DISK", lambda v: gib(v.get("disk_gb"))),
    ("CREATED", lambda v: ago(v.get("created_at"))),
]
VM_FIELDS: list[Column] = [
    ("name", "name"),
    ("id", "id"),
    ("state", "state"),
    ("desired_state", "desired_state"),
    ("task_state", "task_state"),
    ("error", "error"),
    ("vcpus", "vcpus"),
    ("ram_mb", "ram_mb"),
    ("disk_gb", "disk_gb"),
    # the ceiling of a live resize (none: booted without headroom)
    ("max_vcpus", lambda v: v.get("max_vcpus") or "-"),
    ("max_ram_mb", lambda v: v.get("max_ram_mb") or "-"),
    ("image_id", "image_id"),
    ("flavor_id", "flavor_id"),
    ("host_id", "host_id"),
    ("ha", "ha"),
    ("ha_priority", "ha_priority"),
    ("project_id", "project_id"),
    ("tenant_id", "tenant_id"),
    ("metadata", "metadata"),
    ("labels", "labels"),
    ("hardware", "hardware"),
    ("created_at", "created_at"),
    ("updated_at", "updated_at"),
    *GUEST_FIELDS,
]
WAIT = typer.Option(True, "--wait/--no-wait", help="wait for the task to finish (default) or return at once")
TIMEOUT = typer.Option(None, "--wait-timeout", help="give up waiting after this many seconds")


def _finish(
    ctx: typer.Context,
    accepted: dict[str, Any],
    *,
    wait: bool,
    as_json: bool,
    label: str,
    wait_timeout: float | None,
    show_vm: bool = True,
) -> None:
    """After a 202: either print the acceptance, or follow the task and show the VM as it ends up."""
    client = client_of(ctx)
    if not follow_accepted(client, accepted, label, wait=wait, as_json=as_json, timeout_s=wait_timeout):
        return
    if not show_vm:
        if as_json:
            print_json(client.get(f"/v1/tasks/{accepted['task_id']}"))
        return
    vm = client.get(f"/v1/vms/{accepted['vm']['id']}")
    if as_json:
        print_json(vm)
    else:
        print_detail(vm, as_json=False, fields=VM_FIELDS)


@app.command("list")
def list_vms(
    ctx: typer.Context,
    name: str | None = typer.Option(None, "--name", help="only VMs with this exact name"),
    state: str | None = typer.Option(None, "--state", help="only VMs in this state: " + ", ".join(VM_STATES)),
    sort: str = typer.Option(
        "created_at", "--sort", help="created_at, name, state, updated_at, vcpus, ram_mb; -x descends"
    ),
    limit: int | None = LIMIT,
    cursor: str | None = CURSOR,
    as_json: bool = JSON,
) -> None:
    """List virtual machines."""
    choose("--state", state, VM_STATES)
    page = client_of(ctx).list_all("/v1/vms", limit=limit, cursor=cursor, name=name, state=state, sort=sort)
    print_list(page, VM_COLUMNS, as_json=as_json, empty="No VMs.")


@app.command()
def show(
    ctx: typer.Context, vm: str = typer.Argument(..., help="VM name or id"), as_json: bool = JSON
) -> None:
    """Show one VM."""
    print_detail(resolve_vm(ctx, vm), as_json=as_json, fields=VM_FIELDS)


@app.command()
def create(
    ctx: typer.Context,
    name: str = typer.Option(..., "--name", "-n", help="DNS-style name, also the hostname"),
    image: str | None = typer.Option(
        None, "--image", "-i", help="image name or id (with --boot-volume: default the volume's)"
    ),
    flavor: str = typer.Option(..., "--flavor", help="flavor name or id"),
    boot_volume: str | None = typer.Option(
        None, "--boot-volume", help="boot from this available volume (name or id): the root disk"
    ),
    volume: list[str] = typer.Option([], "--volume", help="attach this volume from the start (repeat)"),
    user_data: Path | None = typer.Option(
        None, "--user-data", exists=True, dir_okay=False, readable=True, help="cloud-init user-data file"
    ),
    project: str | None = typer.Option(None, "--project", help="project name or id (default: your project)"),
    metadata: list[str] = typer.Option([], "--meta", help="KEY=VALUE, repeatable"),
    ha: bool = typer.Option(
        False, "--ha", help="restart it on another host when its host fails (needs shared storage)"
    ),
    ha_priority: int = typer.Option(0, "--ha-priority", help="HA restart order: higher restarts first"),
    network: list[str] = typer.Option(
        [], "--network", help="NIC on this network (name or id), repeatable; NAME=IP asks for an address"
    ),
    security_group: list[str] = typer.Option([], "--security-group", help="for every NIC (default: default)"),
    label: list[str] = typer.Option([], "--label", help="KEY=VALUE for label policies, repeatable"),
    secret: list[str] = typer.Option(
        [], "--secret", help="a secret of the tenant cloud-init writes into the guest (repeat)"
    ),
    count: int = typer.Option(
        1,
        "--count",
        min=1,
        max=100,
        help="create this many, named NAME-1..NAME-N (from a template: linked clones)",
    ),
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Create a VM (or --count of them); by default wait until it runs, with a progress bar over
    the task's steps."""
    meta = key_values(metadata, "--meta")
    body: dict[str, Any] = {"name": name, "flavor": flavor, "metadata": meta}
    body.update({k: v for k, v in (("image", image), ("boot_volume", boot_volume)) if v is not None})
    if volume:
        body["volumes"] = volume
    if ha:
        body.update(ha=True, ha_priority=ha_priority)
    if network:
        body["networks"] = _nics(network, security_group)
    if label:
        body["labels"] = key_values(label, "--label")
    if secret:
        body["secrets"] = secret
    if user_data is not None:
        try:
            body["user_data"] = user_data.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read user-data {user_data}: {exc}") from exc
    if count > 1:
        _create_many(ctx, body, project, count, wait=wait, as_json=as_json, wait_timeout=wait_timeout)
        return
    accepted = create_in_project(client_of(ctx), "/v1/vms", body, project)
    _finish(ctx, accepted, wait=wait, as_json=as_json, label=f"create {name}", wait_timeout=wait_timeout)


def _create_many(
    ctx: typer.Context,
    body: dict[str, Any],
    project: str | None,
    count: int,
    *,
    wait: bool,
    as_json: bool,
    wait_timeout: float | None,
) -> None:
    """All the creates first (each idempotent: a retry makes no second VM), so that the VMs build
    side by side on the server; then each task is followed."""
    client = client_of(ctx)
    made = [
        create_in_project(
            client, "/v1/vms", {**body, "name": f"{body['name']}-{i}"}, project, idempotent=True
        )
        for i in range(1, count + 1)
    ]
    if not wait:
        if as_json:
            print_json(made)
        else:
            for accepted in made:
                info(f"create {accepted['vm']['name']}: accepted as task {accepted['task_id']}")
        return
    for accepted in made:
        label = f"create {accepted['vm']['name']}"
        watch_task(client, accepted["task_id"], label=label, timeout_s=wait_timeout, show=not as_json)
    vms = [client.get(f"/v1/vms/{accepted['vm']['id']}") for accepted in made]
    print_list({"items": vms}, VM_COLUMNS, as_json=as_json, empty="No VMs.")


def _nics(networks: list[str], security_groups: list[str]) -> list[dict[str, Any]]:
    """The NICs of --network NAME[=IP] options, each in the --security-group groups."""
    nics: list[dict[str, Any]] = []
    for item in networks:
        net, _, ip = item.partition("=")
        nic: dict[str, Any] = {"network": net}
        if ip:
            nic["fixed_ip"] = ip
        if security_groups:
            nic["security_groups"] = security_groups
        nics.append(nic)
    return nics


def _action(
    ctx: typer.Context,
    ref: str,
    action: str,
    body: dict[str, Any],
    wait: bool,
    as_json: bool,
    wait_timeout: float | None,
) -> None:
    vm = resolve_vm(ctx, ref)
    accepted = client_of(ctx).post(f"/v1/vms/{vm['id']}/actions/{action}", body)
    label = f"{action} {vm['name']}"
    _finish(ctx, accepted, wait=wait, as_json=as_json, label=label, wait_timeout=wait_timeout)


VM_ARG = typer.Argument(..., help="VM name or id")


@app.command()
def start(
    ctx: typer.Context,
    vm: str = VM_ARG,
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Power a stopped VM on."""
    _action(ctx, vm, "start", {}, wait, as_json, wait_timeout)


@app.command()
def stop(
    ctx: typer.Context,
    vm: str = VM_ARG,
    force: bool = typer.Option(False, "--force", help="power off at once instead of an ACPI shutdown"),
    timeout: float = typer.Option(60, "--timeout", min=1, max=3600, help="seconds to wait before forcing"),
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Shut a VM down (ACPI, forced after --timeout), or power it off at once with --force."""
    _action(ctx, vm, "stop", {"force": force, "timeout_s": timeout}, wait, as_json, wait_timeout)


@app.command()
def reboot(
    ctx: typer.Context,
    vm: str = VM_ARG,
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Reboot a VM."""
    _action(ctx, vm, "reboot", {}, wait, as_json, wait_timeout)


@app.command()
def pause(
    ctx: typer.Context,
    vm: str = VM_ARG,
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Freeze a running VM's vCPUs."""
    _action(ctx, vm, "pause", {}, wait, as_json, wait_timeout)


@app.command()
def resume(
    ctx: typer.Context,
    vm: str = VM_ARG,
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Resume a paused VM."""
    _action(ctx, vm, "resume", {}, wait, as_json, wait_timeout)


@app.command()
def delete(  # noqa: PLR0913 (the command's options)
    ctx: typer.Context,
    vm: str = VM_ARG,
    force: bool = typer.Option(False, "--force", help="delete it even while its guest runs"),
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Delete a VM and its disks (a running or paused one only with --force, as incus asks)."""
    found = resolve_vm(ctx, vm)
    if found.get("state") in LIVE_STATES and not force:
        raise CliError(
            f"VM {found['name']} is {found['state']}: deleting it destroys its guest and its disks",
            hint=f"Stop it first (novacron vm stop {found['name']}), or delete it anyway with --force.",
        )
    accepted = client_of(ctx).delete(f"/v1/vms/{found['id']}")
    _finish(
        ctx,
        accepted,
        wait=wait,
        as_json=as_json,
        label=f"delete {found['name']}",
        wait_timeout=wait_timeout,
        show_vm=False,
    )
    if wait and not as_json:
        info(f"[green]VM {found['name']} ({found['id']}) deleted.[/]")


@app.command()
def resize(
    ctx: typer.Context,
    vm: str = VM_ARG,
    flavor: str | None = typer.Option(None, "--flavor", help="new flavor name or id"),
    vcpus: int | None = typer.Option(None, "--vcpus", min=1, max=64),
    ram: int | None = typer.Option(None, "--ram", min=64, help="RAM in MiB"),
    disk: int | None = typer.Option(None, "--disk", min=1, help="root disk in GiB (grows only)"),
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Resize a VM: a stopped one at its next start; a running one grows live (CPUs and memory
    hot-added, disk grown) up to the max_vcpus / max_ram_mb that `vm show` gives."""
    pairs = (("flavor", flavor), ("vcpus", vcpus), ("ram_mb", ram), ("disk_gb", disk))
    body = {k: v for k, v in pairs if v is not None}
    if not body:
        raise CliError("nothing to change", hint="Give --flavor, or --vcpus, --ram and/or --disk.")
    client = client_of(ctx)
    found = resolve_vm(ctx, vm)
    changed = client.patch(f"/v1/vms/{found['id']}", body)
    if wait and changed.get("task_state") == "resizing":  # live: the hot-add's task
        tasks = client.get("/v1/tasks", resource_id=found["id"], kind="vm.resize_live")["items"]
        if tasks:  # the newest is this resize's
            task = max(tasks, key=lambda t: str(t["created_at"]))
            watch_task(
                client, task["id"], label=f"resize {found['name']}", timeout_s=wait_timeout, show=not as_json
            )
        changed = client.get(f"/v1/vms/{found['id']}")
    print_detail(changed, as_json=as_json, fields=VM_FIELDS)


@app.command()
def snapshot(
    ctx: typer.Context,
    vm: str = VM_ARG,
    image_name: str = typer.Option(..., "--image-name", help="name of the new image"),
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Save the VM's disk as a new image."""
    client = client_of(ctx)
    found = resolve_vm(ctx, vm)
    accepted = client.post(f"/v1/vms/{found['id']}/snapshot", {"image_name": image_name})
    if wait:
        watch_task(
            client,
            accepted["task_id"],
            label=f"snapshot {found['name']}",
            timeout_s=wait_timeout,
            show=not as_json,
        )
        image = client.get(f"/v1/images/{accepted['image_id']}")
        if as_json:
            print_json(image)
        else:
            info(f"[green]Image {image['name']} ({image['id']}) is {image['status']}.[/]")
    elif as_json:
        print_json(accepted)
    else:
        info(f"snapshot accepted: image {accepted['image_id']}, task {accepted['task_id']}")


@app.command()
def migrate(
    ctx: typer.Context,
    vm: str = VM_ARG,
    host: str | None = typer.Option(None, "--host", help="target host (default: placement chooses)"),
    storage: str = typer.Option(
        "auto", "--storage", help="auto, local (mirror/copy the disk) or shared (same disk on both hosts)"
    ),
    max_downtime: int | None = typer.Option(
        None, "--max-downtime", help="longest final pause, ms (default 30)"
    ),
    max_bandwidth: int | None = typer.Option(None, "--max-bandwidth", help="transfer cap, megabits/s"),
    auto_converge: bool = typer.Option(
        False, "--auto-converge", help="throttle a guest that dirties RAM fast"
    ),
    wait: bool = WAIT,
    wait_timeout: float | None = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Move a VM to another host: live if it runs (the guest keeps running), cold if it is stopped."""
    client = client_of(ctx)
    found = resolve_vm(ctx, vm)
    body: dict[str, object] = {"storage": storage, "auto_converge": auto_converge}
    for key, value in (
        ("host", host),
        ("max_downtime_ms", max_downtime),
        ("max_bandwidth_mbps", max_bandwidth),
    ):
        if value is not None:
            body[key] = value
    accepted = client.post(f"/v1/vms/{found['id']}/migrate", body)
    if wait:
        task = watch_task(
            client,
            accepted["task_id"],
            label=f"migrate {found['name']}",
            timeout_s=wait_timeout,
            show=not as_json,
        )
        stats = task.get("result") or {}
        moved = client.get(f"/v1/vms/{found['id']}")
        if as_json:
            print_json(moved)
        elif moved["state"] == "stopped":
            info(f"[green]VM {moved['name']} moved to host {moved['host_id']}[/] (stopped: it boots there).")
        else:
            info(
                f"[green]VM {moved['name']} now runs on host {moved['host_id']}[/] "
                f"(downtime {stats.get('downtime_ms', '?')} ms, total {stats.get('total_time_ms', '?')} ms)."
            )
    elif as_json:
        print_json(accepted)
    else:
        info(f"migration accepted: task {accepted['task_id']}")


@app.command()
def logs(
    ctx: typer.Context,
    vm: str = VM_ARG,
    follow: bool = typer.Option(False, "--follow", "-F", help="keep printing new output"),
    tail: int | None = typer.Option(None, "--tail", min=1, help="start with only the last N bytes"),
    interval: float = typer.Option(1.0, "--interval", min=0.1, help="seconds between polls with --follow"),
) -> None:
    """Print the VM's serial console log (and follow it with --follow)."""
    client = client_of(ctx)
    vm_id = resolve_vm(ctx, vm)["id"]
    offset = 0
    first = True
    try:
        while True:
            params: dict[str, Any] = {"tail": tail} if first and tail else {"offset": offset}
            r = client.send("GET", f"/v1/vms/{vm_id}/console-log", params=params)
            first = False
            text = r.text
            nxt = r.headers.get("X-Next-Offset", "")
            offset = int(nxt) if nxt.isdigit() else offset + len(r.content)
            if text:
                sys.stdout.write(text)
                sys.stdout.flush()
                continue  # there may be more than one response's worth
            if not follow:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return


@app.command()
def metrics(
    ctx: typer.Context,
    vm: str = VM_ARG,
    last: int = typer.Option(10, "--last", min=1, help="show the rates over this many most recent intervals"),
    as_json: bool = JSON,
) -> None:
    """Show what the VM does per second: CPU (% of one core), disk and network rates, and memory,
    between its most recent samples (``--json``: the same rates and their averages, numbers only)."""
    found = resolve_vm(ctx, vm)
    vmmetrics.show(client_of(ctx), found, last, as_json)


def _register_console() -> None:
    from novacron.cli.console import console

    app.command("console")(console)


_register_console()

"""``novacron flavor|task|host ...`` and ``novacron events``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.markup import escape

from novacron.cli.client import parse_sse
from novacron.cli.common import (
    CURSOR,
    FIRMWARE,
    JSON,
    LIMIT,
    MACHINE,
    SECURE_BOOT,
    TPM,
    client_of,
    hardware_body,
)
from novacron.cli.names import TASK_STATES, choose, name_resources
from novacron.cli.output import Column, ago, gib, local_time, mib, out, print_detail, print_json, print_list
from novacron.cli.watch import step_label, watch_task

flavor_app = typer.Typer(no_args_is_help=True)
task_app = typer.Typer(no_args_is_help=True)
host_app = typer.Typer(no_args_is_help=True)

FLAVOR_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("VCPUS", "vcpus"),
    ("RAM", lambda f: mib(f.get("ram_mb"))),
    ("DISK", lambda f: gib(f.get("disk_gb")) if f.get("disk_gb") else "(image)"),
]
TASK_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("KIND", "kind"),
    ("RESOURCE", lambda t: t.get("resource_name") or t.get("resource_id")),
    ("STATE", "state"),
    ("PROGRESS", lambda t: f"{t.get('progress', 0)}% {step_label(t) if t.get('state') == 'running' else ''}"),
    ("CREATED", lambda t: ago(t.get("created_at"))),
    ("ERROR", "error"),
]
HOST_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("STATE", "state"),
    ("DRIVER", "driver"),
    ("ACCEL", "accelerator"),
    ("VCPUS", lambda h: _used_of(h, "vcpus_used", "vcpus_free", "cpus", str)),
    ("RAM", lambda h: _used_of(h, "ram_mb_used", "ram_mb_free", "ram_mb", mib)),
    ("DISK", lambda h: gib(h.get("disk_gb"))),
    ("HEARTBEAT", lambda h: ago(h.get("last_heartbeat"))),
]


# ---------------------------------------------------------------- flavors


@flavor_app.command("list")
def flavor_list(
    ctx: typer.Context, limit: int | None = LIMIT, cursor: str | None = CURSOR, as_json: bool = JSON
) -> None:
    """List flavors."""
    page = client_of(ctx).list_all("/v1/flavors", limit=limit, cursor=cursor)
    print_list(page, FLAVOR_COLUMNS, as_json=as_json, empty="No flavors.")


@flavor_app.command("create")
def flavor_create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="flavor name, e.g. m1.small"),
    vcpus: int = typer.Option(..., "--vcpus", min=1),
    ram: int = typer.Option(..., "--ram", min=1, help="RAM in MiB"),
    disk: int = typer.Option(0, "--disk", min=0, help="root disk in GiB (0: the image's size)"),
    machine: str | None = MACHINE,
    firmware: str | None = FIRMWARE,
    secure_boot: bool | None = SECURE_BOOT,
    tpm: bool | None = TPM,
    as_json: bool = JSON,
) -> None:
    """Create a flavor (administrators only)."""
    body: dict[str, Any] = {"name": name, "vcpus": vcpus, "ram_mb": ram, "disk_gb": disk}
    if hardware := hardware_body(machine, firmware, secure_boot, tpm):
        body["hardware"] = hardware
    flavor = client_of(ctx).post("/v1/flavors", body)
    print_detail(flavor, as_json=as_json)


# ---------------------------------------------------------------- tasks


@task_app.command("list")
def task_list(
    ctx: typer.Context,
    state: str | None = typer.Option(None, "--state", help=", ".join(TASK_STATES)),
    resource: str | None = typer.Option(None, "--resource", help="only tasks of this resource id"),
    limit: int | None = typer.Option(50, "--limit", min=1, max=500, help="at most this many, newest first"),
    cursor: str | None = CURSOR,
    as_json: bool = JSON,
) -> None:
    """List tasks, newest first."""
    choose("--state", state, TASK_STATES)
    client = client_of(ctx)
    page = client.list_all("/v1/tasks", limit=limit, cursor=cursor, state=state, resource_id=resource)
    if not as_json:
        name_resources(client, page["items"], "resource_type", "resource_id")
    print_list(page, TASK_COLUMNS, as_json=as_json, empty="No tasks.")


@task_app.command("show")
def task_show(
    ctx: typer.Context, task_id: str = typer.Argument(..., metavar="ID"), as_json: bool = JSON
) -> None:
    """Show one task with its steps."""
    print_detail(client_of(ctx).get(f"/v1/tasks/{task_id}"), as_json=as_json)


@task_app.command("watch")
def task_watch(
    ctx: typer.Context,
    task_id: str = typer.Argument(..., metavar="ID"),
    timeout: float | None = typer.Option(None, "--timeout", help="give up after this many seconds"),
    as_json: bool = JSON,
) -> None:
    """Follow a task with a progress bar until it succeeds (exit 0) or fails (exit 1)."""
    task = watch_task(client_of(ctx), task_id, timeout_s=timeout, show=not as_json)
    if as_json:
        print_json(task)
    else:
        out.print(f"[green]task {escape(task_id)} succeeded[/]")


@task_app.command("cancel")
def task_cancel(
    ctx: typer.Context, task_id: str = typer.Argument(..., metavar="ID"), as_json: bool = JSON
) -> None:
    """Cancel a running migration (before its VM switches host); the VM stays where it was."""
    task = client_of(ctx).post(f"/v1/tasks/{task_id}/cancel")
    if as_json:
        print_json(task)
    else:
        out.print(
            f"cancel requested for task {escape(task_id)}; follow it with: novacron task watch {task_id}"
        )


# ---------------------------------------------------------------- hosts


@host_app.command("list")
def host_list(
    ctx: typer.Context, limit: int | None = LIMIT, cursor: str | None = CURSOR, as_json: bool = JSON
) -> None:
    """List hypervisor hosts with their capacity and allocation."""
    page = client_of(ctx).list_all("/v1/hosts", limit=limit, cursor=cursor)
    print_list(page, HOST_COLUMNS, as_json=as_json, empty="No hosts.")


def _used_of(h: dict[str, Any], used: str, free: str, total: str, unit: Callable[[Any], str]) -> str:
    """Administrators see what is allocated of what there is (``2 of 4 (×4.0 overcommit)``); tenant
    roles only a capacity summary (what is free)."""
    if h.get(used) is not None:
        key = "cpu_allocation_ratio" if total == "cpus" else "ram_allocation_ratio"
        ratio = f" (×{h[key]} overcommit)" if h.get(key) not in (None, 1, 1.0) else ""
        return f"{unit(h[used])} of {unit(h.get(total))}{ratio}"
    return f"{unit(h.get(free))} free"


@host_app.command("rejoin-token")
def host_rejoin_token(
    ctx: typer.Context,
    host: str = typer.Argument(..., metavar="HOST", help="host name or id"),
    ttl_s: int = typer.Option(3600, "--ttl", help="seconds the token may be used"),
    as_json: bool = JSON,
) -> None:
    """A one-time token re-keying HOST after a reinstall; the host's old credential stops working
    when the new agent joins with it (audited)."""
    answer = client_of(ctx).post(f"/v1/hosts/{host}/rejoin-token", {"ttl_s": ttl_s})
    if as_json:
        print_json(answer)
        return
    out.print(
        f"re-key token for host {escape(host)} (expires {local_time(answer['expires_at'])}); on the host run:"
    )
    out.print(escape(answer["command"]), soft_wrap=True)


@host_app.command("join-token")
def host_join_token(
    ctx: typer.Context,
    ttl_s: int = typer.Option(3600, "--ttl", help="seconds the token may be used"),
    as_json: bool = JSON,
) -> None:
    """A one-time token that adds a NEW host (it cannot take over an existing host's name)."""
    answer = client_of(ctx).post("/v1/hosts/join-tokens", {"ttl_s": ttl_s})
    if as_json:
        print_json(answer)
        return
    out.print(f"join token (expires {local_time(answer['expires_at'])}); on the new host run:")
    out.print(escape(answer["command"]), soft_wrap=True)


@host_app.command("drain")
def host_drain(
    ctx: typer.Context,
    host: str = typer.Argument(..., metavar="HOST", help="host name or id"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="follow the migrations until done"),
    as_json: bool = JSON,
) -> None:
    """Put a host in maintenance and live-migrate every running VM off it."""
    client = client_of(ctx)
    answer = client.post(f"/v1/hosts/{host}/drain")
    if wait:
        for task_id in answer["task_ids"]:
            watch_task(client, task_id, label=f"migrate ({task_id})", show=not as_json)
    if as_json:
        print_json(answer)
        return
    out.print(f"host {escape(host)} is in maintenance; {len(answer['task_ids'])} VM(s) migrated")
    if answer["left"]:
        out.print(f"[yellow]not moved (not running): {', '.join(answer['left'])}[/]")


# ---------------------------------------------------------------- events


def event_line(e: dict[str, Any]) -> str:
    data = e.get("data") or {}
    extra = " ".join(f"{k}={v}" for k, v in data.items()) if isinstance(data, dict) else str(data)
    resource = f"{e.get('resource_type', '')}/{e.get('resource_id', '')}"
    return (
        f"[dim]{escape(local_time(e.get('time')))}[/] [bold]{escape(str(e.get('type', '')))}[/] "
        f"{escape(resource)} {escape(extra)}"
    )


def events(
    ctx: typer.Context,
    follow: bool = typer.Option(False, "--follow", "-F", help="stream new events as they happen (SSE)"),
    types: str | None = typer.Option(None, "--types", help="comma-separated patterns, e.g. vm.*,task.failed"),
    after: int | None = typer.Option(None, "--after", min=0, help="only events after this sequence number"),
    limit: int = typer.Option(100, "--limit", min=1, max=1000),
    as_json: bool = typer.Option(False, "--json", help="the API's JSON (with --follow: one event per line)"),
) -> None:
    """Show the newest events (or those after --after), or follow them live with --follow."""
    client = client_of(ctx)
    if not follow:
        # without --after, the last `limit` events (as `tail` does), not the node's first ones
        page = client.get("/v1/events", after=after or 0, limit=limit, types=types, tail=after is None)
        if as_json:
            print_json(page)
        elif not page.get("items"):
            out.print("[dim]No events.[/]")
        else:
            for e in page["items"]:
                out.print(event_line(e))
        return
    try:
        with client.stream("/v1/events/stream", after=after, types=types) as response:
            for _, _, data in parse_sse(response.iter_lines()):
                try:
                    e = json.loads(data)
                except ValueError:
                    continue
                if as_json:
                    sys.stdout.write(json.dumps(e) + "\n")
                    sys.stdout.flush()
                else:
                    out.print(event_line(e))
    except KeyboardInterrupt:
        return

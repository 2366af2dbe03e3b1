"""``novacron backup ...`` and ``novacron dr ...``: VM backups, restores, holds, policies, DR runbooks."""

from __future__ import annotations

import sys
from typing import Any

import typer

from novacron.cli.client import CliError
from novacron.cli.common import CURSOR, JSON, LIMIT, client_of, project_id, resolve_vm
from novacron.cli.names import names_of
from novacron.cli.output import Column, ago, human_size, info, print_detail, print_json, print_list
from novacron.cli.watch import watch_task

app = typer.Typer(no_args_is_help=True)
policy_app = typer.Typer(no_args_is_help=True)
target_app = typer.Typer(no_args_is_help=True)
dr_app = typer.Typer(no_args_is_help=True)
runbook_app = typer.Typer(no_args_is_help=True)
app.add_typer(policy_app, name="policy", help="Backup schedules and retention per VM or project.")
app.add_typer(target_app, name="target", help="Where backups are stored (admins).")
dr_app.add_typer(runbook_app, name="runbook", help="Runbooks: VMs restored in order, RPO/RTO targets.")

#: the API's answer to a backup when no target exists (backup/service.py NO_TARGET), said before
#: the VM is looked up
NO_TARGET = (
    "there is no backup target yet: create one with `novacron backup target create NAME --kind local "
    "--set path=/var/lib/novacron/backups` (or s3, azure, gcs: see `novacron backup target create "
    "--help`), or on the dashboard's Backup targets page"
)
WAIT = typer.Option(True, "--wait/--no-wait", help="wait for the task to finish (default) or return at once")

BACKUP_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("VM", "vm_name"),
    ("STATE", "state"),
    ("MODE", "mode"),
    ("CONSISTENCY", "consistency"),
    ("SIZE", lambda b: human_size(b.get("size_bytes"))),
    ("READ", lambda b: human_size(b.get("bytes_read"))),
    ("UPLOADED", lambda b: human_size(b.get("bytes_uploaded"))),
    ("HOLD", "legal_hold"),
    ("TAKEN", lambda b: ago(b.get("completed_at") or b.get("created_at"))),
]
BACKUP_FIELDS: list[Column] = [
    (k, k)
    for k in (
        "id", "vm_name", "vm_id", "state", "mode", "reason", "consistency", "parent_id", "size_bytes",
        "bytes_read", "changed_bytes", "chunks_total", "chunks_changed", "chunks_uploaded",
        "bytes_uploaded", "verify_result", "restore_test_result", "legal_hold", "hold_reason",
        "immutable_until", "target_id", "task_id", "error", "created_at", "completed_at",
    )
]  # fmt: skip


def _follow(
    ctx: typer.Context, accepted: dict[str, Any], wait: bool, as_json: bool, label: str
) -> dict[str, Any]:
    client = client_of(ctx)
    if not wait:
        if as_json:
            print_json(accepted)
        else:
            info(
                f"{label}: accepted as task {accepted['task_id']} (novacron task watch {accepted['task_id']})"
            )
        return {}
    return watch_task(client, accepted["task_id"], label=label, show=not as_json)


def _first_target(ctx: typer.Context) -> str:
    """No target exists: at a terminal, offer to make a local one now (the guided way); otherwise,
    or when declined, say how to make one. Returns the new target's name."""
    if not sys.stdin.isatty():
        raise CliError(NO_TARGET)
    info("There is no backup target yet: backups need one (where their chunks are stored).")
    if not typer.confirm("Create a local backup target now?", default=True, err=True):
        raise CliError(NO_TARGET)
    name = typer.prompt("Its name", default="local", err=True)
    path = typer.prompt(
        "Its directory (absolute; new or empty)", default="/var/lib/novacron/backups", err=True
    )
    made = client_of(ctx).post(
        "/v1/backup-targets", {"name": name, "type": "local", "config": {"path": path}}
    )
    info(
        f"backup target {made['name']} created in {path}; for object storage (s3, azure, gcs) see "
        "`novacron backup target create --help`"
    )
    return str(made["name"])


def _show_backup(ctx: typer.Context, backup_id: str, as_json: bool) -> None:
    print_detail(client_of(ctx).get(f"/v1/backups/{backup_id}"), as_json=as_json, fields=BACKUP_FIELDS)


@app.command("create")
def create(
    ctx: typer.Context,
    vm: str = typer.Argument(..., help="VM name or id"),
    full: bool = typer.Option(False, "--full", help="read the whole disk even when changes are tracked"),
    target: str | None = typer.Option(None, "--target", help="backup target (default: the only one)"),
    wait: bool = WAIT,
    as_json: bool = JSON,
) -> None:
    """Back a VM up (running or stopped); incremental when its disk's changes are tracked."""
    if target is None and not client_of(ctx).get("/v1/backup-targets").get("items"):
        target = _first_target(ctx)  # a new admin's first backup: make the target it needs
    vm_id = str(resolve_vm(ctx, vm)["id"])
    accepted = client_of(ctx).post("/v1/backups", {"vm": vm_id, "target": target, "full": full})
    _follow(ctx, accepted, wait, as_json, f"backup {vm}")
    if wait:
        _show_backup(ctx, accepted["backup"]["id"], as_json)


@app.command("list")
def list_backups(
    ctx: typer.Context,
    vm_arg: str | None = typer.Argument(
        None, metavar="[VM]", help="only the backups of this VM (name or id)"
    ),
    vm_opt: str | None = typer.Option(None, "--vm", help="the same as VM: only this VM's backups"),
    limit: int | None = LIMIT,
    cursor: str | None = CURSOR,
    as_json: bool = JSON,
) -> None:
    """List backups, newest first."""
    vm = vm_opt or vm_arg
    params: dict[str, Any] = {}
    if vm is not None:
        try:
            params["vm_id"] = resolve_vm(ctx, vm)["id"]
        except CliError:  # the VM may be gone: its backups are still listed by name
            params["vm_name"] = vm
    page = client_of(ctx).list_all("/v1/backups", limit=limit, cursor=cursor, **params)
    print_list(page, BACKUP_COLUMNS, as_json=as_json, empty="No backups.")


@app.command("show")
def show(
    ctx: typer.Context, backup: str = typer.Argument(..., help="backup id"), as_json: bool = JSON
) -> None:
    """Show one backup: what was read and why, consistency, verify and restore-test results."""
    _show_backup(ctx, backup, as_json)


@app.command("restore")
def restore(
    ctx: typer.Context,
    backup: str = typer.Argument(..., help="backup id"),
    new_vm: str | None = typer.Option(None, "--new-vm", help="restore into a new VM of this name"),
    vm: str | None = typer.Option(None, "--vm", help="restore over this existing, stopped VM"),
    disk: str | None = typer.Option(
        None, "--disk", help="restore the disk alone, as a new image of this name"
    ),
    instant: bool = typer.Option(
        False, "--instant", help="with --new-vm: boot at once from the backup, copy the disk in behind"
    ),
    copy_rate: int | None = typer.Option(None, "--copy-rate", help="--instant: cap the copy (MiB/s)"),
    wait: bool = WAIT,
    as_json: bool = JSON,
) -> None:
    """Restore a backup into a new VM (which boots), over a stopped VM's disk, or as a disk image.

    ``novacron restore`` is this command (``novacron backup restore`` is the same)."""
    if sum(x is not None for x in (new_vm, vm, disk)) != 1:
        raise CliError("give exactly one of --new-vm NAME, --vm EXISTING and --disk IMAGE_NAME")
    body: dict[str, object]
    if new_vm:
        body = {"new_vm": new_vm}
    elif disk:
        body = {"image_name": disk}
    else:
        body = {"vm": str(resolve_vm(ctx, str(vm))["id"])}
    if instant:  # with anything but --new-vm, the API says why not
        body["instant"] = True
    if copy_rate is not None:
        body["copy_rate_mib"] = copy_rate
    accepted = client_of(ctx).post(f"/v1/backups/{backup}/restore", body)
    _follow(ctx, accepted, wait, as_json, f"restore {backup}")
    if wait:
        what = f"/v1/images/{accepted['image_id']}" if disk else f"/v1/vms/{accepted['vm_id']}"
        print_detail(client_of(ctx).get(what), as_json=as_json)


@app.command("verify")
def verify(
    ctx: typer.Context,
    backup: str = typer.Argument(..., help="backup id"),
    wait: bool = WAIT,
    as_json: bool = JSON,
) -> None:
    """Re-read every chunk of a backup from its target and check it."""
    accepted = client_of(ctx).post(f"/v1/backups/{backup}/verify")
    try:
        _follow(ctx, accepted, wait, as_json, f"verify {backup}")
    finally:
        if wait:
            result = client_of(ctx).get(f"/v1/backups/{backup}").get("verify_result")
            print_detail(result or {}, as_json=as_json)


@app.command("restore-test")
def restore_test(
    ctx: typer.Context,
    backup: str = typer.Argument(..., help="backup id"),
    marker: str | None = typer.Option(None, "--marker", help="console line the restored VM must print"),
    as_json: bool = JSON,
) -> None:
    """Restore into a scratch VM, boot it to its marker, remove it; the result stays with the backup."""
    body = {"marker": marker} if marker else {}
    accepted = client_of(ctx).post(f"/v1/backups/{backup}/restore-test", body)
    _follow(ctx, accepted, True, as_json, f"restore test {backup}")
    print_detail(client_of(ctx).get(f"/v1/backups/{backup}")["restore_test_result"], as_json=as_json)


@app.command("hold")
def hold(
    ctx: typer.Context,
    backup: str = typer.Argument(..., help="backup id"),
    reason: str = typer.Option(..., "--reason", help="why (case number)"),
    as_json: bool = JSON,
) -> None:
    """Put a legal hold on a backup: nobody, admins included, can delete or prune it (compliance role)."""
    print_detail(
        client_of(ctx).post(f"/v1/backups/{backup}/hold", {"reason": reason}),
        as_json=as_json,
        fields=BACKUP_FIELDS,
    )


@app.command("release")
def release(
    ctx: typer.Context, backup: str = typer.Argument(..., help="backup id"), as_json: bool = JSON
) -> None:
    """Release a legal hold (compliance role)."""
    print_detail(client_of(ctx).post(f"/v1/backups/{backup}/release"), as_json=as_json, fields=BACKUP_FIELDS)


@app.command("delete")
def delete(ctx: typer.Context, backup: str = typer.Argument(..., help="backup id")) -> None:
    """Delete a backup (refused under legal hold or inside its immutability window)."""
    client_of(ctx).delete(f"/v1/backups/{backup}")
    info(f"backup {backup} deleted")


# ---- targets and policies ---------------------------------------------------------------------


#: credentials never on the command line (``ps``, shell history): asked for, or read from stdin
SECRET_OPTION = typer.Option(
    [], "--secret", help="KEY of a credential (e.g. aws_secret_access_key): its value is asked for, hidden"
)


def _target_config(config: list[str], secrets: list[str]) -> dict[str, Any]:
    conf: dict[str, Any] = dict(item.split("=", 1) for item in config if "=" in item)
    for key in secrets:
        if sys.stdin.isatty():
            conf[key] = typer.prompt(key, hide_input=True)
        else:
            conf[key] = sys.stdin.readline().rstrip("\n")
    return conf


#: each kind's settings, as ``--set KEY=VALUE`` (credentials with ``--secret KEY``): the create help
TARGET_KINDS_HELP = """Create a backup target (admins): where backups are stored.

Each kind takes its settings as --set KEY=VALUE (repeatable); credentials as --secret KEY (the
value is asked for, hidden, or read from stdin), never on the command line:

\b
  local   path=/var/lib/novacron/backups   (absolute; a new or empty directory, or an existing store)
  s3      bucket=NAME  [prefix=P] [endpoint_url=URL] [region_name=R]
          --secret aws_access_key_id --secret aws_secret_access_key
  azure   container=NAME  [prefix=P]   --secret connection_string
  gcs     bucket=NAME  [prefix=P] [project=ID] [endpoint=URL]
  any     url=file:///DIR | s3://BUCKET/PREFIX | azure://CONTAINER/PREFIX | gs://BUCKET/PREFIX

\b
Example:
  novacron backup target create main --kind local --set path=/var/lib/novacron/backups
"""


@target_app.command("create", help=TARGET_KINDS_HELP)
def target_create(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    kind: str = typer.Option("local", "--kind", "--type", help="local, s3, azure or gcs"),
    config: list[str] = typer.Option([], "--set", help="KEY=VALUE of the target's settings (see above)"),
    secret: list[str] = SECRET_OPTION,
    replicate_to: str | None = typer.Option(None, "--replicate-to", help="copy it to this target (DR site)"),
    replicate_every: int = typer.Option(300, "--replicate-every", help="seconds between replication passes"),
    as_json: bool = JSON,
) -> None:
    conf = _target_config(config, secret)
    body: dict[str, Any] = {"name": name, "type": kind, "config": conf}
    if replicate_to:
        body.update(replicate_to=replicate_to, replicate_every_s=replicate_every)
    print_detail(client_of(ctx).post("/v1/backup-targets", body), as_json=as_json)


@target_app.command("update")
def target_update(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="target name or id"),
    config: list[str] = typer.Option([], "--set", help="KEY=VALUE to change, repeatable; KEY= removes it"),
    secret: list[str] = SECRET_OPTION,
    new_name: str | None = typer.Option(None, "--name", help="rename the target (its id stays)"),
    replicate_every: int | None = typer.Option(None, "--replicate-every", help="seconds between passes"),
    as_json: bool = JSON,
) -> None:
    """Change a target's settings (e.g. new credentials), its name or its replication interval;
    credentials not given are kept, and are never shown back."""
    conf: dict[str, Any] = {k: (v if v != "" else None) for k, v in _target_config(config, secret).items()}
    body: dict[str, Any] = {"config": conf or None, "name": new_name, "replicate_every_s": replicate_every}
    body = {k: v for k, v in body.items() if v is not None}
    if not body:
        raise CliError("nothing to change: give --set, --secret, --name or --replicate-every")
    print_detail(client_of(ctx).patch(f"/v1/backup-targets/{name}", body), as_json=as_json)


@target_app.command("delete")
def target_delete(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="target name or id"),
    force: bool = typer.Option(
        False,
        "--force",
        help="also delete every backup stored on it (refused for held or immutable backups); "
        "without it a target holding backups is refused",
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation with --force"),
) -> None:
    """Delete a backup target. Refused while schedules or replication use it, and while it holds
    backups unless --force (which deletes them). The directory or bucket itself is left in place."""
    client = client_of(ctx)
    target = client.get(f"/v1/backup-targets/{name}")
    if force and not yes and sys.stdin.isatty():
        typer.confirm(f"Delete target {target['name']} and every backup stored on it?", abort=True)
    client.delete(f"/v1/backup-targets/{target['id']}" + ("?force=true" if force else ""))
    info(f"Deleted backup target {target['name']}.")


@target_app.command("list")
def target_list(ctx: typer.Context, as_json: bool = JSON) -> None:
    print_list(
        client_of(ctx).get("/v1/backup-targets"),
        [
            ("NAME", "name"),
            ("ID", "id"),
            ("TYPE", "type"),
            ("CHUNK", lambda t: human_size(t.get("chunk_size"))),
        ],
        as_json=as_json,
        empty="No targets.",
    )


@policy_app.command("create")
def policy_create(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    vm: str | None = typer.Option(None, "--vm", help="one VM (default: every VM of the project)"),
    project: str | None = typer.Option(None, "--project", help="project name or id"),
    target: str | None = typer.Option(None, "--target"),
    every: int = typer.Option(86400, "--every", help="seconds between backups"),
    keep: list[str] = typer.Option(
        [], "--keep", help="GFS: last=N, hourly=N, daily=N, weekly=N, monthly=N, yearly=N"
    ),
    immutable: int = typer.Option(
        0, "--immutable", help="seconds a backup cannot be deleted after it is taken"
    ),
    as_json: bool = JSON,
) -> None:
    """Create a backup policy: a schedule and a GFS retention for one VM or a whole project."""
    client = client_of(ctx)
    retention = {}
    for item in keep:
        key, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise CliError(
                f"--keep expects RULE=N (last, hourly, daily, weekly, monthly, yearly), got '{item}'"
            )
        retention[key if key.startswith("keep_") else f"keep_{key}"] = int(value)
    body: dict[str, Any] = {
        "name": name,
        "interval_s": every,
        "retention": retention,
        "immutable_s": immutable,
    }
    if vm:
        body["vm"] = str(resolve_vm(ctx, vm)["id"])
    if project:
        body["project_id"] = project_id(client, project)
    if target:
        body["target"] = target
    print_detail(client.post("/v1/backup-policies", body), as_json=as_json)


@policy_app.command("list")
def policy_list(ctx: typer.Context, as_json: bool = JSON) -> None:
    client = client_of(ctx)
    page = client.list_all("/v1/backup-policies")
    vms = {} if as_json else names_of(client, "/v1/vms")
    print_list(
        page,
        [
            ("NAME", "name"),
            ("ID", "id"),
            ("VM", lambda p: vms.get(p.get("vm_id") or "", p.get("vm_id") or "(every VM)")),
            ("EVERY S", "interval_s"),
            ("RETENTION", "retention"),
            ("LAST RUN", lambda p: ago(p.get("last_run_at"))),
        ],
        as_json=as_json,
        empty="No policies.",
    )


@policy_app.command("delete")
def policy_delete(ctx: typer.Context, policy: str = typer.Argument(..., help="policy id")) -> None:
    client_of(ctx).delete(f"/v1/backup-policies/{policy}")
    info(f"policy {policy} deleted")


# ---- DR ---------------------------------------------------------------------------------------


@runbook_app.command("create")
def runbook_create(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    vm: list[str] = typer.Option([], "--vm", help="VM to restore (in order): NAME[:NEW_NAME[:MARKER]]"),
    rpo: int = typer.Option(86400, "--rpo", help="RPO target in seconds"),
    rto: int = typer.Option(3600, "--rto", help="RTO target in seconds"),
    project: str | None = typer.Option(None, "--project"),
    recovery_group: str | None = typer.Option(None, "--recovery-group", help="aggregate to fail over to"),
    network_map: list[str] = typer.Option([], "--map", help="SOURCE_NET=RECOVERY_NET, repeatable"),
    test_network: str | None = typer.Option(None, "--test-network", help="dry runs' network (default none)"),
    steps_file: str | None = typer.Option(
        None, "--steps-file", help="JSON list of steps (vm, name, health, hooks) instead of --vm"
    ),
    as_json: bool = JSON,
) -> None:
    """Create a runbook: the VMs to bring back from their newest backups, in order."""
    import json
    from pathlib import Path

    client = client_of(ctx)
    steps: list[dict[str, Any]] = json.loads(Path(steps_file).read_text()) if steps_file else []
    for item in vm:
        parts = item.split(":", 2)
        step: dict[str, str] = {"vm": parts[0]}
        if len(parts) > 1 and parts[1]:
            step["name"] = parts[1]
        if len(parts) > 2 and parts[2]:
            step["wait_for"] = parts[2]
        steps.append(step)
    body: dict[str, Any] = {"name": name, "steps": steps, "rpo_target_s": rpo, "rto_target_s": rto}
    if recovery_group:
        body["recovery_group"] = recovery_group
    if network_map:
        body["network_map"] = dict(item.split("=", 1) for item in network_map if "=" in item)
    if test_network:
        body["test_network"] = test_network
    if project:
        body["project_id"] = project_id(client, project)
    print_detail(client.post("/v1/dr/runbooks", body), as_json=as_json)


def _runbook(ctx: typer.Context, ref: str) -> dict[str, Any]:
    from novacron.cli.client import resolve

    found = resolve(client_of(ctx), "dr/runbooks", ref, "runbook")
    return dict(client_of(ctx).get(f"/v1/dr/runbooks/{found['id']}"))


@runbook_app.command("show")
def runbook_show(ctx: typer.Context, runbook: str = typer.Argument(...), as_json: bool = JSON) -> None:
    """Show a runbook with each VM's RPO now and the last drill's RTO."""
    print_detail(_runbook(ctx, runbook), as_json=as_json)


@runbook_app.command("run")
def runbook_run(ctx: typer.Context, runbook: str = typer.Argument(...), as_json: bool = JSON) -> None:
    """Drill the runbook: restore its VMs in order from their newest backups, measure RPO and RTO."""
    found = _runbook(ctx, runbook)
    accepted = client_of(ctx).post(f"/v1/dr/runbooks/{found['id']}/drill")
    _follow(ctx, accepted, True, as_json, f"DR drill {found['name']}")
    print_detail(client_of(ctx).get(f"/v1/dr/runbooks/{found['id']}")["last_drill"], as_json=as_json)

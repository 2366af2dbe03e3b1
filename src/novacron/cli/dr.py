"""``novacron dr failover|failback``: run a runbook against its recovery host group, with progress."""

from __future__ import annotations

from typing import Any

import typer

from novacron.cli.backup import _runbook, dr_app
from novacron.cli.common import JSON, client_of
from novacron.cli.output import Column, print_json, print_list

STEP_COLUMNS: list[Column] = [
    ("STEP", "step"),
    ("VM", "vm"),
    ("RESTORED AS", lambda r: r.get("name") or r.get("vm_id")),
    ("HOST", lambda r: r.get("host", "")),
    ("HEALTH", lambda r: f"{r['health'].get('kind')} after {r['health'].get('after_s')}s"),
    (
        "HOOKS",
        lambda r: ", ".join(f"{h['when']}:{'ok' if h['ok'] else 'FAILED'}" for h in r.get("hooks", [])),
    ),
    ("UP AFTER", lambda r: f"{r.get('up_after_s')}s"),
]


def _run(ctx: typer.Context, runbook: str, action: str, body: dict[str, Any] | None, as_json: bool) -> None:
    from novacron.cli.watch import watch_task

    client = client_of(ctx)
    found = _runbook(ctx, runbook)
    accepted = client.post(f"/v1/dr/runbooks/{found['id']}/{action}", body)
    label = f"{accepted['kind'].removeprefix('dr.').replace('_', ' ')} {found['name']}"
    task = watch_task(client, accepted["task_id"], label=label, show=not as_json)
    report = dict(task.get("result") or {})
    if as_json:
        print_json(report)
        return
    print_list(
        {"items": report.get("steps", [])}, STEP_COLUMNS, as_json=False, empty="No steps.", title=label
    )
    if "rto_s" in report:
        met = "met" if report["rto_met"] else "MISSED"
        typer.echo(f"RTO {report['rto_s']}s (target {report['rto_target_s']}s: {met})")


@dr_app.command("failover")
def failover(
    ctx: typer.Context,
    runbook: str = typer.Argument(..., help="runbook name or id"),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="restore in isolation, check, report, remove: production untouched",
    ),
    as_json: bool = JSON,
) -> None:
    """Fail the runbook's VMs over to its recovery host group from the replicated backups."""
    _run(ctx, runbook, "failover", {"dry_run": dry_run}, as_json)


@dr_app.command("failback")
def failback(
    ctx: typer.Context, runbook: str = typer.Argument(..., help="runbook name or id"), as_json: bool = JSON
) -> None:
    """Back up the recovered VMs at the recovery site and restore them over the originals."""
    _run(ctx, runbook, "failback", None, as_json)

"""``novacron audit verify|checkpoint|export``: prove the audit log, and hand it to a SIEM.

``verify`` exits 1 when the log was tampered with, naming each record edited, deleted or
inserted, and a cut tail; ``export`` writes JSON lines or RFC 5424 syslog lines to stdout.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from novacron.cli.common import JSON, client_of
from novacron.cli.output import out, print_json

app = typer.Typer(no_args_is_help=True)


def _summary(report: dict[str, Any]) -> str:
    last = report.get("last_checkpoint")
    signed = (
        f"last signed checkpoint: {last['count']} records at {last['time']} (key {last['kid']})"
        if last
        else "no signed checkpoint yet"
    )
    return (
        f"{report['records']} records chained, {report['checkpoints']} checkpoints verified; "
        f"{signed}; {report['unsigned']} records since"
    )


@app.command("verify")
def verify(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Walk the hash chain and its signed checkpoints; exit 1 if any record was tampered with."""
    report = client_of(ctx).get("/v1/audit/verify")
    if as_json:
        print_json(report)
    elif report["ok"]:
        out.print(f"[green]Audit log intact.[/] {_summary(report)}")
    else:
        out.print(f"[red]Audit log tampered with:[/] {len(report['problems'])} problems. {_summary(report)}")
        for p in report["problems"]:
            where = f"record {p['record_id']}" if p["record_id"] is not None else f"position {p['seq']}"
            print(f"{p['kind']:<10} {where:<16} {p['detail']}")
    if not report["ok"]:
        raise typer.Exit(1)


@app.command("checkpoint")
def checkpoint(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Sign the chain's head now with the platform's signing key."""
    point = client_of(ctx).post("/v1/audit/checkpoints", {})
    if as_json:
        print_json(point)
    elif point is None:
        out.print("The last checkpoint already covers the whole log.")
    else:
        out.print(f"Checkpoint {point['id']}: {point['count']} records, head {point['head_hash']}.")


@app.command("export")
def export(
    ctx: typer.Context,
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl or syslog (RFC 5424)"),
) -> None:
    """Write the audit log (what you may read), oldest first, to stdout for a SIEM."""
    with client_of(ctx).stream("/v1/audit/export", format=fmt) as response:
        for chunk in response.iter_text():
            sys.stdout.write(chunk)
    sys.stdout.flush()

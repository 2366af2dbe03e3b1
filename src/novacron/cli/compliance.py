"""``novacron compliance run|report|catalogue|export|erase``: the compliance checks, their evidence
report, and GDPR export and erasure of a tenant."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import typer

from novacron.cli.common import JSON, client_of
from novacron.cli.output import Column, out, print_json, print_list

app = typer.Typer(no_args_is_help=True)
TENANT = typer.Option(
    None, "--tenant", help="tenant id or name (default: yours; administrators: the platform)"
)

RESULT_COLUMNS: list[Column] = [
    ("CHECK", "check"),
    ("STATUS", "status"),
    ("SUMMARY", "summary"),
]


def _scope(tenant: str | None) -> dict[str, str]:
    return {"tenant_id": tenant} if tenant else {}


@app.command("run")
def run(ctx: typer.Context, tenant: str | None = TENANT, as_json: bool = JSON) -> None:
    """Run every check now and show each one's status (the evidence: ``report``)."""
    result = client_of(ctx).post("/v1/compliance/runs", {"tenant_id": tenant})
    if as_json:
        print_json(result)
        return
    print_list({"items": result["results"]}, RESULT_COLUMNS, as_json=False, empty="No checks.")
    scope = result["tenant_id"] or "the platform"
    out.print(
        f"run {result['id']} for {scope}: {result['passed']} passed, {result['failed']} failed, "
        f"{result['not_applicable']} not applicable"
    )
    if result["failed"]:
        raise typer.Exit(2)


@app.command("report")
def report(
    ctx: typer.Context,
    tenant: str | None = TENANT,
    fmt: str = typer.Option("html", "--format", help="html, csv or json"),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="file to write (default: standard output)"
    ),
) -> None:
    """The evidence report of the last run (every check, when it looked, what it found, the controls)."""
    if fmt not in ("html", "csv", "json"):
        raise typer.BadParameter("html, csv or json", param_hint="--format")
    r = client_of(ctx).send("GET", "/v1/compliance/report", params={**_scope(tenant), "format": fmt})
    if output is None:
        typer.echo(r.text)
        return
    output.write_bytes(r.content)
    out.print(f"wrote {output} ({len(r.content)} bytes)")


@app.command("catalogue")
def catalogue(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Each framework control and the checks that give evidence for it."""
    data = client_of(ctx).get("/v1/compliance/catalogue")
    columns: list[Column] = [
        ("FRAMEWORK", "framework"),
        ("CONTROL", "id"),
        ("TITLE", "title"),
        ("CHECKS", lambda c: ", ".join(c["checks"])),
    ]
    print_list({"items": data["controls"]}, columns, as_json=as_json, empty="No controls.")


@app.command("export")
def export(
    ctx: typer.Context,
    tenant: str,
    output: Path = typer.Option(..., "-o", "--output", help="the zip file to write"),
    timeout: float = typer.Option(3600, help="seconds to wait for the export task"),
) -> None:
    """GDPR export: a zip of the tenant's rows (JSON per table) and its audit records, made by a
    durable task (its progress shown), then downloaded."""
    from novacron.cli.watch import watch_task

    client = client_of(ctx)
    ref = quote(tenant, safe="")
    accepted = client.post(f"/v1/tenants/{ref}/exports")
    watch_task(client, accepted["task_id"], label=f"export of {tenant}", timeout_s=timeout)
    r = client.send("GET", f"/v1/tenants/{ref}/exports/{accepted['task_id']}", timeout=600)
    output.write_bytes(r.content)
    out.print(f"wrote {output} ({len(r.content)} bytes)")


@app.command("erase")
def erase(
    ctx: typer.Context,
    tenant: str,
    yes: bool = typer.Option(False, "--yes", help="do not ask"),
    as_json: bool = JSON,
) -> None:
    """GDPR erasure: anonymise the tenant's users, then delete the tenant (platform administrators)."""
    if not yes:
        typer.confirm(f"Erase tenant {tenant}'s personal data and delete it?", abort=True)
    result = client_of(ctx).post(f"/v1/tenants/{quote(tenant, safe='')}/erase")
    if as_json:
        print_json(result)
        return
    done = "tenant deleted" if result["tenant_deleted"] else f"tenant kept: {result['kept_because']}"
    out.print(f"{result['users_anonymised']} users anonymised; {done}")

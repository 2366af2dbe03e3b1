"""``novacron quota|reservation|usage|policy|budget|price``: limits, bookings, consumption and rules."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from novacron.cli import usage_report as usage_report_of
from novacron.cli.client import ApiError, Client, CliError, resolve
from novacron.cli.common import CURSOR, JSON, LIMIT, client_of, create_in_project, project_id
from novacron.cli.output import (
    Column,
    info,
    local_time,
    mib,
    money,
    out,
    print_detail,
    print_json,
    print_list,
    table_box,
)

quota_app = typer.Typer(no_args_is_help=True)
reservation_app = typer.Typer(no_args_is_help=True)
usage_app = typer.Typer(no_args_is_help=True)
policy_app = typer.Typer(no_args_is_help=True)
budget_app = typer.Typer(no_args_is_help=True)
price_app = typer.Typer(no_args_is_help=True)

TENANT = typer.Option(None, "--tenant", "-t", help="tenant id or name")
PROJECT = typer.Option(None, "--project", "-p", help="project id or name")


def tenant_id(client: Client, ref: str) -> str:
    """A tenant id from an id or a name, as the server resolves it."""
    return str(resolve(client, "tenants", ref, "tenant")["id"])


def _node_params(client: Client, tenant: str | None, project: str | None, user: str | None) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id(client, tenant) if tenant else None,
        "project_id": project_id(client, project) if project else None,
        "user_id": user,
    }


def _bar(used: int, limit: int | None, width: int = 20) -> str:
    if not limit:
        return "[dim]unlimited[/]"
    frac = min(used / limit, 1.0)
    fill = round(frac * width)
    colour = "red" if used >= limit else "yellow" if frac >= 0.8 else "green"
    return f"[{colour}]{'█' * fill}[/][dim]{'░' * (width - fill)}[/]"


def print_node(node: dict[str, Any]) -> None:
    table = Table(
        title=f"{node['kind']} {escape(node['name'])} ({node['id']})", header_style="bold", box=table_box()
    )
    for col in ("RESOURCE", "USED", "LIMIT", "EFFECTIVE", "", "%"):
        table.add_column(col)
    for r in node["resources"]:
        eff = r["effective_limit"]
        table.add_row(
            r["resource"],
            f"{r['used']} {r['unit']}",
            "inherit" if r["limit"] is None else str(r["limit"]),
            "∞" if eff is None else str(eff),
            _bar(r["used"], eff),
            "" if r["percent"] is None else f"{r['percent']}",
        )
    out.print(table)
    if not node["resources"]:
        out.print("[dim]no limits set and nothing in use[/]")


@quota_app.command("show")
def quota_show(
    ctx: typer.Context,
    tenant: str | None = TENANT,
    project: str | None = PROJECT,
    user: str | None = typer.Option(None, "--user", help="user id (with --project)"),
    node: str | None = typer.Option(None, "--node", help="a node id (system, tenant:<id>, project:<id>)"),
    children: bool = typer.Option(False, "--children", help="also show the node's children"),
    as_json: bool = JSON,
) -> None:
    """Limits and usage of a node of the quota tree (your tenant by default), as bars."""
    client = client_of(ctx)
    params = {"node_id": node} if node else _node_params(client, tenant, project, user)
    data = client.get("/v1/quota", **params)
    kids = client.list_all("/v1/quota/nodes", parent_id=data["id"])["items"] if children else []
    if as_json:
        print_json({**data, "children": kids} if children else data)
        return
    print_node(data)
    for kid in kids:
        print_node(kid)


@quota_app.command("set")
def quota_set(
    ctx: typer.Context,
    limits: list[str] = typer.Argument(..., help="RESOURCE=N (or RESOURCE=inherit to unset), e.g. vcpus=32"),
    tenant: str | None = TENANT,
    project: str | None = PROJECT,
    user: str | None = typer.Option(None, "--user", help="user id (with --project)"),
    node: str | None = typer.Option(None, "--node", help="a node id"),
    as_json: bool = JSON,
) -> None:
    """Set limits; they apply at once. A child's limit cannot exceed its parent's."""
    client = client_of(ctx)
    body: dict[str, int | None] = {}
    for item in limits:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CliError(f"'{item}': expected RESOURCE=N")
        if value in ("inherit", "none", ""):
            body[name] = None
        else:
            try:
                body[name] = int(value)
            except ValueError:
                raise CliError(f"'{item}': {value!r} is not a whole number") from None
    params = {"node_id": node} if node else _node_params(client, tenant, project, user)
    current = client.get("/v1/quota", **params)
    r = client.send(
        "PATCH",
        f"/v1/quota/nodes/{current['id']}",
        json_body={"limits": body},
        headers={"If-Match": f'"{current["id"]}.v{current["version"]}"'},
    ).json()
    if as_json:
        print_json(r)
        return
    print_node(r)
    for note in r.get("notes", []):
        info(f"[yellow]{escape(note)}[/]")


@quota_app.command("reconcile")
def quota_reconcile(
    ctx: typer.Context,
    repair: bool = typer.Option(False, "--repair", help="make the counters match what exists"),
    as_json: bool = JSON,
) -> None:
    """Compare counted usage with the resources that really exist (admins)."""
    r = client_of(ctx).post("/v1/quota/reconcile", {"repair": repair})
    if as_json:
        print_json(r)
        return
    if not r["drift"]:
        out.print("[green]No drift: every counter matches what exists.[/]")
        return
    for c in r["orphan_charges"]:
        out.print(f"counted but gone: {c['kind']} {c['id']} ({json.dumps(c['amounts'])})")
    for c in r["missing_charges"]:
        out.print(f"exists but not counted: {c['kind']} {c['id']} ({json.dumps(c['amounts'])})")
    for c in r["changed_charges"]:
        out.print(
            f"size changed: {c['kind']} {c['id']} {json.dumps(c['charged'])} → {json.dumps(c['actual'])}"
        )
    for c in r["counters"]:
        out.print(f"counter {c['node']} {c['resource']}: counted {c['counted']}, actual {c['actual']}")
    out.print("[green]Repaired.[/]" if r["repaired"] else "[yellow]Run with --repair to fix.[/]")


# -- reservations ---------------------------------------------------------------------------------

RES_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("STATUS", "status"),
    ("VCPUS", lambda r: f"{r['vcpus_used']} of {r['vcpus']}"),
    ("RAM", lambda r: f"{mib(r['ram_mb_used'])} of {mib(r['ram_mb'])}"),
    ("FROM", lambda r: local_time(r.get("starts_at"))),
    ("TO", lambda r: local_time(r.get("ends_at"))),
    ("HOST", "host_id"),
]


def _when(value: str) -> str:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"'{value}' is not a time like 2026-11-30T09:00Z") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # the user's local zone
    return dt.isoformat()


@reservation_app.command("create")
def reservation_create(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    vcpus: int = typer.Option(..., "--vcpus", min=1),
    ram_mb: int = typer.Option(..., "--ram-mb", min=1),
    start: str = typer.Option(..., "--start", help="window start, ISO 8601 (local time without a zone)"),
    end: str = typer.Option(..., "--end", help="window end, ISO 8601"),
    project: str | None = PROJECT,
    host: str | None = typer.Option(None, "--host", help="book on this host (admins)"),
    as_json: bool = JSON,
) -> None:
    """Book capacity for a project during a window; the scheduler keeps it free for that project."""
    client = client_of(ctx)
    body: dict[str, Any] = {
        "name": name,
        "vcpus": vcpus,
        "ram_mb": ram_mb,
        "starts_at": _when(start),
        "ends_at": _when(end),
    }
    if host:
        body["host"] = host
    r = create_in_project(client, "/v1/reservations", body, project)
    print_detail(r, as_json=as_json)


@reservation_app.command("list")
def reservation_list(
    ctx: typer.Context,
    project: str | None = PROJECT,
    status: str | None = typer.Option(None, "--status"),
    limit: int | None = LIMIT,
    cursor: str | None = CURSOR,
    as_json: bool = JSON,
) -> None:
    """Bookings you can see, by start time."""
    client = client_of(ctx)
    data = client.list_all(
        "/v1/reservations",
        limit=limit,
        cursor=cursor,
        status=status,
        project_id=project_id(client, project) if project else None,
    )
    print_list(data, RES_COLUMNS, as_json=as_json, empty="No reservations.")


@reservation_app.command("delete")
def reservation_delete(
    ctx: typer.Context, ref: str = typer.Argument(..., help="id or name"), as_json: bool = JSON
) -> None:
    """Cancel a booking: its unused room is freed at once."""
    r = client_of(ctx).delete(f"/v1/reservations/{ref}")
    if as_json:
        print_json(r)
    else:
        info(f"Reservation {r['name']} is {r['status']}.")


# -- usage, budgets, prices, policy rules ---------------------------------------------------------


@usage_app.command("report")
def usage_report(
    ctx: typer.Context,
    tenant: str | None = TENANT,
    month: str | None = typer.Option(None, "--month", help="YYYY-MM (default: this month)"),
    fmt: str = typer.Option("table", "--format", "-f", help="table, json or csv"),
) -> None:
    """Metered consumption and cost per project and resource for a month (a platform administrator
    without --tenant: every tenant's)."""
    usage_report_of.show(client_of(ctx), tenant, month, fmt)


@usage_app.command("meter")
def usage_meter(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Meter now (admins): the ledger gets the consumption since the last run."""
    print_detail(client_of(ctx).post("/v1/usage/meter"), as_json=as_json)


@budget_app.command("set")
def budget_set(
    ctx: typer.Context,
    amount: float = typer.Argument(..., min=0),
    tenant: str | None = TENANT,
    project: str | None = PROJECT,
    month: str | None = typer.Option(None, "--month", help="YYYY-MM; absent: every month"),
    as_json: bool = JSON,
) -> None:
    """Set a tenant's or project's monthly budget."""
    client = client_of(ctx)
    body = {
        "amount": amount,
        "month": month,
        "tenant_id": tenant_id(client, tenant) if tenant else None,
        "project_id": project_id(client, project) if project else None,
    }
    r = client.send("PUT", "/v1/budgets", json_body={k: v for k, v in body.items() if v is not None}).json()
    print_detail(r, as_json=as_json)


@budget_app.command("list")
def budget_list(ctx: typer.Context, as_json: bool = JSON) -> None:
    client = client_of(ctx)
    cur = "" if as_json else _currency(client)
    cols: list[Column] = [
        ("ID", "id"),
        ("NODE", "node_id"),
        ("MONTH", lambda b: b["month"] or "every"),
        ("AMOUNT", lambda b: money(b["amount"], cur)),
        ("SPENT", lambda b: money(b["spent"], cur)),
    ]
    print_list(client.list_all("/v1/budgets"), cols, as_json=as_json, empty="No budgets.")


def _currency(client: Client) -> str:
    """The price list's currency (budgets are in it); none when the caller may not read prices."""
    try:
        items = client.get("/v1/prices").get("items") or []
    except ApiError:
        return ""
    return str(items[0].get("currency", "")) if items else ""


@price_app.command("set")
def price_set(ctx: typer.Context, resource: str, per_hour: float = typer.Argument(..., min=0)) -> None:
    """Price of one billing unit of RESOURCE for one hour (admins)."""
    client_of(ctx).send("PUT", f"/v1/prices/{resource}", json_body={"per_hour": per_hour})
    info(f"{resource}: {per_hour} per hour")


@price_app.command("list")
def price_list(ctx: typer.Context, as_json: bool = JSON) -> None:
    cols: list[Column] = [
        ("RESOURCE", "resource"),
        ("UNIT", "billing_unit"),
        ("PER HOUR", lambda p: money(p["per_hour"], p.get("currency", ""))),
    ]
    print_list(client_of(ctx).get("/v1/prices"), cols, as_json=as_json, empty="No resources.")


@policy_app.command("list")
def policy_list(ctx: typer.Context, as_json: bool = JSON) -> None:
    cols: list[Column] = [
        ("NAME", "name"),
        ("KIND", "kind"),
        ("RESOURCE", "resource"),
        ("ROLE", "role"),
        ("NODE", "node_id"),
        ("PARAMS", lambda r: json.dumps(r["params"])),
        ("ENABLED", "enabled"),
    ]
    print_list(client_of(ctx).list_all("/v1/policy-rules"), cols, as_json=as_json, empty="No policy rules.")


@policy_app.command("create")
def policy_create(
    ctx: typer.Context,
    name: str,
    kind: str = typer.Option(..., "--kind", help="threshold, burst or max_size"),
    params: list[str] = typer.Argument(..., help="KEY=NUMBER, e.g. warn_pct=80 deny_pct=100"),
    resource: str = typer.Option("*", "--resource"),
    role: str | None = typer.Option(None, "--role"),
    node: str | None = typer.Option(None, "--node"),
    as_json: bool = JSON,
) -> None:
    """Add a rule, e.g. ``policy create big-vms --kind max_size --resource vcpus --role member max=8``."""
    values: dict[str, float] = {}
    for p in params:
        k, _, v = p.partition("=")
        try:
            values[k] = float(v)
        except ValueError:
            raise CliError(f"'{p}': expected KEY=NUMBER") from None
    body = {"name": name, "kind": kind, "resource": resource, "role": role, "node_id": node, "params": values}
    r = (
        client_of(ctx)
        .send(
            "POST",
            "/v1/policy-rules",
            json_body={k: v for k, v in body.items() if v is not None},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        .json()
    )
    print_detail(r, as_json=as_json)


@policy_app.command("delete")
def policy_delete(ctx: typer.Context, name: str) -> None:
    client_of(ctx).delete(f"/v1/policy-rules/{name}")
    info(f"Rule {name} deleted.")

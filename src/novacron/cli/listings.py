"""The list/show/delete commands a resource was missing (routers, floating IPs, subnets, security
groups, flavors, DR runbooks) and the identity listings (tenants, projects, users), all over existing
API routes; and the names shown for ids in listings, resolved from one listing per kind of resource.

The commands join the apps of their resource on import (cli/main.py imports this module)."""

from __future__ import annotations

from typing import Any

import typer

from novacron.cli.backup import runbook_app
from novacron.cli.client import Client, resolve
from novacron.cli.common import CURSOR, JSON, LIMIT, client_of
from novacron.cli.misc import flavor_app
from novacron.cli.names import names_of
from novacron.cli.network import RULE_COLUMNS, fip_app, router_app, sg_app, subnet_app
from novacron.cli.output import Column, ago, info, print_detail, print_list, print_table

tenant_app = typer.Typer(no_args_is_help=True)
project_app = typer.Typer(no_args_is_help=True)
user_app = typer.Typer(no_args_is_help=True)

# ---------------------------------------------------------------- routers and floating IPs

ROUTER_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("GATEWAY", lambda r: r.get("external_ip") or ""),
    ("SNAT", "snat"),
    ("INTERFACES", lambda r: len(r.get("interfaces") or [])),
    ("CREATED", lambda r: ago(r.get("created_at"))),
]
FIP_COLUMNS: list[Column] = [
    ("IP", "ip"),
    ("ID", "id"),
    ("NETWORK", "network_name"),
    ("FIXED IP", "fixed_ip"),
    ("PORT", "port_id"),
    ("CREATED", lambda f: ago(f.get("created_at"))),
]


@router_app.command("list")
def router_list(
    ctx: typer.Context, limit: int | None = LIMIT, cursor: str | None = CURSOR, as_json: bool = JSON
) -> None:
    """List routers with their external gateway."""
    page = client_of(ctx).list_all("/v1/routers", limit=limit, cursor=cursor)
    print_list(page, ROUTER_COLUMNS, as_json=as_json, empty="No routers.")


@router_app.command("show")
def router_show(
    ctx: typer.Context, router: str = typer.Argument(..., help="name or id"), as_json: bool = JSON
) -> None:
    """Show a router with its interfaces."""
    print_detail(resolve(client_of(ctx), "routers", router, "router"), as_json=as_json)


@fip_app.command("list")
def fip_list(
    ctx: typer.Context, limit: int | None = LIMIT, cursor: str | None = CURSOR, as_json: bool = JSON
) -> None:
    """List floating IPs and the address each is DNATed to."""
    client = client_of(ctx)
    page = client.list_all("/v1/floating-ips", limit=limit, cursor=cursor)
    networks = names_of(client, "/v1/networks") if not as_json else {}
    for f in page["items"]:
        f.setdefault("network_name", networks.get(f["network_id"], f["network_id"]))
    print_list(page, FIP_COLUMNS, as_json=as_json, empty="No floating IPs.")


# ---------------------------------------------------------------- subnets, security groups, flavors


@subnet_app.command("show")
def subnet_show(
    ctx: typer.Context, subnet: str = typer.Argument(..., help="name or id"), as_json: bool = JSON
) -> None:
    """Show a subnet: its range, gateway, pools, DNS servers and routes."""
    print_detail(resolve(client_of(ctx), "subnets", subnet, "subnet"), as_json=as_json)


@sg_app.command("show")
def sg_show(
    ctx: typer.Context, group: str = typer.Argument(..., help="name or id"), as_json: bool = JSON
) -> None:
    """Show a security group and its rules."""
    found = resolve(client_of(ctx), "security-groups", group, "security-group")
    if as_json:
        print_detail(found, as_json=True)
        return
    print_detail({k: v for k, v in found.items() if k != "rules"}, as_json=False)
    print_table(found.get("rules") or [], RULE_COLUMNS, title="Rules")


@sg_app.command("delete")
def sg_delete(ctx: typer.Context, group: str = typer.Argument(..., help="name or id")) -> None:
    """Delete a security group (refused while ports use it)."""
    client = client_of(ctx)
    client.delete(f"/v1/security-groups/{resolve(client, 'security-groups', group, 'security-group')['id']}")
    info(f"Deleted security group {group}.")


@flavor_app.command("delete")
def flavor_delete(ctx: typer.Context, flavor: str = typer.Argument(..., help="name or id")) -> None:
    """Delete a flavor (administrators; VMs made from it keep their size)."""
    client = client_of(ctx)
    client.delete(f"/v1/flavors/{resolve(client, 'flavors', flavor, 'flavor')['id']}")
    info(f"Deleted flavor {flavor}.")


# ---------------------------------------------------------------- DR runbooks

RUNBOOK_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("STATE", "state"),
    ("VMS", lambda r: len(r.get("steps") or [])),
    ("RPO TARGET", lambda r: f"{r['rpo_target_s']}s"),
    ("RTO TARGET", lambda r: f"{r['rto_target_s']}s"),
    ("RPO MISSED", lambda r: ", ".join(r.get("rpo_missed") or [])),
    ("LAST DRILL", lambda r: ago(r.get("last_drill_at"))),
]


@runbook_app.command("list")
def runbook_list(
    ctx: typer.Context, limit: int | None = LIMIT, cursor: str | None = CURSOR, as_json: bool = JSON
) -> None:
    """List DR runbooks with their state, targets and last drill."""
    page = client_of(ctx).list_all("/v1/dr/runbooks", limit=limit, cursor=cursor)
    print_list(page, RUNBOOK_COLUMNS, as_json=as_json, empty="No runbooks.")


# ---------------------------------------------------------------- tenants, projects, users (admins)

TENANT_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("DESCRIPTION", "description"),
    ("CREATED", lambda t: ago(t.get("created_at"))),
]
PROJECT_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("TENANT", "tenant_name"),
    ("PARENT", "parent_name"),
    ("DESCRIPTION", "description"),
]
USER_COLUMNS: list[Column] = [
    ("USERNAME", "username"),
    ("ID", "id"),
    ("ROLE", "role"),
    ("TENANT", "tenant_name"),
    ("DISABLED", "disabled"),
    ("CREATED", lambda u: ago(u.get("created_at"))),
]


def _with_tenant_names(client: Client, page: dict[str, Any], as_json: bool) -> dict[str, Any]:
    if as_json:
        return page
    tenants = names_of(client, "/v1/tenants")
    projects = {str(p["id"]): str(p["name"]) for p in page["items"] if "name" in p and "tenant_id" in p}
    for row in page["items"]:
        tid = row.get("tenant_id")
        row["tenant_name"] = tenants.get(tid, tid or "(platform)") if tid else "(platform)"
        if "parent_id" in row:
            row["parent_name"] = projects.get(row["parent_id"], row["parent_id"]) if row["parent_id"] else ""
    return page


@tenant_app.command("list")
def tenant_list(
    ctx: typer.Context, limit: int | None = LIMIT, cursor: str | None = CURSOR, as_json: bool = JSON
) -> None:
    """List tenants (platform administrators see every tenant, others their own)."""
    page = client_of(ctx).list_all("/v1/tenants", limit=limit, cursor=cursor)
    print_list(page, TENANT_COLUMNS, as_json=as_json, empty="No tenants.")


@tenant_app.command("show")
def tenant_show(
    ctx: typer.Context, tenant: str = typer.Argument(..., help="name or id"), as_json: bool = JSON
) -> None:
    """Show a tenant."""
    print_detail(resolve(client_of(ctx), "tenants", tenant, "tenant"), as_json=as_json)


@project_app.command("list")
def project_list(
    ctx: typer.Context, limit: int | None = LIMIT, cursor: str | None = CURSOR, as_json: bool = JSON
) -> None:
    """List projects with their tenant and parent."""
    client = client_of(ctx)
    page = client.list_all("/v1/projects", limit=limit, cursor=cursor)
    print_list(
        _with_tenant_names(client, page, as_json), PROJECT_COLUMNS, as_json=as_json, empty="No projects."
    )


@project_app.command("show")
def project_show(
    ctx: typer.Context, project: str = typer.Argument(..., help="name or id"), as_json: bool = JSON
) -> None:
    """Show a project."""
    print_detail(resolve(client_of(ctx), "projects", project, "project"), as_json=as_json)


@user_app.command("list")
def user_list(
    ctx: typer.Context, limit: int | None = LIMIT, cursor: str | None = CURSOR, as_json: bool = JSON
) -> None:
    """List users with their role and tenant (administrators)."""
    client = client_of(ctx)
    page = client.list_all("/v1/users", limit=limit, cursor=cursor)
    print_list(_with_tenant_names(client, page, as_json), USER_COLUMNS, as_json=as_json, empty="No users.")


@user_app.command("show")
def user_show(
    ctx: typer.Context, user: str = typer.Argument(..., help="username or id"), as_json: bool = JSON
) -> None:
    """Show a user (never a password: the API does not give it)."""
    print_detail(resolve(client_of(ctx), "users", user, "user"), as_json=as_json)

"""``novacron role ...``, ``novacron role-assignment ...`` and ``novacron auth explain``: custom
roles from the permission catalogue, who holds which role where, and why a request is allowed."""

from __future__ import annotations

from typing import Any

import typer

from novacron.cli.common import JSON, client_of
from novacron.cli.output import Column, out, print_detail, print_json, print_list

role_app = typer.Typer(no_args_is_help=True)
assignment_app = typer.Typer(no_args_is_help=True)
auth_app = typer.Typer(no_args_is_help=True)


@auth_app.callback()
def _auth() -> None:
    """Authorization: why a request is allowed or refused (a group even with one command)."""


LABEL = typer.Option([], "--label", "-l", help="KEY=VALUE: only on resources labelled so (repeat)")
PERMISSION = typer.Option([], "--permission", "-p", help="a permission of the catalogue (repeat)")


def _labels(pairs: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"'{pair}' is not KEY=VALUE", param_hint="--label")
        labels[key] = value
    return labels


def _shown_labels(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels.items()) or "-"


ROLE_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("KIND", lambda r: "built-in" if r["builtin"] else "custom"),
    ("LABELS", lambda r: _shown_labels(r["labels"])),
    ("PERMISSIONS", lambda r: ", ".join(r["permissions"])),
]
ASSIGNMENT_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("HOLDER", lambda a: a["user_id"] or f"key {a['api_key_id']}"),
    ("ROLE", "role"),
    ("SCOPE", lambda a: f"project {a['project_id']}" if a["project_id"] else "tenant"),
    ("LABELS", lambda a: _shown_labels(a["labels"])),
]


@role_app.command("list")
def list_roles(ctx: typer.Context, as_json: bool = JSON) -> None:
    """The built-in roles (read-only) and your tenant's custom roles."""
    rows = client_of(ctx).get("/v1/roles")
    print_list({"items": rows}, ROLE_COLUMNS, as_json=as_json, empty="No roles.")


@role_app.command("show")
def show_role(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """One role (by name, or a custom role's id) and its permissions."""
    print_detail(client_of(ctx).get(f"/v1/roles/{name}"), as_json=as_json)


@role_app.command("create")
def create_role(
    ctx: typer.Context,
    name: str,
    permission: list[str] = PERMISSION,
    label: list[str] = LABEL,
    description: str = typer.Option("", "--description"),
    as_json: bool = JSON,
) -> None:
    """A custom role of your tenant: permissions you hold, optionally only on labelled resources."""
    body = {"name": name, "permissions": permission, "labels": _labels(label), "description": description}
    role = client_of(ctx).post("/v1/roles", body)
    if as_json:
        print_json(role)
        return
    out.print(f"role {role['name']} ({role['id']}): {', '.join(role['permissions'])}")


@role_app.command("update")
def update_role(
    ctx: typer.Context,
    name: str,
    permission: list[str] = PERMISSION,
    label: list[str] = LABEL,
    clear_labels: bool = typer.Option(False, "--clear-labels", help="act on resources of any labels"),
    description: str | None = typer.Option(None, "--description"),
    as_json: bool = JSON,
) -> None:
    """Change a custom role: its permissions (replaced when given), labels, description."""
    body: dict[str, Any] = {"description": description}
    if permission:
        body["permissions"] = permission
    if label or clear_labels:
        body["labels"] = _labels(label)
    role = client_of(ctx).patch(f"/v1/roles/{name}", {k: v for k, v in body.items() if v is not None})
    print_detail(role, as_json=as_json)


@role_app.command("delete")
def delete_role(ctx: typer.Context, name: str) -> None:
    """Delete a custom role nobody is assigned."""
    client_of(ctx).delete(f"/v1/roles/{name}")
    out.print(f"deleted role {name}")


@assignment_app.command("list")
def list_assignments(
    ctx: typer.Context,
    user: str | None = typer.Option(None, "--user", help="only this user's (id or username)"),
    as_json: bool = JSON,
) -> None:
    """Who holds which role, on the tenant or a project, under which label conditions."""
    rows = client_of(ctx).get("/v1/role-assignments", **({"user": user} if user else {}))
    print_list({"items": rows}, ASSIGNMENT_COLUMNS, as_json=as_json, empty="No role assignments.")


@assignment_app.command("create")
def create_assignment(
    ctx: typer.Context,
    role: str,
    user: str | None = typer.Option(None, "--user", help="the user (id or username) who holds it"),
    api_key: str | None = typer.Option(None, "--api-key", help="or the API key (id) that holds it"),
    project: str | None = typer.Option(None, "--project", help="only in this project (id or name)"),
    label: list[str] = LABEL,
    as_json: bool = JSON,
) -> None:
    """Give a user or an API key a role, on the tenant or one project, optionally on labelled resources."""
    body = {"role": role, "user": user, "api_key": api_key, "project": project, "labels": _labels(label)}
    made = client_of(ctx).post("/v1/role-assignments", body)
    if as_json:
        print_json(made)
        return
    out.print(f"assignment {made['id']}: {role} on {made['scope']} {made['project_id'] or ''}".rstrip())


@assignment_app.command("delete")
def delete_assignment(ctx: typer.Context, assignment_id: str) -> None:
    """End an assignment; its holder loses the role at its next request."""
    client_of(ctx).delete(f"/v1/role-assignments/{assignment_id}")
    out.print(f"deleted assignment {assignment_id}")


@auth_app.command("explain")
def explain(
    ctx: typer.Context,
    user: str = typer.Argument(..., help="a user (id or username): yourself, or one you administer"),
    action: str = typer.Argument(..., help="a permission, e.g. vm:delete"),
    resource: str = typer.Argument(..., help="vm/<id or name>, project/<id or name> or tenant"),
    as_json: bool = JSON,
) -> None:
    """Would USER be allowed ACTION on RESOURCE now, and which role assignment (or why none) decides."""
    answer = client_of(ctx).get("/v1/auth/explain", user=user, action=action, resource=resource)
    if as_json:
        print_json(answer)
        return
    verdict = "[green]ALLOW[/]" if answer["decision"] == "allow" else "[red]DENY[/]"
    out.print(f"{verdict} {answer['username']} {action} on {answer['resource']}")
    for reason in answer["reasons"]:
        out.print(f"  - {reason}")

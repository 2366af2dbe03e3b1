"""``novacron api-key create|list|show|revoke``: machine identities for scripts, CI jobs and the SDK.

A key's token is printed once, when it is made; use it as ``NOVACRON_TOKEN=nck_...``.
"""

from __future__ import annotations

from typing import Any

import typer

from novacron.cli.common import JSON, client_of
from novacron.cli.output import Column, ago, human_time, out, print_detail, print_json, print_list

app = typer.Typer(no_args_is_help=True)


def _last_used(key: dict[str, Any]) -> str:
    return f"{ago(key['last_used_at'])} from {key['last_used_from']}" if key["last_used_at"] else "never"


COLUMNS: list[Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("STATE", "state"),
    ("PERMISSIONS", lambda k: ", ".join(k["permissions"])),
    ("PROJECT", lambda k: k.get("project_id") or "(whole tenant)"),
    ("EXPIRES", lambda k: human_time(k["expires_at"])),
    ("LAST USED", _last_used),
]


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="unique among your keys, e.g. ci-deploy"),
    permission: list[str] = typer.Option(
        [], "--permission", "-p", help="a permission it may use (repeat); none given: all of yours"
    ),
    expires_in_days: int = typer.Option(90, "--expires-in-days", help="1 to 365"),
    project: str | None = typer.Option(
        None, "--project", help="limit it to one project (name or id): it acts only on that project's VMs"
    ),
    as_json: bool = JSON,
) -> None:
    """A new key acting as you with the permissions given; its token is shown only now."""
    body = {"name": name, "permissions": permission or None, "expires_in_days": expires_in_days}
    if project is not None:
        body["project"] = project
    key = client_of(ctx).post("/v1/api-keys", body)
    if as_json:
        print_json(key)
        return
    out.print(f"API key {key['name']} ({key['id']}), expires {human_time(key['expires_at'])}")
    out.print(f"permissions: {', '.join(key['permissions'])}")
    if key.get("project_id"):
        out.print(f"project: {key['project_id']} (only its VMs)")
    out.print("token (shown only now, store it safely; use it as NOVACRON_TOKEN):")
    print(key["token"])


@app.command("list")
def list_keys(
    ctx: typer.Context,
    everyone: bool = typer.Option(False, "--all", help="the keys of every user you administer too"),
    as_json: bool = JSON,
) -> None:
    """Your API keys (with --all: your tenant's, or every tenant's for platform admins)."""
    data = client_of(ctx).get("/v1/api-keys", everyone=everyone)
    print_list(data, COLUMNS, as_json=as_json, empty="No API keys.")


@app.command("show")
def show(ctx: typer.Context, key_id: str, as_json: bool = JSON) -> None:
    """One key: its permissions, expiry, and when and from where it was last used."""
    print_detail(client_of(ctx).get(f"/v1/api-keys/{key_id}"), as_json=as_json)


@app.command("revoke")
def revoke(ctx: typer.Context, key_id: str) -> None:
    """End a key at once: the next request made with it is refused."""
    client_of(ctx).delete(f"/v1/api-keys/{key_id}")
    out.print(f"revoked {key_id}")

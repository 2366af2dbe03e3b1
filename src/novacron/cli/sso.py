"""Single sign-on from the CLI: ``novacron login --sso`` (the device authorization grant, RFC 8628)
and ``novacron identity-provider ...`` (a tenant's identity providers, administrators).

The device sign-in prints where to go and the code to enter there (at the provider, in any
browser), then polls the server until the user approved; the server trades the provider's device
code and answers a platform session, stored like a password login's.
"""

from __future__ import annotations

import time
from typing import Any

import typer

from novacron.cli.client import CliError
from novacron.cli.common import JSON, client_of
from novacron.cli.output import Column, info, out, print_detail, print_json, print_list

app = typer.Typer(no_args_is_help=True)


def device_login(client: Any, tenant: str, provider: str | None) -> None:
    """Sign in at ``provider`` of ``tenant`` with the device flow and store the session."""
    if provider is None:
        found = client.send("GET", "/v1/sso/providers", params={"tenant": tenant}, auth=False).json()
        if len(found) != 1:
            names = ", ".join(p["name"] for p in found) or "none"
            raise CliError(f"name the provider with --provider (tenant {tenant!r} has: {names})")
        provider = str(found[0]["name"])
    body = {"tenant": tenant, "provider": provider}
    start = client.send("POST", "/v1/sso/device", json_body=body, auth=False).json()
    where = start["verification_uri_complete"] or start["verification_uri"]
    print(f"To sign in, open {where} and enter the code {start['user_code']}", flush=True)
    deadline = time.monotonic() + start["expires_in"]
    interval = max(1, int(start["interval"]))
    while time.monotonic() < deadline:
        time.sleep(interval)
        answer = client.send(
            "POST", "/v1/sso/device/token", json_body={"handle": start["handle"]}, auth=False
        )
        if answer.status_code == 200:
            tokens = answer.json()
            client.token = tokens["access_token"]
            me = client.send("GET", "/v1/tokens/current", headers={"Authorization": f"Bearer {client.token}"})
            username = me.json()["username"]
            path = client.store_tokens(tokens, username)
            info(f"[green]Logged in to {client.server} as {username} ({provider}).[/] Credentials in {path}")
            return
    raise CliError("the sign-in was not approved in time; run novacron login --sso again")


COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("PRESET", "preset"),
    ("ISSUER", "issuer"),
    ("CLIENT", "client_id"),
    ("ENABLED", lambda p: "yes" if p["enabled"] else "no"),
    ("GROUPS", lambda p: ", ".join(f"{m['group']}={m['role']}" for m in p["group_roles"]) or "-"),
]


def _mappings(values: list[str]) -> list[dict[str, str]]:
    out_: list[dict[str, str]] = []
    for value in values:
        group, sep, role = value.rpartition("=")
        if not sep or not group:
            raise CliError(f"--group-role {value!r}: write GROUP=ROLE")
        out_.append({"group": group, "role": role})
    return out_


@app.command("create")
def create(  # noqa: PLR0913 - a provider is all of these
    ctx: typer.Context,
    name: str = typer.Argument(
        ..., help="its name, e.g. corp-sso (the dashboard's button says display name)"
    ),
    preset: str = typer.Option("oidc", "--preset", help="oidc, google, entra or github"),
    issuer: str | None = typer.Option(None, "--issuer", help="the OpenID issuer URL (not for google/github)"),
    client_id: str = typer.Option(..., "--client-id"),
    client_secret_stdin: bool = typer.Option(
        False, "--client-secret-stdin", help="read the secret from stdin"
    ),
    display_name: str | None = typer.Option(None, "--display-name"),
    group_role: list[str] = typer.Option([], "--group-role", help="GROUP=ROLE (repeat)"),
    default_role: str | None = typer.Option(None, "--default-role", help="role of users in no mapped group"),
    username_claim: str | None = typer.Option(None, "--username-claim"),
    scope: list[str] = typer.Option([], "--scope", help="a scope to ask for (repeat; default: the preset's)"),
    tenant: str | None = typer.Option(None, "--tenant", help="platform administrators: the tenant"),
    as_json: bool = JSON,
) -> None:
    """Add an identity provider to your tenant (checked at its issuer first)."""
    import sys

    secret = (
        sys.stdin.readline().rstrip("\r\n")
        if client_secret_stdin
        else typer.prompt("Client secret", hide_input=True)
    )
    body: dict[str, Any] = {"name": name, "preset": preset, "client_id": client_id, "client_secret": secret}
    extra = {
        "issuer": issuer,
        "display_name": display_name,
        "default_role": default_role,
        "tenant_id": tenant,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    if username_claim:
        body["username_claim"] = username_claim
    if scope:
        body["scopes"] = scope
    if group_role:
        body["group_roles"] = _mappings(group_role)
    provider = client_of(ctx).post("/v1/identity-providers", body)
    if as_json:
        print_json(provider)
        return
    out.print(f"Identity provider {provider['name']} ({provider['id']}) added.")


@app.command("set")
def set_provider(  # noqa: PLR0913 - what may change
    ctx: typer.Context,
    name: str,
    issuer: str | None = typer.Option(None, "--issuer"),
    client_id: str | None = typer.Option(None, "--client-id"),
    client_secret_stdin: bool = typer.Option(False, "--client-secret-stdin", help="a new secret from stdin"),
    display_name: str | None = typer.Option(None, "--display-name"),
    group_role: list[str] = typer.Option(
        [], "--group-role", help="GROUP=ROLE (repeat; replaces the mapping)"
    ),
    default_role: str | None = typer.Option(None, "--default-role", help="a role, or 'none'"),
    enabled: bool | None = typer.Option(None, "--enabled/--disabled"),
    as_json: bool = JSON,
) -> None:
    """Change a provider (a new issuer is checked at it first)."""
    import sys

    body: dict[str, Any] = {
        k: v
        for k, v in {
            "issuer": issuer,
            "client_id": client_id,
            "display_name": display_name,
            "enabled": enabled,
        }.items()
        if v is not None
    }
    if client_secret_stdin:
        body["client_secret"] = sys.stdin.readline().rstrip("\r\n")
    if group_role:
        body["group_roles"] = _mappings(group_role)
    if default_role is not None:
        body["default_role"] = None if default_role == "none" else default_role
    provider = client_of(ctx).patch(f"/v1/identity-providers/{name}", body)
    if as_json:
        print_json(provider)
        return
    out.print(f"Identity provider {provider['name']} changed.")


@app.command("list")
def list_providers(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Your tenant's identity providers (platform administrators: every tenant's)."""
    page = client_of(ctx).get("/v1/identity-providers")
    print_list(page, COLUMNS, as_json=as_json, empty="No identity providers.")


@app.command("show")
def show(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """One provider (its client secret is never shown)."""
    provider = client_of(ctx).get(f"/v1/identity-providers/{name}")
    print_detail(provider, as_json=as_json)


@app.command("delete")
def delete(ctx: typer.Context, name: str) -> None:
    """Delete a provider: its users' sessions end at their next refresh."""
    client_of(ctx).delete(f"/v1/identity-providers/{name}")
    out.print(f"Identity provider {name} deleted.")

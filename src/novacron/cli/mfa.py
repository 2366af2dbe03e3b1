"""``novacron mfa status|enrol|verify|disable|recovery-codes|policy|reset``: your second factor.

Enrolment prints the secret once (as an ``otpauth://`` URI for a QR code and as text to type
into an authenticator app), asks for a first code, and prints the ten recovery codes once.
"""

from __future__ import annotations

import typer

from novacron.cli.common import JSON, client_of
from novacron.cli.output import out, print_detail, print_json

app = typer.Typer(no_args_is_help=True)
CODE = typer.Option(None, "--code", "-c", help="the code of your authenticator app (asked for if not given)")


def _code(code: str | None, what: str = "Code from your authenticator app") -> str:
    return (code or typer.prompt(what)).strip()


def _print_codes(codes: list[str]) -> None:
    out.print("Recovery codes (each works once, shown only now; keep them somewhere safe):")
    for code in codes:
        print(code)


@app.command("status")
def status(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Whether you have a second factor, recovery codes left, and whether your tenant requires one."""
    print_detail(client_of(ctx).get("/v1/mfa"), as_json=as_json)


@app.command("enrol")
def enrol(ctx: typer.Context, code: str | None = CODE) -> None:
    """Enrol an authenticator app: shows its secret once, then confirms it with a first code."""
    client = client_of(ctx)
    made = client.post("/v1/mfa/totp", {})
    out.print("Add this to your authenticator app (a QR code of the URI, or the secret typed in):")
    print(made["otpauth_uri"])
    print(made["secret"])
    done = client.post("/v1/mfa/totp/confirm", {"code": _code(code)})
    out.print("[green]Second factor confirmed.[/] Refresh or log in again to use the whole API.")
    _print_codes(done["recovery_codes"])


@app.command("verify")
def verify(ctx: typer.Context, code: str | None = CODE, as_json: bool = JSON) -> None:
    """Step-up: prove a code now; this login session may do sensitive actions for 5 minutes."""
    done = client_of(ctx).post("/v1/mfa/verify", {"code": _code(code)})
    if as_json:
        print_json(done)
    else:
        out.print(f"Verified; sensitive actions allowed until {done['step_up_until']}.")


@app.command("disable")
def disable(ctx: typer.Context, code: str | None = CODE) -> None:
    """Remove your authenticator and recovery codes (a current code or a recovery code)."""
    client_of(ctx).post("/v1/mfa/totp/disable", {"code": _code(code, "Code (or a recovery code)")})
    out.print("Second factor removed.")


@app.command("recovery-codes")
def recovery_codes(ctx: typer.Context) -> None:
    """Ten new recovery codes replacing yours (run ``novacron mfa verify`` first)."""
    _print_codes(client_of(ctx).post("/v1/mfa/recovery-codes", {})["recovery_codes"])


@app.command("policy")
def policy(
    ctx: typer.Context,
    tenant: str = typer.Argument(..., help="tenant name or id"),
    require: str | None = typer.Option(None, "--require", help="none, admins or everyone (omit to show)"),
    as_json: bool = JSON,
) -> None:
    """Show or set who in a tenant must have a second factor."""
    client = client_of(ctx)
    path = f"/v1/tenants/{tenant}/mfa-policy"
    print_detail(client.put(path, {"require": require}) if require else client.get(path), as_json=as_json)


@app.command("reset")
def reset(ctx: typer.Context, user: str = typer.Argument(..., help="user id")) -> None:
    """Platform admin: remove a user's second factor (a lost device)."""
    client_of(ctx).delete(f"/v1/users/{user}/mfa")
    out.print(f"Second factor of {user} removed; it signs in with its password (and enrols if required).")

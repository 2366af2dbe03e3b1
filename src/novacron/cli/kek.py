"""``novacron kek list|rotate``: the platform's key-encryption keys (admins)."""

from __future__ import annotations

import typer

from novacron.cli.common import JSON, client_of
from novacron.cli.output import out, print_detail, print_json

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_keks(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Which provider holds the KEKs, which one wraps, and which can still unwrap."""
    print_detail(client_of(ctx).get("/v1/key-encryption-keys"), as_json=as_json)


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    keep_old: bool = typer.Option(False, "--keep-old", help="do not retire the old KEKs"),
    as_json: bool = JSON,
) -> None:
    """A new KEK; every stored secret and backup tenant key re-wrapped; the old KEKs retired."""
    report = client_of(ctx).post("/v1/key-encryption-keys/rotate", {"retire": not keep_old})
    if as_json:
        print_json(report)
        return
    out.print(f"new KEK {report['new_kek']}: {report['rewrapped']} stored secrets re-wrapped")
    for name, count in report["targets"].items():
        done = "failed" if count is None else f"{count} tenant keys re-wrapped"
        out.print(f"  backup target {name}: {done}")
    if report["retired"]:
        out.print(f"retired: {', '.join(report['retired'])}")
    if report["kept"]:
        out.print(f"kept (still needed or asked to keep): {', '.join(report['kept'])}")
    for error in report["errors"]:
        out.print(f"[red]{error}[/red]")

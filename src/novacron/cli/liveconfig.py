"""``novacron config get|set|diff|history|rollback``: the live configuration (administrators)."""

from __future__ import annotations

import json
from typing import Any

import typer

from novacron.cli.client import CliError
from novacron.cli.common import JSON, client_of
from novacron.cli.output import Column, out, print_json, print_list, print_table

app = typer.Typer(no_args_is_help=True)
REASON = typer.Option("", "--reason", "-m", help="why (kept in the history)")


def _value(text: str) -> Any:
    """``5`` and ``0.2`` are numbers, ``true`` a boolean, ``null`` the start-up value; the rest text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _patch(assignments: list[str]) -> dict[str, dict[str, Any]]:
    patch: dict[str, dict[str, Any]] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name:
            raise CliError(f"{item!r}: expected SECTION.KEY=VALUE", hint="novacron config get lists the keys")
        patch.setdefault(section, {})[name] = _value(value.strip())
    return patch


def _rows(config: dict[str, Any]) -> list[dict[str, Any]]:
    document = config["document"]
    return [
        {
            "key": f"{section}.{key}",
            "value": value,
            "source": "live" if key in document.get(section, {}) else "start-up",
        }
        for section, keys in config["effective"].items()
        for key, value in keys.items()
    ]


def _changed(config: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(config)
        return
    out.print(f"configuration version {config['version']} ({config['reason'] or 'no reason given'})")


@app.command("get")
def get(
    ctx: typer.Context,
    key: str = typer.Argument(None, help="one setting, SECTION.KEY (default: every one)"),
    as_json: bool = JSON,
) -> None:
    """The live settings in force, and whether each was set live or comes from start-up."""
    config = client_of(ctx).get("/v1/config")
    rows = _rows(config)
    if key is not None:
        found = [r for r in rows if r["key"] == key]
        if not found:
            raise CliError(f"no live setting {key!r}", hint="novacron config get lists them")
        print_json(found[0]["value"]) if as_json else out.print(str(found[0]["value"]))
        return
    if as_json:
        print_json(config)
        return
    out.print(f"version {config['version']} (this replica runs {config['applied_version']})")
    print_table(rows, [("KEY", "key"), ("VALUE", "value"), ("SOURCE", "source")], None)


@app.command("set")
def set_(
    ctx: typer.Context,
    assignments: list[str] = typer.Argument(..., help="SECTION.KEY=VALUE ... (VALUE null: back to start-up)"),
    reason: str = REASON,
    as_json: bool = JSON,
) -> None:
    """Change live settings: validated together, stored as a new version, applied on every replica."""
    body = {**_patch(assignments), "reason": reason}
    _changed(client_of(ctx).patch("/v1/config", body), as_json)


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    version: int = typer.Argument(..., help="the version to restore (0: start-up values)"),
    reason: str = REASON,
    as_json: bool = JSON,
) -> None:
    """A new version equal to VERSION; the history keeps every version in between."""
    _changed(client_of(ctx).post("/v1/config/rollback", {"version": version, "reason": reason}), as_json)


HISTORY: list[Column] = [
    ("VERSION", "version"),
    ("TIME", "created_at"),
    ("AUTHOR", "author"),
    ("REASON", "reason"),
    ("ROLLBACK OF", lambda r: r["rollback_of"] if r["rollback_of"] is not None else ""),
    (
        "SET",
        lambda r: ", ".join(f"{s}.{k}={v}" for s, keys in r["document"].items() for k, v in keys.items()),
    ),
]


@app.command("history")
def history(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", help="newest versions shown"),
    as_json: bool = JSON,
) -> None:
    """Every version, newest first: who, when, why, and what it set."""
    data = client_of(ctx).get("/v1/config/history", limit=limit)
    print_list(data, HISTORY, as_json=as_json, empty="No change yet: every value is the start-up one.")


@app.command("diff")
def diff(
    ctx: typer.Context,
    old: int = typer.Argument(0, help="from this version (default 0: the start-up values)"),
    new: int = typer.Argument(None, help="to this version (default: the newest)"),
    as_json: bool = JSON,
) -> None:
    """The settings whose values differ between two versions."""
    data = client_of(ctx).get("/v1/config/diff", **{"from": old, "to": new})
    if as_json:
        print_json(data)
        return
    title = f"version {data['from_version']} -> {data['to_version']}"
    print_list(
        {"items": data["changes"]},
        [("KEY", "key"), ("OLD", "old"), ("NEW", "new")],
        as_json=False,
        empty=f"{title}: no difference.",
        title=title,
    )

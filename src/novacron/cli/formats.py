"""``-f/--format`` and ``-c/--column`` on every command that prints data, with one meaning everywhere
(as openstack's cliff).

The commands were written with a ``--json`` flag (``as_json``): rather than give each of them more
parameters, the command tree is walked once when it is built and each command with an ``as_json``
parameter gains the ``-f/--format`` and ``-c/--column`` options. Their values are kept for the
invocation (cli/tables.py), which the printing helpers follow; ``json`` and ``yaml`` also turn
``as_json`` on, so that a command's machine-readable path (the API's document, no progress bars on
stdout) is taken. ``--json`` stays, as ``-f json``. A command that already has a ``--format`` of its
own (``usage report``) keeps it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import typer
from typer._click.core import Command, Parameter
from typer.core import TyperGroup as Group

from novacron.cli import tables

#: the parameters the options fill; popped before the command's own function is called
PARAM = "output_format"
COLUMNS_PARAM = "output_columns"


class OutputFormat(StrEnum):
    table = "table"
    plain = "plain"
    json = "json"
    yaml = "yaml"
    csv = "csv"
    value = "value"


def _template(
    output_format: OutputFormat | None = typer.Option(
        None,
        "--format",
        "-f",
        case_sensitive=False,
        help="table, plain, json, yaml, csv or value (default: a table on a terminal, plain columns "
        "when piped); --json is -f json",
    ),
    output_columns: list[str] | None = typer.Option(
        None, "--column", "-c", help="only this column (repeatable; by header, e.g. -c name -c state)"
    ),
) -> None:
    """Only its options are used."""


def _options() -> list[Parameter]:
    holder = typer.Typer(add_completion=False)
    holder.command()(_template)
    return [p for p in typer.main.get_command(holder).params if p.name in (PARAM, COLUMNS_PARAM)]


def _takes_format(command: Command) -> bool:
    names = {p.name for p in command.params}
    opts = {o for p in command.params for o in getattr(p, "opts", [])}
    return "as_json" in names and not opts & {"-f", "--format", "-c", "--column"}


def _with_format(callback: Callable[..., Any]) -> Callable[..., Any]:
    def run(**kwargs: Any) -> Any:
        chosen = kwargs.pop(PARAM, None)
        fmt = chosen.value if isinstance(chosen, OutputFormat) else None
        if fmt is None and kwargs.get("as_json"):
            fmt = "json"
        tables.set_format(fmt, kwargs.pop(COLUMNS_PARAM, None))
        if fmt in tables.DOCUMENT_FORMATS:
            kwargs["as_json"] = True
        return callback(**kwargs)

    return run


def install(group: Group) -> None:
    """Give ``-f/--format`` to every command under ``group`` that prints data."""
    options = _options()
    stack: list[Command] = [group]
    seen: set[int] = set()
    while stack:
        command = stack.pop()
        if id(command) in seen:
            continue
        seen.add(id(command))
        if isinstance(command, Group):
            stack.extend(command.commands.values())
        elif _takes_format(command) and command.callback is not None:
            command.params.extend(copy.copy(option) for option in options)
            command.callback = _with_format(command.callback)

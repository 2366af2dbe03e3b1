"""How a listing is printed: the output format of this invocation and the renderers of each format.

Formats are those of openstack's cliff: ``table`` (a Rich table sized to the terminal: every header
whole, long values cut with an ellipsis, ids and names shrunk last), ``plain`` (aligned columns with
no box characters and nothing cut: the default when stdout is not a terminal, so that ``| cat``,
``| grep`` and ``| awk`` read whole lines), ``json`` and ``yaml`` (the API's own document), ``csv``
(a header row, then one row per item) and ``value`` (the values only, space-separated, no header).

The format is chosen once per invocation (``-f/--format``, see cli/formats.py) and kept here, so that
the printing helpers of every command follow it without threading it through each signature.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Column as RichColumn
from rich.table import Table

FORMATS = ("table", "plain", "json", "yaml", "csv", "value")
#: formats that print the API's document rather than rows
DOCUMENT_FORMATS = ("json", "yaml")
#: columns that stay whole longest when a table must shrink: what a user copies into the next command
KEEP_WHOLE = ("ID", "NAME")
#: a column never shrinks below this (or its header, when longer; or its widest value, when shorter)
MIN_VALUE_WIDTH = 8


@dataclass
class _Choice:
    fmt: str | None = None
    #: ``-c``: the headers to print (matched without case), in the order given; empty: every column
    columns: tuple[str, ...] = ()


_choice = _Choice()


def set_format(fmt: str | None, columns: Sequence[str] | None = None) -> None:
    """The format asked for on the command line (``None``: decide from stdout), and the columns."""
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    _choice.fmt = fmt
    _choice.columns = tuple(c.strip().upper() for c in columns or ())


def chosen_columns(headers: Sequence[str], *, strict: bool = True) -> list[int]:
    """The indexes of the columns ``-c`` asked for (every column without ``-c``); a name no column
    has is an error naming those there are. Not ``strict`` (the second table of a ``show``): the
    columns asked for that this table has, every column when it has none of them."""
    upper = [h.upper() for h in headers]
    wanted = [c for c in _choice.columns if strict or c in upper]
    if not wanted:
        return list(range(len(headers)))
    missing = [c for c in wanted if c not in upper]
    if missing:
        raise KeyError(f"no column {', '.join(missing)}; the columns are {', '.join(headers)}")
    return [upper.index(c) for c in wanted]


def chosen_format() -> str | None:
    return _choice.fmt


def current_format(console: Console) -> str:
    """The format in effect: the one asked for, else a table on a terminal and plain columns otherwise."""
    if _choice.fmt is not None:
        return _choice.fmt
    return "table" if console.is_terminal else "plain"


def wants_document() -> bool:
    return _choice.fmt in DOCUMENT_FORMATS


def dump_document(data: Any) -> str:
    """The API's document as JSON (the default) or YAML, as asked."""
    if _choice.fmt == "yaml":
        return "\n".join(yaml_lines(data)) + "\n"
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_ ./@+-]*")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def yaml_scalar(value: Any) -> str:
    """A JSON scalar in YAML: plain when it cannot be read as anything else, else double-quoted
    (a JSON string is a valid YAML double-quoted scalar)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    text = str(value)
    plain = _PLAIN.fullmatch(text) and text.lower() not in _RESERVED and text == text.strip()
    return text if plain else json.dumps(text, ensure_ascii=False)


def yaml_lines(value: Any) -> list[str]:
    """A JSON document as block-style YAML (no dependency for what JSON already holds)."""
    if isinstance(value, dict) and value:
        lines = []
        for key, item in value.items():
            nested = isinstance(item, dict | list) and item
            if nested:
                lines.append(f"{yaml_scalar(str(key))}:")
                lines.extend("  " + line for line in yaml_lines(item))
            else:
                lines.append(f"{yaml_scalar(str(key))}: {yaml_lines(item)[0]}")
        return lines
    if isinstance(value, list) and value:
        lines = []
        for item in value:
            inner = yaml_lines(item)
            lines.append("- " + inner[0])
            lines.extend("  " + line for line in inner[1:])
        return lines
    if isinstance(value, dict | list):
        return ["{}" if isinstance(value, dict) else "[]"]
    return [yaml_scalar(value)]


def terminal_width(console: Console) -> int:
    """``COLUMNS`` when set (read now, not when the console was made), else the console's width."""
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else console.width


def fit_widths(natural: Sequence[int], floor: Sequence[int], keep: Sequence[bool], budget: int) -> list[int]:
    """Column widths that fit ``budget``: the widest column gives one character at a time, down to its
    floor (its header's length), the columns in ``keep`` only once the others cannot give more."""
    widths = list(natural)
    excess = sum(widths) - budget
    for shrink_kept in (False, True):
        while excess > 0:
            candidates = [i for i, w in enumerate(widths) if w > floor[i] and (shrink_kept or not keep[i])]
            if not candidates:
                break
            widest = max(candidates, key=lambda i: widths[i])
            widths[widest] -= 1
            excess -= 1
    return widths


def _plain_lines(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = []
    for values in (headers, *rows):
        lines.append("  ".join(v.ljust(widths[i]) for i, v in enumerate(values)).rstrip())
    return lines


def write_plain(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> None:
    """Aligned columns separated by two spaces: no box, no colour, no value cut or wrapped."""
    text = ([f"{title}:"] if title else []) + _plain_lines(headers, _flat(rows))
    sys.stdout.write("\n".join(text) + "\n")
    sys.stdout.flush()


def write_csv(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(_flat(rows))
    sys.stdout.write(buf.getvalue())
    sys.stdout.flush()


def write_values(rows: Sequence[Sequence[str]]) -> None:
    """cliff's ``value`` format: each row's values separated by a space, no header."""
    sys.stdout.write("".join(" ".join(r) + "\n" for r in _flat(rows)))
    sys.stdout.flush()


def _flat(rows: Sequence[Sequence[str]]) -> list[list[str]]:
    """Newlines inside a value would break a line-oriented reader: they become spaces."""
    return [[v.replace("\n", " ") for v in r] for r in rows]


def rich_table(
    console: Console,
    headers: Sequence[str],
    plain: Sequence[Sequence[str]],
    styled: Sequence[Sequence[str]],
    title: str | None = None,
) -> tuple[Table, int]:
    """A table for a terminal of the current width, and the width it needs.

    Each column is as wide as its widest value; when the whole is too wide for the terminal the
    widest columns give way (their values end in "…"), never below their header, which stays whole.
    When even the headers do not fit, the box's lines go; past that the table is as wide as its
    headers (the terminal wraps the line, the header words are not cut)."""
    width = terminal_width(console)
    natural = [max([len(h), *(len(r[i]) for r in plain)]) for i, h in enumerate(headers)]
    floor = [max(len(h), min(natural[i], MIN_VALUE_WIDTH)) for i, h in enumerate(headers)]
    keep = [h in KEEP_WHOLE for h in headers]
    boxed = sum(floor) + 3 * len(headers) + 1 <= width
    overhead = 3 * len(headers) + 1 if boxed else 2 * (len(headers) - 1)
    widths = fit_widths(natural, floor, keep, max(width - overhead, 0))
    columns = [
        RichColumn(h, width=w, min_width=w, max_width=w, no_wrap=True, overflow="ellipsis")
        for h, w in zip(headers, widths, strict=True)
    ]
    table = Table(
        *columns,
        title=title,
        header_style="bold",
        box=box.HEAVY_HEAD if boxed else None,
        pad_edge=boxed,
        expand=False,
    )
    for row in styled:
        table.add_row(*row)
    return table, sum(widths) + overhead


def plain_pairs(rows: Sequence[Sequence[str]]) -> list[str]:
    """Field/value lines of one resource, the values aligned, nothing cut."""
    width = max((len(r[0]) for r in rows), default=0)
    return [f"{r[0].ljust(width)}  {r[1]}".rstrip() for r in _flat(rows)]

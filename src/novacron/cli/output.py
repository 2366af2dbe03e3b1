"""Output: tables for people (cli/tables.py picks the format), the API's exact JSON or YAML for machines,
times in the reader's zone, sizes in binary units, errors in red on stderr."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from novacron.cli import tables
from novacron.cli.client import ApiError, CliError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

Column = tuple[str, str | Callable[[dict[str, Any]], Any]]

STATE_STYLES = {
    "running": "green",
    "active": "green",
    "succeeded": "green",
    "up": "green",
    "stopped": "dim",
    "shutoff": "dim",
    "paused": "yellow",
    "pending": "yellow",
    "queued": "yellow",
    "scheduling": "yellow",
    "building": "yellow",
    "importing": "yellow",
    "starting": "yellow",
    "stopping": "yellow",
    "deleting": "yellow",
    "saving": "yellow",
    "error": "red",
    "failed": "red",
    "down": "red",
    "cancelled": "red",
}


def print_json(data: Any) -> None:
    """The API's document on stdout, no markup or wrapping (``jq``-ready): JSON, or YAML with ``-f yaml``."""
    sys.stdout.write(tables.dump_document(data))
    sys.stdout.flush()


def mib(n: int | float | None) -> str:
    """A size given in MiB (the API's ``*_mb`` fields are mebibytes), in the unit that reads best."""
    return "" if n is None else human_size(float(n) * 1024 * 1024)


def gib(n: int | float | None) -> str:
    """A size given in GiB (the API's ``*_gb`` fields are gibibytes); 0 reads as such."""
    return "" if n is None else human_size(float(n) * 1024**3)


def money(value: float | None, currency: str) -> str:
    """An amount with its currency code: ``0.0120 USD``."""
    return "-" if value is None else f"{value:,.4f} {currency}"


def human_size(n: int | float | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" or size == int(size) else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def _parse_time(value: str) -> datetime | None:
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _span(secs: int) -> str:
    if secs < 60:
        return f"{secs}s"
    if secs < 3600:
        return f"{secs // 60}m"
    if secs < 86400:
        return f"{secs // 3600}h"
    return f"{secs // 86400}d"


def ago(value: str | None, now: datetime | None = None) -> str:
    """``3m ago`` or ``in 14m``, for tables; the input itself when it does not parse."""
    if not value:
        return ""
    t = _parse_time(value)
    if t is None:
        return value
    secs = int(((now or datetime.now(UTC)) - t).total_seconds())
    return f"in {_span(-secs)}" if secs < 0 else f"{_span(secs)} ago"


class _Zone:
    utc = False  # --utc: every time in UTC, whatever TZ says


def use_utc(flag: bool) -> None:
    _Zone.utc = flag


def display_zone() -> tzinfo:
    """The zone times are printed in: UTC with --utc, else ``TZ`` (read now: it is honoured even when
    the process did not call tzset), else the system's local zone."""
    if _Zone.utc:
        return UTC
    name = os.environ.get("TZ", "").removeprefix(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass  # a POSIX rule such as "JST-9": the C library's reading of it below
    zone = datetime.now().astimezone().tzinfo
    return zone if zone is not None else UTC


def local_time(value: str | None) -> str:
    """``2024-05-01 21:00:03 +09:00 JST``: the reader's local time, labelled with its offset and zone."""
    if not value:
        return ""
    t = _parse_time(value)
    if t is None:
        return value
    local = t.astimezone(display_zone())
    offset = local.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}" if len(offset) == 5 else offset
    name = local.tzname() or ""
    label = f"{offset} {name}" if name and name.isalpha() else offset
    return f"{local:%Y-%m-%d %H:%M:%S} {label}"


def human_time(value: str | None, now: datetime | None = None) -> str:
    """``2024-05-01 21:00:03 +09:00 JST (3m ago)`` from an ISO timestamp; the input itself when it does
    not parse."""
    if not value:
        return ""
    if _parse_time(value) is None:
        return value
    return f"{local_time(value)} ({ago(value, now)})"


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value) if value else ""
    return str(value)


def styled(key: str, value: Any) -> str:
    text = escape(cell(value))
    if key in ("state", "status") and isinstance(value, str) and value in STATE_STYLES:
        return f"[{STATE_STYLES[value]}]{text}[/]"
    return text


def _value(row: dict[str, Any], getter: str | Callable[[dict[str, Any]], Any]) -> Any:
    return getter(row) if callable(getter) else row.get(getter)


def print_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[Column],
    title: str | None = None,
    *,
    strict: bool = False,
) -> None:
    """Rows in the format of this invocation: a table sized to the terminal, plain columns, CSV or values;
    only the columns asked for with ``-c`` (``strict``: all of them must be there, as in a listing)."""
    try:
        columns = [columns[i] for i in tables.chosen_columns([h for h, _ in columns], strict=strict)]
    except KeyError as exc:
        raise CliError(str(exc.args[0])) from None
    headers = [header for header, _ in columns]
    values = [[_value(row, getter) for _, getter in columns] for row in rows]
    plain = [[cell(v) for v in row] for row in values]
    fmt = tables.current_format(out)
    if fmt == "csv":
        tables.write_csv(headers, plain)
    elif fmt == "value":
        tables.write_values(plain)
    elif fmt == "table":
        keys = [getter if isinstance(getter, str) else "" for _, getter in columns]
        marked = [[styled(k, v) for k, v in zip(keys, row, strict=True)] for row in values]
        table, needed = tables.rich_table(out, headers, plain, marked, title)
        # a console of its own width: the shared one would squeeze a table wider than the terminal
        # (whose headers then break); such a table is printed whole and the terminal wraps its lines
        width = max(tables.terminal_width(out), needed)
        sized = Console(file=out.file, width=width, force_terminal=out.is_terminal, no_color=out.no_color)
        sized.print(table, crop=False)
    else:  # plain, and json/yaml asked of a command that prints rows of its own making
        tables.write_plain(headers, plain, title)


def table_box() -> box.Box | None:
    """The lines of a hand-made Rich table: a terminal's box, none in plain output (piped)."""
    return box.HEAVY_HEAD if tables.current_format(out) == "table" else None


def print_list(
    data: dict[str, Any], columns: Sequence[Column], *, as_json: bool, empty: str, title: str | None = None
) -> None:
    """A list response: its document as is (JSON/YAML), or its rows (or a friendly line when there is
    nothing: on stderr for csv and value, so that a script reads no rows)."""
    if as_json or tables.wants_document():
        print_json(data)
        return
    rows = data.get("items", [])
    for_people = tables.current_format(out) in ("table", "plain")
    if not rows and tables.current_format(out) != "csv":
        (out if for_people else err).print(f"[dim]{escape(empty)}[/]")
        return
    print_table(rows, columns, title, strict=True)
    if data.get("next_cursor"):
        (out if for_people else err).print(f"[dim]more results: --cursor {data['next_cursor']}[/]")


def _pairs(obj: dict[str, Any], fields: Sequence[Column] | None) -> list[tuple[str, Any, str]]:
    """(label, value, key) of each field shown, only those asked for with ``-c``."""
    pairs = (
        [(h, _value(obj, g), g if isinstance(g, str) else "") for h, g in fields]
        if fields
        else [(k, v, k) for k, v in obj.items()]
    )
    try:
        return [pairs[i] for i in tables.chosen_columns([label for label, _, _ in pairs])]
    except KeyError as exc:
        raise CliError(str(exc.args[0])) from None


def detail_table(obj: dict[str, Any], fields: Sequence[Column] | None = None) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for header, value, key in _pairs(obj, fields):
        table.add_row(escape(header), styled(key, _shown(key, value)))
    return table


def _shown(key: str, value: Any) -> Any:
    return human_time(value) if isinstance(value, str) and key.endswith(TIME_SUFFIXES) else value


TIME_SUFFIXES = ("_at", "heartbeat")


def print_detail(obj: dict[str, Any], *, as_json: bool, fields: Sequence[Column] | None = None) -> None:
    """One resource: its document (JSON/YAML), or field/value pairs in the format of this invocation
    (``-c``: only those fields)."""
    fmt = tables.current_format(out)
    if as_json or tables.wants_document():
        print_json(obj)
    elif fmt == "table":
        out.print(detail_table(obj, fields))
    else:
        rows = [[label, cell(_shown(key, value))] for label, value, key in _pairs(obj, fields)]
        if fmt == "csv":
            tables.write_csv(["Field", "Value"], rows)
        elif fmt == "value":
            tables.write_values([[v] for _, v in rows])
        else:
            sys.stdout.write("".join(line + "\n" for line in tables.plain_pairs(rows)))


def format_problem(error: CliError) -> str:
    """Rich markup for an error: title and status, detail, one line per offending field, a hint."""
    lines: list[str] = []
    if isinstance(error, ApiError):
        p = error.problem
        title = str(p.get("title") or "Error")
        lines.append(f"[bold red]Error: {escape(title)} ({error.status})[/]")
        detail = str(p.get("detail") or "")
        errors = p.get("errors") or []
        listed = [e for e in errors if isinstance(e, dict)]
        # the detail that only repeats the field list (as "body.name: ..." or "name: ...") is not printed
        field_texts = {
            "; ".join(f"{short(str(e.get('field') or ''))}: {e.get('reason')}" for e in listed)
            for short in (str, _short_field)
        }
        if detail and detail != title and detail not in field_texts:
            lines.append(f"[red]{escape(detail)}[/]")
        for e in errors:
            if isinstance(e, dict):
                name = _short_field(str(e.get("field") or ""))
                reason = str(e.get("reason") or "")
                lines.append(f"[red]  - {escape(name or '(request)')}: {escape(reason)}[/]")
    else:
        lines.append(f"[bold red]Error: {escape(error.message)}[/]")
    if error.hint:
        lines.append(f"[yellow]{escape(error.hint)}[/]")
    return "\n".join(lines)


def _short_field(name: str) -> str:
    """``body.name`` -> ``name``: the API's field as the user typed it."""
    for prefix in ("body.", "query.", "path.", "header."):
        name = name.removeprefix(prefix)
    return "request body" if name == "body" else name


def print_error(error: CliError) -> None:
    err.print(format_problem(error))


def warn(message: str) -> None:
    err.print(f"[yellow]{escape(message)}[/]")


def info(message: str) -> None:
    """Progress notes go to stderr so that stdout stays clean for data."""
    err.print(message)

"""Output: Rich tables for people, the API's exact JSON for machines, errors in red on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

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
    """Plain JSON on stdout, no markup or wrapping, so that it can be piped into ``jq``."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def human_size(n: int | float | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
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


def human_time(value: str | None, now: datetime | None = None) -> str:
    """``2024-05-01 12:00:03 (3m ago)`` from an ISO timestamp; the input itself when it does not parse."""
    if not value:
        return ""
    t = _parse_time(value)
    if t is None:
        return value
    return f"{t.astimezone(UTC):%Y-%m-%d %H:%M:%S} ({ago(value, now)})"


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


def build_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], title: str | None = None) -> Table:
    table = Table(title=title, header_style="bold", show_lines=False)
    for header, _ in columns:
        # ids and names stay whole and copyable; the other columns give way on narrow terminals
        table.add_column(header, overflow="fold", no_wrap=header in ("ID", "NAME"))
    for row in rows:
        table.add_row(
            *(styled(getter if isinstance(getter, str) else "", _value(row, getter)) for _, getter in columns)
        )
    return table


def print_list(
    data: dict[str, Any], columns: Sequence[Column], *, as_json: bool, empty: str, title: str | None = None
) -> None:
    """A list response: its JSON as is, or a table (or a friendly line when there is nothing)."""
    if as_json:
        print_json(data)
        return
    rows = data.get("items", [])
    if not rows:
        out.print(f"[dim]{escape(empty)}[/]")
        return
    out.print(build_table(rows, columns, title))
    if data.get("next_cursor"):
        out.print(f"[dim]more results: --cursor {data['next_cursor']}[/]")


def detail_table(obj: dict[str, Any], fields: Sequence[Column] | None = None) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    pairs = (
        [(h, _value(obj, g), g if isinstance(g, str) else "") for h, g in fields]
        if fields
        else [(k, v, k) for k, v in obj.items()]
    )
    for header, value, key in pairs:
        if isinstance(value, str) and key.endswith("_at"):
            value = human_time(value)
        table.add_row(escape(header), styled(key, value))
    return table


def print_detail(obj: dict[str, Any], *, as_json: bool, fields: Sequence[Column] | None = None) -> None:
    if as_json:
        print_json(obj)
    else:
        out.print(detail_table(obj, fields))


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

"""CLI output: problem rendering, time and size formatting, tables vs JSON, SSE parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from rich.console import Console

from novacron.cli import output
from novacron.cli.client import ApiError, CliError, ConnectError, parse_sse, problem_of
from novacron.cli.console import split_detach, ws_url
from novacron.cli.watch import step_label, task_failed


def render(markup: str) -> str:
    console = Console(width=200, no_color=True, force_terminal=False)
    with console.capture() as cap:
        console.print(markup)
    return cap.get()


def test_problem_with_field_errors_is_readable() -> None:
    problem = {
        "type": "about:blank",
        "title": "Invalid request",
        "status": 422,
        "detail": "body.name: String should match pattern; body.ram_mb: too small",
        "instance": "/v1/flavors",
        "errors": [
            {"field": "body.name", "reason": "String should match pattern"},
            {"field": "body.ram_mb", "reason": "too small"},
        ],
    }
    text = render(output.format_problem(ApiError(422, problem)))
    assert "Error: Invalid request (422)" in text
    assert "  - name: String should match pattern" in text
    assert "  - ram_mb: too small" in text
    # the detail just repeats the field list: not printed twice
    assert "body.name" not in text


def test_problem_detail_and_hint() -> None:
    problem = {"title": "Not Found", "status": 404, "detail": "No vm 'x' exists or it is not visible to you."}
    text = render(output.format_problem(ApiError(404, problem, hint="List them with: novacron vm list")))
    assert text.splitlines() == [
        "Error: Not Found (404)",
        "No vm 'x' exists or it is not visible to you.",
        "List them with: novacron vm list",
    ]


def test_markup_in_messages_is_escaped() -> None:
    text = render(output.format_problem(CliError("bad [bold]name[/bold]")))
    assert "bad [bold]name[/bold]" in text


def test_exit_codes() -> None:
    assert ApiError(404, {}).exit_code == 1
    assert ConnectError("down").exit_code == 2
    assert CliError("x", exit_code=130).exit_code == 130


def test_problem_of_non_json_response() -> None:
    r = httpx.Response(502, text="<html>Bad gateway</html>")
    p = problem_of(r)
    assert p["status"] == 502 and p["title"] == "Bad Gateway" and "Bad gateway" in p["detail"]
    r = httpx.Response(403, json={"title": "Forbidden", "status": 403, "detail": "missing vm:power"})
    assert problem_of(r)["detail"] == "missing vm:power"


def test_times_and_sizes() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert output.ago("2024-05-01T11:59:30+00:00", now) == "30s ago"
    assert output.ago("2024-05-01T09:00:00Z", now) == "3h ago"
    assert output.ago("2024-05-01T12:15:00+00:00", now) == "in 15m"
    assert output.ago("not a time", now) == "not a time"
    assert output.human_size(512) == "512 B"
    assert output.human_size(8 * 2**20) == "8 MiB"
    assert output.human_size(1.5 * 2**30) == "1.5 GiB"
    assert output.mib(2048) == "2 GiB" and output.gib(1) == "1 GiB" and output.mib(None) == ""
    assert output.money(0.012, "EUR") == "0.0120 EUR"
    assert output.human_size(None) == ""


def test_times_are_in_the_readers_zone_and_labelled(monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert output.human_time("2024-04-29T12:00:00+00:00", now) == "2024-04-29 21:00:00 +09:00 JST (2d ago)"
    monkeypatch.setenv("TZ", "America/New_York")
    assert output.local_time("2024-01-15T12:00:00Z") == "2024-01-15 07:00:00 -05:00 EST"
    monkeypatch.setenv("TZ", "UTC")
    assert output.local_time("2024-01-15T12:00:00Z") == "2024-01-15 12:00:00 +00:00 UTC"
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    output.use_utc(True)
    try:
        assert output.local_time("2024-01-15T12:00:00Z") == "2024-01-15 12:00:00 +00:00 UTC"
    finally:
        output.use_utc(False)


def test_json_output_is_the_api_json(capsys: object) -> None:
    page = {"items": [{"id": "vm-1", "name": "a"}], "next_cursor": None}
    output.print_list(page, [("NAME", "name")], as_json=True, empty="none")
    captured = capsys.readouterr()  # type: ignore[attr-defined]
    assert json.loads(captured.out) == page


def test_table_rows_and_empty_message(capsys: pytest.CaptureFixture[str]) -> None:
    columns: list[output.Column] = [("NAME", "name"), ("STATE", "state"), ("N", lambda r: r["n"] * 2)]
    output.print_table([{"name": "a", "state": "running", "n": 3}], columns)
    # not a terminal: plain columns, aligned, no box
    assert capsys.readouterr().out.splitlines() == ["NAME  STATE    N", "a     running  6"]


def test_parse_sse() -> None:
    lines = [
        ": following events",
        "",
        "id: 3",
        "event: vm.created",
        'data: {"seq": 3}',
        "",
        "id: 4",
        "data: a",
        "data: b",
        "",
    ]
    assert list(parse_sse(lines)) == [("3", "vm.created", '{"seq": 3}'), ("4", "message", "a\nb")]


def test_task_step_label_and_failure() -> None:
    task = {
        "id": "task-1",
        "kind": "vm.create",
        "resource_id": "vm-1",
        "state": "running",
        "steps": ["validate", "place", "launch"],
        "step_index": 1,
        "current_step": "place",
    }
    assert step_label(task) == "place (2/3)"
    assert step_label({**task, "state": "succeeded"}) == "succeeded"
    err = task_failed({**task, "state": "failed", "error": "no host has room"})
    assert "no host has room" in err.message and "task-1" in err.message


def test_console_helpers() -> None:
    assert ws_url("http://127.0.0.1:8080/", "vm-1") == "ws://127.0.0.1:8080/v1/vms/vm-1/console"
    assert ws_url("https://cloud.example", "vm-1") == "wss://cloud.example/v1/vms/vm-1/console"
    assert split_detach(b"ls\r") == (b"ls\r", False)
    assert split_detach(b"ab\x1dcd") == (b"ab", True)

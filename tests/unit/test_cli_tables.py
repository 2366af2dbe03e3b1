"""The table renderers: widths that fit a terminal with whole headers, plain columns, CSV, YAML."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from rich.console import Console

from novacron.cli import output, tables

BOX = set("│┃┏┓┗┛━─┡┩╇└┘┌┐")


def test_fit_widths_shrinks_the_widest_first_and_keeps_headers_whole() -> None:
    # NAME (kept) 40 wide, STATE 7, NOTE 30: 77 into 50
    widths = tables.fit_widths([40, 7, 30], [4, 7, 4], [True, False, False], 50)
    assert widths == [39, 7, 4]  # NOTE down to its header before NAME gives one character
    # the widest gives first: two columns of equal width share the cut
    assert tables.fit_widths([40, 7, 30], [4, 4, 4], [True, False, False], 50) == [40, 5, 5]
    # cannot fit: nothing goes below its floor
    assert tables.fit_widths([10, 10], [6, 8], [False, False], 3) == [6, 8]


def _rendered(columns: int, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    headers = ["NAME", "ID", "STATE", "CREATED", "DESCRIPTION"]
    row = ["a-rather-long-vm-name", "vm-0123456789abcdef", "running", "3m ago", "x" * 80]
    console = Console(file=io.StringIO(), width=columns)
    table, needed = tables.rich_table(console, headers, [row], [row])
    console = Console(file=io.StringIO(), width=max(columns, needed))
    console.print(table, crop=False)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize("columns", [80, 100])
def test_terminal_table_fits_with_whole_headers(columns: int, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _rendered(columns, monkeypatch)
    lines = text.splitlines()
    assert all(len(line) <= columns for line in lines), text
    header = next(line for line in lines if "NAME" in line)
    assert header.split("┃")[1:-1] and [h.strip() for h in header.split("┃")[1:-1]] == [
        "NAME",
        "ID",
        "STATE",
        "CREATED",
        "DESCRIPTION",
    ], text
    assert "vm-0123456789abcdef" in text and "running" in text and "…" in text  # the long cell gave way


def test_too_narrow_a_terminal_drops_the_box_then_keeps_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _rendered(30, monkeypatch)
    assert not BOX & set(text)
    assert text.splitlines()[0].split() == ["NAME", "ID", "STATE", "CREATED", "DESCRIPTION"], text


def test_plain_csv_value_and_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    columns: list[output.Column] = [("NAME", "name"), ("NOTE", "note")]
    rows: list[dict[str, Any]] = [{"name": "a", "note": "two\nlines, comma"}, {"name": "bb", "note": None}]
    try:
        tables.set_format("csv")
        output.print_table(rows, columns)
        # a newline inside a value would split a record for line readers: it is a space
        assert capsys.readouterr().out == 'NAME,NOTE\na,"two lines, comma"\nbb,\n'
        tables.set_format("value")
        output.print_table(rows, columns)
        assert capsys.readouterr().out == "a two lines, comma\nbb \n"
        tables.set_format("yaml")
        page = {"items": [{"id": "vm-1", "on": True, "n": None, "tags": [], "m": {"a": "yes: no"}}]}
        output.print_list(page, columns, as_json=False, empty="none")
        assert yaml.safe_load(capsys.readouterr().out) == page
        tables.set_format(None)
        output.print_list({"items": rows}, columns, as_json=False, empty="none")
        assert capsys.readouterr().out.splitlines()[0] == "NAME  NOTE"
    finally:
        tables.set_format(None)
    with pytest.raises(ValueError):
        tables.set_format("xml")


def test_yaml_of_every_json_shape_reads_back() -> None:
    doc = {
        "s": ["plain", "", " padded", "123", "1.5", "null", "true", "a: b", "#x", "ünïcode", "line\nbreak"],
        "n": [0, -1, 2.5, None, True, False],
        "empty": {"d": {}, "l": []},
        "nested": [[1, [2]], {"k": [{"x": 1}]}],
    }
    text = "\n".join(tables.yaml_lines(doc))
    assert yaml.safe_load(text) == doc
    assert json.loads(json.dumps(doc)) == doc


def test_columns_asked_for() -> None:
    try:
        tables.set_format(None, ["state", "Name"])
        assert tables.chosen_columns(["NAME", "ID", "STATE"]) == [2, 0]  # the order asked for
        with pytest.raises(KeyError, match="no column STATE; the columns are NAME, ID"):
            tables.chosen_columns(["NAME", "ID"])
        # the second table of a show (an lb's members): what it has of them, else every column
        assert tables.chosen_columns(["NAME", "ID"], strict=False) == [0]
        assert tables.chosen_columns(["PORT", "ID"], strict=False) == [0, 1]
    finally:
        tables.set_format(None)
    assert tables.chosen_columns(["NAME", "ID"]) == [0, 1]

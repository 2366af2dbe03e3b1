"""The CLI says what to type (issue 17, items 4 and 7): validation errors as the API's sentences,
printed once; the way to the first backup target; a target renamed and deleted from the CLI.

Its own server (no guest): the CLI runs as a user would, as a subprocess (``test_cli.Cli``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from novacron.backup.service import NO_TARGET
from novacron.cli import backup as cli_backup
from tests.conftest import Server, destroy_server, make_server
from tests.integration.test_cli import Cli, cli

__all__ = ["cli"]  # test_cli's logged-in CLI, on this module's server


@pytest.fixture(scope="module")
def cli_server() -> Iterator[Server]:
    """A server with no guest (none is booted here); started patiently on a loaded machine."""
    srv = make_server()
    srv.start(timeout_s=120)
    try:
        yield srv
    finally:
        destroy_server(srv)


def test_validation_errors_are_sentences_printed_once(cli: Cli) -> None:
    r = cli("usage", "report", "--month", "2026-13")
    assert r.code == 1, r
    assert "month: use YYYY-MM, e.g. 2026-12" in r.err and "^(" not in r.err and "pattern" not in r.err
    assert r.err.count("use YYYY-MM") == 1, r.err
    r = cli("vm", "create", "--name", "Bad_Name", "--image", "x", "--flavor", "tiny")
    assert r.code == 1
    rule = "name: use 1-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit"
    assert rule in r.err.replace("\n", " ") and r.err.count("use 1-63") == 1, r.err


def test_first_backup_target_then_rename_and_delete(cli: Cli, tmp_path: Path) -> None:
    r = cli("backup", "create", "any-vm")
    assert r.code == 1
    assert " ".join(r.err.split()) == f"Error: {NO_TARGET}", r.err
    assert cli_backup.NO_TARGET == NO_TARGET  # the CLI says what the API says
    help_text = cli.ok("backup", "target", "create", "--help").out
    for kind_setting in ("path=", "bucket=NAME", "container=NAME", "--secret", "connection_string", "--kind"):
        assert kind_setting in help_text, (kind_setting, help_text)
    cli.ok("backup", "target", "create", "first", "--kind", "local", "--set", f"path={tmp_path / 'b1'}")
    made = cli.ok("backup", "target", "update", "first", "--name", "main", "--json").json()
    assert made["name"] == "main"
    r = cli("backup", "target", "update", "main")
    assert r.code == 1 and "nothing to change" in r.err
    cli.ok("backup", "target", "delete", "main")
    assert cli.ok("backup", "target", "list", "--json").json()["items"] == []

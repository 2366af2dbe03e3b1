"""The CLI says what to type (issue 17, items 4 and 7): validation errors as the API's sentences,
printed once; the way to the first backup target (said when piped, offered at a terminal); a target
renamed and deleted from the CLI.

Its own server (no guest): the CLI runs as a user would, as a subprocess (``test_cli.Cli``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from novacron.backup.service import NO_TARGET
from novacron.cli import backup as cli_backup
from tests.conftest import Server, destroy_server, make_server
from tests.integration.terminal import at_a_terminal
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


def test_a_first_backup_at_a_terminal_offers_to_make_a_local_target(cli: Cli, tmp_path: Path) -> None:
    assert cli.ok("backup", "target", "list", "--json").json()["items"] == []
    where = tmp_path / "guided"
    code, seen = at_a_terminal(
        cli,
        ["backup", "create", "no-such-vm"],
        [
            ("Create a local backup target now?", "y\n"),
            ("Its name", "guided\n"),
            ("Its directory", f"{where}\n"),
        ],
    )
    assert "There is no backup target yet" in seen, seen
    assert "backup target guided created" in seen, seen
    (made,) = cli.ok("backup", "target", "list", "--json").json()["items"]
    assert made["name"] == "guided" and made["type"] == "local"
    # then the backup itself goes on: here it names the VM that does not exist
    assert code == 1 and "no-such-vm" in seen, seen
    cli.ok("backup", "target", "delete", "guided")
    # declined: nothing made, and the way to make one is said
    code, seen = at_a_terminal(
        cli, ["backup", "create", "no-such-vm"], [("Create a local backup target now?", "n\n")]
    )
    assert code == 1 and "novacron backup target create" in seen, seen
    assert cli.ok("backup", "target", "list", "--json").json()["items"] == []

"""The CLI says its version without a server, and writes its shell completion script."""

from __future__ import annotations

from typer.testing import CliRunner

from novacron import __version__
from novacron.cli.main import app


def test_version_needs_no_server_or_login() -> None:
    for flag in ("--version", "-V"):
        result = CliRunner().invoke(app, [flag], env={"NOVACRON_URL": "http://127.0.0.1:9"})
        assert result.exit_code == 0 and result.output.strip() == f"novacron {__version__}", result.output


def test_bash_completion_script_completes_novacron() -> None:
    result = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="novacron")
    assert result.exit_code == 0, result.output
    assert "complete" in result.output and "novacron" in result.output, result.output

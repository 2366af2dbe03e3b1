"""The CLI says its version without a server, and its completion scripts complete in the shell."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from novacron import __version__
from novacron.cli.main import app


def _novacron() -> str:
    path = shutil.which("novacron")
    assert path, "the novacron entry point is installed by scripts/setup.sh"
    return path


def test_version_needs_no_server_or_login() -> None:
    for flag in ("--version", "-V"):
        result = CliRunner().invoke(app, [flag], env={"NOVACRON_URL": "http://127.0.0.1:9"})
        assert result.exit_code == 0 and result.output.strip() == f"novacron {__version__}", result.output


def test_bash_completion_completes_commands_in_bash() -> None:
    """The script, sourced by a real bash, completes ``novacron vm sta`` to ``start``."""
    script = (
        'source <("$NC" completion bash); COMP_WORDS=(novacron vm sta); COMP_CWORD=2; '
        '_novacron_completion novacron; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env = {**os.environ, "NC": _novacron(), "PATH": os.path.dirname(_novacron()) + ":" + os.environ["PATH"]}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["start"], done.stdout


@pytest.mark.parametrize(("shell", "marker"), [("zsh", "compdef"), ("fish", "complete --command novacron")])
def test_zsh_and_fish_scripts_answer_through_the_cli(shell: str, marker: str) -> None:
    """zsh and fish are not installed here: their scripts are checked for the hook, and the CLI's
    side of the protocol they call is run as they run it."""
    result = CliRunner().invoke(app, ["completion", shell], prog_name="novacron")
    assert result.exit_code == 0 and marker in result.output, result.output
    env = {**os.environ, "_NOVACRON_COMPLETE": f"complete_{shell}", "_TYPER_COMPLETE_ARGS": "novacron vol"}
    if shell == "fish":
        env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    done = subprocess.run([_novacron()], env=env, capture_output=True, text=True, timeout=60)
    assert "volume" in done.stdout, (done.stdout, done.stderr)


def test_unknown_shell_is_refused_with_the_choices() -> None:
    result = CliRunner().invoke(app, ["completion", "tcsh"], prog_name="novacron")
    assert result.exit_code == 2 and "bash" in result.output, result.output

"""``novacron completion SHELL``: the shell completion script, whatever shell runs the command.

Typer's ``--show-completion`` detects the calling shell and takes no shell name where detection
works, so a script writing a completion file for another shell (a package's post-install step, a
Dockerfile) cannot rely on it; this command names the shell and always prints the same script.
"""

from __future__ import annotations

from enum import StrEnum

import typer
from typer._completion_shared import get_completion_script

PROG_NAME = "novacron"
COMPLETE_VAR = "_NOVACRON_COMPLETE"  # the variable Typer's completion reads, from the program's name


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"
    powershell = "powershell"


def completion(shell: Shell = typer.Argument(..., help="bash, zsh, fish or powershell")) -> None:
    """Print the completion script of SHELL.

    bash: ``novacron completion bash > /etc/bash_completion.d/novacron``;
    zsh: ``novacron completion zsh > "${fpath[1]}/_novacron"``;
    fish: ``novacron completion fish > ~/.config/fish/completions/novacron.fish``."""
    typer.echo(get_completion_script(prog_name=PROG_NAME, complete_var=COMPLETE_VAR, shell=shell.value))

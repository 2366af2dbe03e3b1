"""The CLI at a terminal: a pseudo-terminal for prompts and the serial console's raw mode."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.integration.test_cli import Cli


def at_a_terminal(
    cli: Cli,
    args: list[str],
    answers: list[tuple[str, str]],
    timeout_s: float = 60,
    resend_s: float | None = None,
) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as its stdin/stdout/stderr, answering each prompt: a text
    it waits for, then what is typed, sent as is ("y\n", or "\x1d" for Ctrl-]). ``resend_s``: what
    was typed last is typed again when the next text has not shown after that long (a guest's
    shell may drop a line typed while its console attaches). Its exit code (-9: killed at the
    timeout) and everything it printed."""
    exe = Path(sys.executable).with_name("novacron")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NOVACRON_")}
    environ.update(NOVACRON_CONFIG=str(cli.config), COLUMNS="200", TERM="dumb")
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(exe), *args], stdin=slave, stdout=slave, stderr=slave, env=environ)
    os.close(slave)
    seen, pending = "", list(answers)
    last: tuple[str, float] | None = None  # what was typed last, and when
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(master, 4096).decode(errors="replace")
                except OSError:  # the CLI exited and closed the terminal
                    break
            if pending and pending[0][0] in seen:
                typed = pending.pop(0)[1]
                os.write(master, typed.encode())
                last = (typed, time.monotonic())
            elif pending and last and resend_s and time.monotonic() - last[1] > resend_s:
                os.write(master, last[0].encode())
                last = (last[0], time.monotonic())
            if not ready and proc.poll() is not None:
                break
        try:
            return proc.wait(timeout=10), seen
        except subprocess.TimeoutExpired:
            proc.kill()
            return -9, seen
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()

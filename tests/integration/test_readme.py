"""The README's CLI examples, run verbatim by the admin (issue 17: examples that work as written).

The fenced ``sh`` blocks of the README's Quick start are read from README.md itself, so an example
that is changed there is what runs here. Left out: the two setup commands (``export PATH``, the
first ``login``), a login as another user and placeholders (``subnet show NAME``). Every other
command runs in order through ``bash`` (pipes and redirections as typed, with ``pipefail``) in an
empty directory and must exit 0, the VM ``demo`` included: the server has the test guest imported
by ``scripts/import_test_guest.py`` as ``scripts/up.sh`` does. The two interactive ones run as a
user would: ``vm logs demo --follow`` until the guest's boot log shows, then Ctrl-C; ``vm console
demo`` at a pseudo-terminal, a command typed at the guest's shell and its answer read, then
detached with Ctrl-]. The admin is logged in as ``test_cli`` does.
"""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import GUEST_OUT, ROOT, Server, destroy_server, make_server
from tests.integration.terminal import at_a_terminal
from tests.integration.test_cli import Cli, cli

__all__ = ["cli"]  # test_cli's logged-in CLI, on this module's server

README = ROOT / "README.md"
#: commands that are setup (done by the fixture)
SKIPPED = (re.compile(r"^export "), re.compile(r"\bnovacron login\b"))
#: what the guest prints on its serial console once booted (guest/init)
BOOTED = "NOVACRON-GUEST-UP"
#: typed at the guest's shell through ``vm console``, and what its answer shows (not the echo)
TYPED, ANSWER = "echo $((6*7))-console\r", "42-console"
PLACEHOLDER = re.compile(r"\b[A-Z]{3,}\b")  # NAME, HOST, TRACE...


def quick_start_commands(text: str) -> list[str]:
    """Each command of the fenced ``sh`` blocks between "## Quick start" and the next section:
    continuation lines joined, comments dropped, ``a; b`` and ``a && b`` split."""
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            commands.extend(c.strip() for c in re.split(r";|&&", line) if c.strip())
    return commands


def runnable(command: str) -> bool:
    return not any(p.search(command) for p in SKIPPED) and not PLACEHOLDER.search(command)


@pytest.fixture(scope="module")
def cli_server() -> Iterator[Server]:
    """A server with the test guest imported as ``novacron-test-guest``, as ``scripts/up.sh`` does."""
    srv = make_server()
    srv.start(timeout_s=120)
    try:
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "import_test_guest.py"), "--url", srv.url,
             "--state-dir", str(srv.state_dir), "--guest-dir", str(GUEST_OUT)],
            check=True, timeout=300,
        )  # fmt: skip
        yield srv
    finally:
        destroy_server(srv)


def follow_logs(command: str, env: dict[str, str], cwd: Path) -> str | None:
    """``vm logs demo --follow`` as typed, until the boot log shows, then Ctrl-C; None if it did
    what it should (the log, a clean stop), else what went wrong."""
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen, deadline = "", time.monotonic() + 60
    while BOOTED not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=15)
    if BOOTED not in seen or "Traceback" in err:
        return f"{command}: no boot log or a traceback\n{seen[-2000:]}\n{err}"
    return None


def test_the_readme_quick_start_runs_as_written(cli: Cli, tmp_path: Path) -> None:
    commands = quick_start_commands(README.read_text())
    chosen = [c for c in commands if runnable(c)]
    # the parse found the blocks: the listings, the formats and the admin's commands
    for expected in (
        "novacron image list",
        "novacron vm create --image novacron-test-guest --flavor tiny --name demo",
        "novacron vm console demo",
        "novacron vm delete demo --force",
        "novacron task list",
        "novacron flavor list -f csv > flavors.csv",
        "novacron usage report --format csv > usage.csv",
    ):
        assert expected in chosen, chosen
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVACRON_")}
    bindir = str(Path(sys.executable).parent)  # the `novacron` command, as `export PATH` makes it
    env.update(NOVACRON_CONFIG=str(cli.config), PATH=f"{bindir}:{env.get('PATH', '')}", COLUMNS="100")
    failed: list[str] = []
    for command in chosen:
        if command.endswith("--follow"):
            failed += [why] if (why := follow_logs(command, env, tmp_path)) else []
            continue
        if " vm console " in f" {command} ":
            code, seen = at_a_terminal(
                cli,
                command.split()[1:],
                [("Press Ctrl-] to detach", TYPED), (ANSWER, "\x1d")],
                resend_s=5,
            )
            if code != 0 or "Traceback" in seen:
                failed.append(f"{command} -> {code}\n{seen[-2000:]}")
            continue
        p = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if p.returncode != 0 or "Traceback" in p.stderr:
            failed.append(f"{command} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    assert not failed, "\n".join(failed)
    flavors = list(csv.reader(io.StringIO((tmp_path / "flavors.csv").read_text())))
    assert len(flavors) > 1 and any("tiny" in row for row in flavors[1:]), flavors


def test_the_admins_usage_report_covers_every_tenant(cli: Cli) -> None:
    """Item 15: an admin (no tenant) without --tenant gets every tenant's report, not an error
    about the API's ``tenant_id``; an error about the tenant names the CLI's --tenant."""
    with cli.server.client() as admin:
        assert admin.post("/v1/tenants", json={"name": "readme-acme"}).status_code == 201
    r = cli.ok("usage", "report", "--format", "csv")
    assert "tenant_id:" not in r.err
    header = next(csv.reader(io.StringIO(r.out)))
    assert header[:3] == ["month", "tenant", "tenant_id"], r.out
    data = cli.ok("usage", "report", "--format", "json").json()
    assert {"default", "readme-acme"} <= {names_of_report(cli, rep["tenant_id"]) for rep in data["items"]}
    one = cli.ok("usage", "report", "--tenant", "readme-acme", "--format", "json").json()
    assert one["items"] == [] and "month" in one
    table = cli.ok("usage", "report").out
    assert "Usage of default" in table and "Usage of readme-acme" in table, table
    r = cli("cost", "show")
    assert r.code == 1 and "--tenant" in r.err and "tenant_id" not in r.err, r.err


def names_of_report(cli: Cli, tenant_id: str) -> str:
    return str(cli.ok("tenant", "show", tenant_id, "--json").json()["name"])

"""The ``novacron`` CLI, run as a real subprocess against a real ``novacron-server``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Guest, Server, destroy_server, free_port, make_server


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Cli:
    config: Path
    server: Server

    def __call__(
        self, *args: str, stdin: str | None = None, timeout: float = 120, env: dict[str, str] | None = None
    ) -> Result:
        exe = Path(sys.executable).with_name("novacron")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "novacron.cli.main"]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("NOVACRON_")}
        environ.update(NOVACRON_CONFIG=str(self.config), COLUMNS="200", **(env or {}))
        p = subprocess.run(
            [*cmd, *args], input=stdin, capture_output=True, text=True, timeout=timeout, env=environ
        )
        return Result(p.returncode, p.stdout, p.stderr)

    def ok(self, *args: str, stdin: str | None = None) -> Result:
        r = self(*args, stdin=stdin)
        assert r.code == 0, f"novacron {' '.join(args)} -> {r.code}\n{r.out}\n{r.err}"
        assert "Traceback" not in r.err
        return r


@pytest.fixture(scope="module")
def cli_server() -> Iterator[Server]:
    srv = make_server(NOVACRON_COMPUTE_DRIVER="qemu")
    srv.start(timeout_s=120)  # eight sessions' tests on two cores: a start can take a minute
    try:
        yield srv
    finally:
        destroy_server(srv)


@pytest.fixture(scope="module")
def cli(cli_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    c = Cli(tmp_path_factory.mktemp("cli") / "novacron" / "credentials.json", cli_server)
    r = c.ok(
        "login",
        "--server",
        cli_server.url,
        "--username",
        "admin",
        "--password-stdin",
        stdin=cli_server.admin_password + "\n",
    )
    assert "Logged in" in r.err
    return c


def test_login_stores_credentials_0600(cli: Cli) -> None:
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o600
    stored = json.loads(cli.config.read_text())
    assert stored["server"] == cli.server.url and stored["access_token"] and stored["refresh_token"]
    assert "admin" in cli.ok("whoami").out


def test_wrong_password_is_a_clean_401(cli: Cli, tmp_path: Path) -> None:
    other = Cli(tmp_path / "c.json", cli.server)
    r = other("login", "--server", cli.server.url, "--password-stdin", stdin="wrong\n")
    assert r.code == 1 and "Traceback" not in r.err
    assert "401" in r.err
    assert not (tmp_path / "c.json").exists()


def test_login_with_a_tenant_and_host_tokens(cli: Cli, tmp_path: Path) -> None:
    """Usernames are unique per tenant (issue 11 finding 16): a shared name logs in with --tenant.
    Hosts: a join token adds new hosts; the embedded agent's host has no credential to re-key."""
    with cli.server.client() as admin:
        for name in ("t-one", "t-two"):
            tenant = admin.post("/v1/tenants", json={"name": name}).json()
            body = {"username": "shared", "password": f"{name}-horse-battery-9", "tenant_id": tenant["id"]}
            assert admin.post("/v1/users", json=body).status_code == 201
    other = Cli(tmp_path / "c.json", cli.server)
    login = ("login", "--server", cli.server.url, "--username", "shared", "--password-stdin")
    r = other(*login, stdin="t-two-horse-battery-9\n")
    assert r.code == 1 and "401" in r.err and not (tmp_path / "c.json").exists()
    assert "name@tenant" in r.err and "--tenant" in r.err  # what to do next
    assert "Logged in" in other.ok(*login, "--tenant", "t-two", stdin="t-two-horse-battery-9\n").err
    assert "t-two" in other.ok("whoami").out
    at_form = ("login", "--server", cli.server.url, "--username", "shared@t-one", "--password-stdin")
    assert "Logged in" in other.ok(*at_form, stdin="t-one-horse-battery-9\n").err
    assert "t-one" in other.ok("whoami").out
    r = cli.ok("host", "join-token", "--json").json()
    assert r["join_token"].startswith("ncj.") and "novacron agent" in r["command"]
    [host] = cli.ok("host", "list", "--json").json()["items"]
    r = cli("host", "rejoin-token", host["name"])
    assert r.code == 1 and "no agent credential" in r.err and "Traceback" not in r.err


def test_flavor_list_shows_tiny(cli: Cli) -> None:
    assert "tiny" in cli.ok("flavor", "list").out
    names = [f["name"] for f in cli.ok("flavor", "list", "--json").json()["items"]]
    assert "tiny" in names


def test_vm_list_json_is_empty(cli: Cli) -> None:
    data = cli.ok("vm", "list", "--json").json()
    assert data == {"items": [], "next_cursor": None}
    assert "No VMs" in cli.ok("vm", "list").out


def test_unknown_vm_is_a_clean_error(cli: Cli) -> None:
    for verb in ("show", "start", "logs", "delete"):
        command = ["vm", verb, "no-such-vm"]
        r = cli(*command)
        assert r.code == 1, r
        assert "no vm named 'no-such-vm'" in r.err
        assert "Traceback" not in r.err and "Traceback" not in r.out


def test_text_file_is_refused_as_an_image(cli: Cli, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("these are my notes, not a disk image\n" * 50)
    r = cli("image", "import", str(text), "--name", "notes")
    assert r.code == 1, r
    assert "Traceback" not in r.err
    assert "contains text, not a disk" in r.err
    assert "raw or qcow2" in r.err
    # the half-made image was removed, so the name is free again
    assert cli.ok("image", "list", "--json").json()["items"] == []


def test_validation_errors_name_the_field(cli: Cli) -> None:
    r = cli("flavor", "create", "x1", "--vcpus", "1", "--ram", "10")
    assert r.code == 1 and "ram_mb" in r.err and "Invalid request (422)" in r.err
    # the machine and firmware options: Secure Boot on the pc machine is refused on its field
    r = cli("flavor", "create", "x2", "--vcpus", "1", "--ram", "512", "--machine", "pc", "--secure-boot")
    assert r.code == 1 and "hardware.secure_boot" in r.err, r
    made = cli.ok("flavor", "create", "uefi.small", "--vcpus", "1", "--ram", "512", "--machine", "q35",
                  "--firmware", "uefi", "--tpm", "--json").json()  # fmt: skip
    assert made["hardware"] == {"machine": "q35", "firmware": "uefi", "tpm": True}, made


def test_expired_access_token_is_refreshed(cli: Cli) -> None:
    stored = json.loads(cli.config.read_text())
    stored["access_token"] = "not-a-valid-token"
    cli.config.write_text(json.dumps(stored))
    cli.ok("host", "list")
    assert json.loads(cli.config.read_text())["access_token"] != "not-a-valid-token"


def test_not_logged_in_hints_login(cli: Cli, tmp_path: Path) -> None:
    other = Cli(tmp_path / "none.json", cli.server)
    r = other("--server", cli.server.url, "vm", "list")
    assert r.code == 1 and "novacron login" in r.err and "Traceback" not in r.err


def test_server_down_is_exit_2_with_hint(cli: Cli) -> None:
    r = cli("vm", "list", env={"NOVACRON_URL": f"http://127.0.0.1:{free_port()}"})
    assert r.code == 2, r
    assert "novacron-server" in r.err and "Traceback" not in r.err


def test_events_and_tasks(cli: Cli) -> None:
    events = cli.ok("events", "--json", "--after", "0").json()
    assert any(e["type"] == "host.registered" for e in events["items"])
    # without --after: the newest events (oldest first, as tail prints them), not the node's first
    for name in ("events-1", "events-2"):
        cli.ok("flavor", "create", name, "--vcpus", "1", "--ram", "64")  # two events more
    every = cli.ok("events", "--json", "--after", "0", "--limit", "1000").json()["items"]
    newest = cli.ok("events", "--json", "--limit", "2").json()["items"]
    assert len(every) > 2 and len(newest) == 2, (every, newest)
    assert newest[0]["seq"] < newest[1]["seq"] and newest[0]["seq"] >= every[-2]["seq"] > every[0]["seq"]
    assert cli.ok("task", "list", "--json").json()["items"] is not None
    r = cli("task", "show", "task-nope")
    assert r.code == 1 and "Not Found (404)" in r.err


@pytest.mark.qemu
def test_vm_lifecycle_from_the_cli(cli: Cli, guest: Guest) -> None:
    r = cli.ok(
        "image",
        "import",
        str(guest.disk),
        "--name",
        "cli-guest",
        "--kernel",
        str(guest.kernel),
        "--initrd",
        str(guest.initrd),
        "--cmdline",
        guest.cmdline,
        "--json",
    )
    image = r.json()
    assert image["status"] == "active" and image["has_kernel"] and image["has_initrd"]

    created = cli.ok("vm", "create", "--name", "cli-vm", "--image", "cli-guest", "--flavor", "tiny", "--json")
    vm = created.json()
    assert vm["state"] == "running"
    assert "cli-vm" in cli.ok("vm", "list").out

    deadline = time.monotonic() + 90
    log = ""
    while "NOVACRON-GUEST-READY" not in log and time.monotonic() < deadline:
        time.sleep(0.5)
        log = cli.ok("vm", "logs", "cli-vm").out
    assert "NOVACRON-GUEST-READY" in log

    # the console without a terminal: stdin piped to the guest, its answer on stdout
    r = cli.ok("vm", "console", "cli-vm", "--linger", "2", stdin="\necho cli-$((6*7))\n")
    assert "cli-42" in r.out

    # metrics as rates per second between samples (issue 17 item 10), not counters since boot
    rates = cli.ok("vm", "metrics", "cli-vm", "--last", "3", "--json").json()
    assert 1 <= len(rates["rates"]) <= 3, rates
    for row in rates["rates"]:
        assert 0 < row["window_s"] < 10 and 0 <= row["qemu_cpu_percent"] <= 400, row
        assert row["disk_read_bytes_per_s"] >= 0 and row["net_rx_bytes_per_s"] >= 0, row
    table = cli.ok("vm", "metrics", "cli-vm").out
    assert "per second" in table and "GUEST CPU" in table and "Average over" in table, table

    for action in ("pause", "resume", "reboot"):
        cli.ok("vm", action, "cli-vm")
    cli.ok("vm", "stop", "cli-vm", "--force")
    assert cli.ok("vm", "show", "cli-vm", "--json").json()["state"] == "stopped"
    snap = cli.ok("vm", "snapshot", "cli-vm", "--image-name", "cli-snap", "--json").json()
    assert snap["status"] == "active"
    cli.ok("vm", "start", "cli-vm")
    refused = cli("vm", "delete", "cli-vm")  # running: not without --force
    assert refused.code == 1 and "is running" in refused.err and "--force" in refused.err, refused
    assert cli.ok("vm", "show", "cli-vm", "--json").json()["state"] == "running"
    cli.ok("vm", "delete", "cli-vm", "--force")
    assert cli.ok("vm", "list", "--json").json()["items"] == []

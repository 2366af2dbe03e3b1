"""What the CLI prints, as a user reads it: tables that stay readable at any width and when piped,
every output format, times in the reader's zone, binary units, names for ids, filters that refuse
values matching nothing, and the list/show/delete commands each resource has in the API.

The CLI runs in-process (typer's runner) against one real ``novacron-server`` shared by the module;
no guest is started."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import typer
from typer.testing import CliRunner

from novacron.cli.main import app
from tests.conftest import Server, destroy_server, make_server

LONG_NAME = "m1.a-flavor-with-a-rather-long-name-for-narrow-terminals"
BOX = set("│┃┏┓┗┛━─┡┩╇╈┼┬┴├┤└┘┌┐═║")


@dataclass
class Out:
    code: int
    out: str
    err: str


@dataclass
class Cli:
    server: Server
    env: dict[str, str]
    api: httpx.Client

    def __call__(self, *args: str, **env: str) -> Out:
        r = CliRunner().invoke(app, list(args), env={**self.env, **env}, prog_name="novacron")
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        return Out(r.exit_code, r.stdout, r.stderr)

    def ok(self, *args: str, **env: str) -> str:
        r = self(*args, **env)
        assert r.code == 0, f"novacron {' '.join(args)} -> {r.code}\n{r.out}\n{r.err}"
        return r.out


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    srv = make_server()
    srv.start(timeout_s=120)  # the machine is shared: a first start can be slow
    try:
        env = {
            "NOVACRON_URL": srv.url,
            "NOVACRON_TOKEN": srv.token(),
            "NOVACRON_CONFIG": str(tmp_path_factory.mktemp("cli") / "credentials.json"),
            "COLUMNS": "200",
            "TZ": "UTC",
        }
        with srv.client() as api:
            _seed(api)
            yield Cli(srv, env, api)
    finally:
        destroy_server(srv)


def _seed(api: httpx.Client) -> None:
    """A flavor with a long name, a network with a subnet, a router, a security group, a volume (a
    task on a named resource)."""
    for body in (
        {
            "name": "m1.a-flavor-with-a-rather-long-name-for-narrow-terminals",
            "vcpus": 2,
            "ram_mb": 2048,
            "disk_gb": 20,
        },
        {"name": "doomed", "vcpus": 1, "ram_mb": 64, "disk_gb": 0},
    ):
        api.post("/v1/flavors", json=body).raise_for_status()
    project = api.get("/v1/projects", params={"name": "default"}).json()["items"][0]["id"]
    net = api.post("/v1/networks", json={"name": "blue", "project_id": project}).json()
    api.post(
        "/v1/subnets", json={"network": net["id"], "name": "blue-v4", "cidr": "10.42.0.0/24"}
    ).raise_for_status()
    router = api.post("/v1/routers", json={"name": "edge", "project_id": project}).json()
    api.post(f"/v1/routers/{router['id']}/interfaces", json={"subnet": "blue-v4"}).raise_for_status()
    api.post("/v1/security-groups", json={"name": "web", "project_id": project}).raise_for_status()
    api.post("/v1/volumes", json={"name": "data", "size_gb": 1, "project_id": project}).raise_for_status()


def _list_commands() -> list[tuple[str, ...]]:
    """Every ``... list`` command that needs no argument, from the CLI's own command tree."""
    found: list[tuple[str, ...]] = []

    def walk(group: typer.core.TyperGroup, path: tuple[str, ...]) -> None:
        for name, command in group.commands.items():
            if isinstance(command, typer.core.TyperGroup):
                walk(command, (*path, name))
            elif name == "list" and not any(p.required for p in command.params):
                found.append((*path, name))

    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    walk(root, ())
    return found


@pytest.mark.parametrize("command", _list_commands(), ids=" ".join)
def test_every_listing_piped_as_csv_and_in_a_terminal(cli: Cli, command: tuple[str, ...]) -> None:
    """(json, yaml and value: test_every_format_of_a_listing; the machine is shared, calls are slow)"""
    plain = cli.ok(*command)
    assert not BOX & set(plain) and "…" not in plain, plain  # piped: plain columns, nothing cut
    rows = list(csv.reader(io.StringIO(cli.ok(*command, "-f", "csv"))))
    assert rows and all(rows[0]), rows  # a header row, even with no rows
    listing = rows[0] != ["Field", "Value"] and command != ("security-group", "list")  # a table per group
    if len(rows) > 1 and listing:
        header = next(line for line in plain.splitlines() if line.strip())
        assert re.split(r"\s{2,}", header.strip()) == rows[0], (header, rows[0])
        table = cli.ok(*command, "-f", "table", COLUMNS="80")
        assert all(h in table for h in rows[0]), table  # every header whole, at 80 columns


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_piped_listing_is_plain_columns_with_whole_headers(cli: Cli) -> None:
    out = cli.ok("flavor", "list")
    assert not BOX & set(out), out
    header, *rows = _lines(out)
    assert header.split() == ["NAME", "ID", "VCPUS", "RAM", "DISK"], out
    long_row = next(r for r in rows if r.startswith("m1.a-flavor"))
    # nothing is cut when piped, and the units are binary
    assert LONG_NAME in long_row and "…" not in out
    assert "2 GiB" in long_row and "20 GiB" in long_row, long_row
    # the columns line up: each header starts where its values start
    assert long_row.index("2 GiB") == header.index("RAM"), out


@pytest.mark.parametrize("columns", [80, 100, 40])
def test_terminal_table_keeps_every_header_whole(cli: Cli, columns: int) -> None:
    out = cli.ok("flavor", "list", "-f", "table", COLUMNS=str(columns))
    for header in ("NAME", "ID", "VCPUS", "RAM", "DISK"):
        assert any(header in line.split() or f" {header} " in line for line in out.splitlines()), (
            header,
            out,
        )
    if columns >= 80:
        assert all(len(line) <= columns for line in out.splitlines()), out
        assert "…" in out  # the long name gave way, by cell, with an ellipsis


def test_every_format_of_a_listing(cli: Cli) -> None:
    doc = json.loads(cli.ok("network", "list", "-f", "json"))
    assert [n["name"] for n in doc["items"]] == ["blue"]
    assert json.loads(cli.ok("network", "list", "--json")) == doc  # --json is -f json
    yaml_text = cli.ok("network", "list", "--format", "yaml")
    assert yaml_text.startswith("items:\n  - id: ") and "name: blue" in yaml_text, yaml_text
    rows = list(csv.reader(io.StringIO(cli.ok("network", "list", "-f", "csv"))))
    assert rows[0][:2] == ["NAME", "ID"] and rows[1][:2] == ["blue", doc["items"][0]["id"]], rows
    assert cli.ok("network", "list", "-f", "value").split()[:2] == ["blue", doc["items"][0]["id"]]
    assert cli("network", "list", "-f", "xml").code == 2  # a format that does not exist is refused
    # -c picks columns by header, in the order given; a column that is not there is named
    assert cli.ok("network", "list", "-c", "id", "-c", "NAME", "-f", "value").split() == [
        doc["items"][0]["id"],
        "blue",
    ]
    assert cli.ok("network", "show", "blue", "-c", "mtu", "-f", "value") == "1450\n"
    r = cli("network", "list", "-c", "colour")
    assert r.code == 1 and "COLOUR" in r.err and "NAME" in r.err, r


def test_detail_formats(cli: Cli) -> None:
    plain = cli.ok("network", "show", "blue")
    assert not BOX & set(plain) and any(line.split()[:2] == ["name", "blue"] for line in plain.splitlines())
    rows = list(csv.reader(io.StringIO(cli.ok("network", "show", "blue", "-f", "csv"))))
    assert rows[0] == ["Field", "Value"] and ["name", "blue"] in rows
    assert "\nname: blue\n" in cli.ok("network", "show", "blue", "-f", "yaml")


def test_times_are_local_and_labelled(cli: Cli) -> None:
    created = cli.api.get("/v1/networks").json()["items"][0]["created_at"]
    tokyo = cli.ok("network", "show", "blue", TZ="Asia/Tokyo")
    line = next(line for line in tokyo.splitlines() if line.startswith("created_at"))
    assert "+09:00 JST" in line, line
    hour = int(created[11:13])
    assert f" {(hour + 9) % 24:02d}:" in line, (created, line)
    utc = cli.ok("--utc", "network", "show", "blue", TZ="Asia/Tokyo")
    assert "+00:00 UTC" in next(line for line in utc.splitlines() if line.startswith("created_at"))
    events = cli.ok("events", "--limit", "3", TZ="Asia/Tokyo")
    assert "+09:00 JST" in events and "T" not in events.split()[1], events


def test_hosts_read_as_allocation_of_capacity(cli: Cli) -> None:
    out = cli.ok("host", "list")
    header, row = _lines(out)[:2]
    assert "VCPUS" in header and " of " in row and "iB" in row, out
    assert "RAM MB" not in out and "/" not in row.split("  ")[0], out


def test_money_names_its_currency(cli: Cli) -> None:
    assert all(p["currency"] == "USD" for p in cli.api.get("/v1/prices").json()["items"])
    assert "0.0000 USD" in cli.ok("price", "list")
    report = cli.ok("usage", "report", "--tenant", "default")
    assert "COST USD" in report and "total cost 0.0000 USD" in report, report
    tenant = cli.api.get("/v1/tenants", params={"name": "default"}).json()["items"][0]["id"]
    assert cli.api.get("/v1/usage", params={"tenant_id": tenant}).json()["currency"] == "USD"
    cli.api.put("/v1/budgets", json={"tenant_id": tenant, "amount": 50}).raise_for_status()
    assert "50.0000 USD" in cli.ok("budget", "list")


def test_new_commands_list_what_the_api_has(cli: Cli) -> None:
    def api_names(path: str, key: str = "name") -> list[str]:
        return sorted(str(i[key]) for i in cli.api.get(path).json()["items"])

    for command, path, key in (
        (("router", "list"), "/v1/routers", "name"),
        (("floating-ip", "list"), "/v1/floating-ips", "ip"),
        (("dr", "runbook", "list"), "/v1/dr/runbooks", "name"),
        (("tenant", "list"), "/v1/tenants", "name"),
        (("project", "list"), "/v1/projects", "name"),
        (("user", "list"), "/v1/users", "username"),
    ):
        listed = json.loads(cli.ok(*command, "-f", "json"))["items"]
        assert sorted(str(i[key]) for i in listed) == api_names(path, key), command
        values = cli.ok(*command, "-f", "value")
        assert all(name in values for name in api_names(path, key)), (command, values)
    assert "edge" in cli.ok("router", "list")
    assert "admin" in cli.ok("user", "list") and "default" in cli.ok("project", "list")
    assert json.loads(cli.ok("router", "show", "edge", "-f", "json"))["name"] == "edge"
    assert json.loads(cli.ok("subnet", "show", "blue-v4", "-f", "json"))["cidr"] == "10.42.0.0/24"
    assert json.loads(cli.ok("tenant", "show", "default", "-f", "json"))["name"] == "default"
    assert json.loads(cli.ok("project", "show", "default", "-f", "json"))["name"] == "default"
    assert json.loads(cli.ok("user", "show", "admin", "-f", "json"))["username"] == "admin"
    assert "Rules:" in cli.ok("security-group", "show", "web")


def test_delete_commands(cli: Cli) -> None:
    project = cli.api.get("/v1/projects", params={"name": "default"}).json()["items"][0]["id"]
    cli.api.post("/v1/security-groups", json={"name": "gone", "project_id": project}).raise_for_status()
    cli.ok("security-group", "delete", "gone")
    assert "gone" not in [g["name"] for g in cli.api.get("/v1/security-groups").json()["items"]]
    cli.ok("flavor", "delete", "doomed")
    assert "doomed" not in [f["name"] for f in cli.api.get("/v1/flavors").json()["items"]]


def test_names_not_ids(cli: Cli) -> None:
    out = cli.ok("subnet", "list")
    row = next(line for line in out.splitlines() if line.startswith("blue-v4"))
    assert " blue " in f" {row} " and "net-" not in row.split("subnet-")[0], out
    assert "blue-v4" in cli.ok("subnet", "list", "--network", "blue")
    ports = _lines(cli.ok("port", "list", "--network", "blue"))
    assert ports[0].split()[:2] == ["ID", "NETWORK"] and ports[1].split()[1] == "blue", ports


def test_task_list_names_the_resource(cli: Cli) -> None:
    [task] = [t for t in cli.api.get("/v1/tasks").json()["items"] if t["resource_type"] == "volume"]
    out = cli.ok("task", "list")
    row = next(line for line in out.splitlines() if line.startswith(task["id"]))
    assert "volume data" in row and task["resource_id"] not in row, out
    # the document keeps the API's fields as they are
    [listed] = [t for t in json.loads(cli.ok("task", "list", "-f", "json"))["items"] if t["id"] == task["id"]]
    assert listed == {**listed, "resource_id": task["resource_id"]} and "resource_name" not in listed


def test_backup_list_takes_vm_as_an_option(cli: Cli) -> None:
    assert "No backups." in cli.ok("backup", "list", "--vm", "nowhere")
    assert json.loads(cli.ok("backup", "list", "--vm", "nowhere", "-f", "json"))["items"] == []


def test_filters_refuse_values_that_match_nothing(cli: Cli) -> None:
    r = cli("vm", "list", "--state", "runing")
    assert r.code == 1 and "runing" in r.err and "running" in r.err and "stopped" in r.err, r
    r = cli("task", "list", "--state", "done")
    assert r.code == 1 and "succeeded" in r.err, r
    assert cli("vm", "list", "--state", "running").code == 0


def test_short_options_mean_one_thing(cli: Cli) -> None:
    create = cli.ok("vm", "create", "--help")
    assert "--flavor" in create and "-f" in create
    logs = cli.ok("vm", "logs", "--help")
    assert "-F" in logs and "--follow" in logs

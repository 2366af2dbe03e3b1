"""``novacron quota|reservation|usage|policy``, run as real subprocesses against a real server
(simulated compute driver, see tests/integration/test_quota_api.py for why)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import Guest, Server, destroy_server, import_guest_image, make_server, wait_task
from tests.integration.test_cli import Cli


@pytest.fixture
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    srv = make_server(NOVACRON_COMPUTE_DRIVER="simulated")
    srv.start(timeout_s=60)
    try:
        c = Cli(tmp_path_factory.mktemp("qcli") / "novacron" / "credentials.json", srv)
        c.ok("login", "--server", srv.url, "--password-stdin", stdin=srv.admin_password + "\n")
        yield c
    finally:
        destroy_server(srv)


def test_quota_reservation_usage_policy_commands(cli: Cli, guest: Guest) -> None:
    server: Server = cli.server
    with server.client() as admin:
        import_guest_image(admin, guest)
    # limits: set on the default project, shown as bars; a child above its parent is refused
    assert "vms" in cli.ok("quota", "set", "--project", "default", "vms=2", "vcpus=4").out
    shown = cli.ok("quota", "show", "--project", "default", "--json").json()
    limits = {r["resource"]: r["limit"] for r in shown["resources"]}
    assert limits["vms"] == 2 and limits["vcpus"] == 4
    tenant = shown["tenant_id"]
    cli.ok("quota", "set", "--tenant", tenant, "vms=3")
    r = cli("quota", "set", "--project", "default", "vms=5")
    assert r.code != 0 and "exceeds the limit 3 of the parent node" in r.err, r.err
    table = cli.ok("quota", "show", "--tenant", tenant, "--children").out
    assert "vms" in table and "project default" in table  # the tenant and its child project, as bars

    # the VM creates count; the third is refused naming the quota
    for name in ("one", "two"):
        cli.ok("vm", "create", "--name", name, "--image", "test-guest", "--flavor", "tiny", "--no-wait")
    r = cli("vm", "create", "--name", "three", "--image", "test-guest", "--flavor", "tiny", "--no-wait")
    assert r.code != 0 and "Quota exceeded" in r.err and "vms" in r.err, r.err
    used = {
        x["resource"]: x["used"]
        for x in cli.ok("quota", "show", "--project", "default", "--json").json()["resources"]
    }
    assert used["vms"] == 2

    # reservations
    start = datetime.now(UTC) + timedelta(days=1)
    created = cli.ok(
        "reservation",
        "create",
        "monday",
        "--vcpus",
        "2",
        "--ram-mb",
        "256",
        "--start",
        start.isoformat(),
        "--end",
        (start + timedelta(hours=9)).isoformat(),
        "--json",
    ).json()
    assert created["status"] == "pending"
    listed = cli.ok("reservation", "list", "--json").json()["items"]
    assert [x["name"] for x in listed] == ["monday"]
    assert "monday" in cli.ok("reservation", "list").out
    assert "cancelled" in cli.ok("reservation", "delete", created["id"]).err

    # usage report in three formats after a metering run
    cli.ok("price", "set", "vcpus", "3600")
    cli.ok("usage", "meter")
    with server.client() as admin:
        vms = admin.get("/v1/vms").json()["items"]
        for vm in vms:
            task = admin.get("/v1/tasks", params={"resource_id": vm["id"]}).json()["items"]
            if task:
                wait_task(admin, task[0]["id"])
    cli.ok("usage", "meter")
    month = datetime.now(UTC).strftime("%Y-%m")
    data = cli.ok("usage", "report", "--tenant", tenant, "--month", month, "--format", "json").json()
    assert data["month"] == month and any(i["resource"] == "vcpus" for i in data["items"]), data
    rows = list(
        csv.DictReader(io.StringIO(cli.ok("usage", "report", "--tenant", tenant, "--format", "csv").out))
    )
    assert {"vcpus", "vms"} <= {row["resource"] for row in rows} and all(
        row["month"] == month for row in rows
    )
    assert "total cost" in cli.ok("usage", "report", "--tenant", tenant, "--month", month).out
    assert cli("usage", "report", "--format", "xml").code != 0

    # policy rules and reconciliation
    cli.ok("policy", "create", "small-only", "--kind", "max_size", "--resource", "vcpus", "max=1")
    assert "small-only" in cli.ok("policy", "list").out
    cli.ok("quota", "set", "--tenant", tenant, "vms=10")
    cli.ok("quota", "set", "--project", "default", "vms=10", "vcpus=inherit")
    r = cli("vm", "create", "--name", "wide", "--image", "test-guest", "--flavor", "medium", "--no-wait")
    assert r.code != 0 and "small-only" in r.err, r.err
    cli.ok("policy", "delete", "small-only")
    assert "No drift" in cli.ok("quota", "reconcile").out

"""``novacron lb ...`` run as real subprocesses against a real ``novacron-server`` (simulated
compute driver; its embedded agent runs HAProxy): a tenant's load balancer from create to delete,
through the table and JSON outputs and the API's refusals."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import destroy_server, make_server, require
from tests.integration.test_cli import Cli


def require_load_balancers() -> None:
    """The server's embedded agent runs each load balancer's HAProxy in a network namespace."""
    require(os.geteuid() == 0, "load balancers' network namespaces need root")
    require(shutil.which("haproxy") is not None, "haproxy is not installed")


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    require_load_balancers()
    srv = make_server(NOVACRON_COMPUTE_DRIVER="simulated")
    srv.start(timeout_s=90)
    try:
        c = Cli(tmp_path_factory.mktemp("lbcli") / "novacron" / "credentials.json", srv)
        c.ok("login", "--server", srv.url, "--password-stdin", stdin=srv.admin_password + "\n")
        yield c
    finally:
        destroy_server(srv)


def test_a_load_balancer_from_create_to_delete(cli: Cli) -> None:
    cli.ok("network", "create", "web")
    cli.ok("subnet", "create", "web4", "--network", "web", "--cidr", "10.20.0.0/24")

    # a refused input is the API's problem, naming the field
    r = cli("lb", "create", "bad", "--subnet", "web4", "--topology", "double")
    assert r.code != 0 and "topology" in r.err and "Traceback" not in r.err, r.err

    created = cli.ok("lb", "create", "front", "--subnet", "web4", "--wait", "--json").json()
    assert created["provisioning_status"] == "ACTIVE", created
    vip = created["vip_address"]
    listed = cli.ok("lb", "list").out
    assert "front" in listed and vip in listed and "ACTIVE" in listed, listed

    cli.ok("lb", "pool", "create", "front", "--protocol", "HTTP", "--name", "web", "--wait")
    listener = cli.ok(
        "lb", "listener", "create", "front", "--protocol", "HTTP", "--port", "80", "--name", "http",
        "--default-pool", "web", "--connection-rate", "50", "--wait", "--json",
    ).json()  # fmt: skip
    assert listener["default_pool_id"] and listener["protocol_port"] == 80
    assert listener["qos"] == {"bandwidth_kbit": None, "connection_rate": 50}
    member = cli.ok(
        "lb", "member", "add", "front", "web", "--address", "10.20.0.50", "--port", "8080",
        "--weight", "3", "--name", "m1", "--wait", "--json",
    ).json()  # fmt: skip
    assert member["weight"] == 3 and member["address"] == "10.20.0.50"
    r = cli("lb", "member", "add", "front", "web", "--address", "192.0.2.9", "--port", "80")
    assert r.code != 0 and "address" in r.err and "192.0.2.9" in r.err, r.err

    r = cli("lb", "member", "set", "front", "web", "m1")
    assert r.code != 0 and "nothing to change" in r.err, r.err
    drained = cli.ok("lb", "member", "set", "front", "web", "m1", "--drain", "--wait", "--json").json()
    assert drained["drain"] is True
    cli.ok(
        "lb",
        "healthmonitor",
        "set",
        "front",
        "web",
        "--type",
        "TCP",
        "--delay",
        "1",
        "--timeout",
        "1",
        "--wait",
    )
    policy = cli.ok(
        "lb", "l7policy", "create", "front", "http", "--action", "REJECT",
        "--rule", "PATH STARTS_WITH /admin", "--wait", "--json",
    ).json()  # fmt: skip
    assert policy["rules"][0]["compare_type"] == "STARTS_WITH"
    assert "PATH STARTS_WITH /admin" in cli.ok("lb", "l7policy", "list", "front", "http").out

    # show: the load balancer with its listeners, pools and members and their operating status
    shown = cli.ok("lb", "show", "front").out
    for text in ("ACTIVE", "Listeners", "http", "Pool web", "m1", "10.20.0.50", "OPERATING"):
        assert text in shown, shown
    tree = cli.ok("lb", "show", "front", "--json").json()
    assert tree["provisioning_status"] == "ACTIVE"
    (pool,) = tree["pools"]
    assert pool["healthmonitor"]["type"] == "TCP"
    assert pool["members"][0]["operating_status"] in {"ONLINE", "OFFLINE", "DRAINING", "NO_MONITOR"}

    cli.ok("lb", "l7policy", "delete", "front", "http", policy["id"], "--wait")
    cli.ok("lb", "member", "remove", "front", "web", "m1", "--wait")
    assert "No members." in cli.ok("lb", "member", "list", "front", "web").out
    r = cli.ok("lb", "delete", "front", "--wait")
    assert "Deleted load balancer front" in r.err
    assert "No load balancers." in cli.ok("lb", "list").out
    r = cli("lb", "show", "front")
    assert r.code != 0 and "no lb named 'front'" in r.err, r.err


@pytest.fixture
def uplink() -> Iterator[str]:
    """An interface of this node (one end of a veth pair): the external network's physical interface
    (not named "nc…": the network backend removes links of its own by that prefix)."""
    suffix = secrets.token_hex(3)
    name = "upl" + suffix
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", "uplp" + suffix], check=True)
    yield name
    subprocess.run(["ip", "link", "del", name], check=False)


def test_a_load_balancer_with_a_floating_ip(cli: Cli, uplink: str) -> None:
    cli.ok("network", "create", "public", "--external", "--physical-interface", uplink)
    cli.ok("subnet", "create", "public4", "--network", "public", "--cidr", "203.0.113.0/24", "--no-dhcp")
    cli.ok("network", "create", "shop")
    cli.ok("subnet", "create", "shop4", "--network", "shop", "--cidr", "10.21.0.0/24")
    # no router joins them yet: refused, naming the option's field
    r = cli("lb", "create", "shop", "--subnet", "shop4", "--floating-network", "public")
    assert r.code != 0 and "floating_network_id" in r.err and "no router" in r.err, r.err
    cli.ok("router", "create", "edge", "--external-network", "public")
    cli.ok("router", "add-interface", "edge", "shop4")
    created = cli.ok(
        "lb", "create", "shop", "--subnet", "shop4", "--floating-network", "public", "--wait", "--json"
    ).json()
    fip = created["floating_ip"]
    assert created["provisioning_status"] == "ACTIVE" and fip.startswith("203.0.113."), created
    assert fip in cli.ok("lb", "show", "shop").out
    cli.ok("lb", "delete", "shop", "--wait")
    # or later: a floating IP associated with the load balancer's VIP port
    plain = cli.ok("lb", "create", "plain", "--subnet", "shop4", "--wait", "--json").json()
    assert plain["floating_ip"] is None
    later = cli.ok("floating-ip", "create", "public", "--port", plain["vip_port_id"], "--json").json()
    assert later["fixed_ip"] == plain["vip_address"]
    assert cli.ok("lb", "show", "plain", "--json").json()["floating_ip"] == later["ip"]
    cli.ok("lb", "delete", "plain", "--wait")

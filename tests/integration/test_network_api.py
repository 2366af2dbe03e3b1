"""Tenant networks through the API of a real server: CRUD, validation, isolation, IPAM, policies.

The datapath is not involved here (that is the linux backend's tests); what is checked is what a
user of the API sees and what the control plane hands the agents (``network_sync`` payloads and
the resolved ``/v1/ports/{id}/spec``).
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    Guest,
    Server,
    destroy_server,
    import_guest_image,
    make_server,
    tenant_user,
    wait_task,
)


@pytest.fixture
def server() -> Iterator[Server]:
    """A server given time to start on a machine shared with other test runs."""
    srv = make_server()
    try:
        srv.start(120)
        yield srv
    finally:
        destroy_server(srv)


@pytest.fixture(params=["sqlite", "postgres"])
def any_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    env: dict[str, str] = {}
    if request.param == "postgres":
        pg = request.getfixturevalue("postgres")
        env["NOVACRON_DATABASE_URL"] = pg.create_database(f"net_{secrets.token_hex(4)}")
    srv = make_server(**env)
    try:
        srv.start(120)
        yield srv
    finally:
        destroy_server(srv)


def _net(c: httpx.Client, name: str, cidr: str, **subnet: Any) -> tuple[str, str]:
    r = c.post("/v1/networks", json={"name": name})
    assert r.status_code == 201, r.text
    net = r.json()
    r = c.post("/v1/subnets", json={"network": net["id"], "name": f"{name}-v4", "cidr": cidr, **subnet})
    assert r.status_code == 201, r.text
    return net["id"], r.json()["id"]


def _problem(r: httpx.Response, status: int, field: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert field in [e["field"] for e in body.get("errors", [])], body
    return str(body["detail"])


def test_crud_validation_and_isolation(server: Server) -> None:
    with server.client() as admin:
        alice, bob = tenant_user(admin, server, "alpha")[0], tenant_user(admin, server, "beta")[0]
    with alice, bob:
        r = alice.post("/v1/networks", json={"name": "web"}, headers={"Idempotency-Key": "net-web-1"})
        assert r.status_code == 201, r.text
        net = r.json()
        again = alice.post("/v1/networks", json={"name": "web"}, headers={"Idempotency-Key": "net-web-1"})
        assert again.json()["id"] == net["id"] and again.json()["vni"] == net["vni"]
        other = alice.post("/v1/networks", json={"name": "db"}).json()
        assert other["vni"] != net["vni"] and net["vni"] >= 1000 and net["mtu"] == 1450
        _problem(alice.post("/v1/networks", json={"name": "web"}), 409, "body.name")
        _problem(alice.post("/v1/networks", json={"name": "ext", "external": True}), 403, "body.external")

        sub = {"network": net["id"], "name": "a", "cidr": "10.1.0.0/24"}
        r = alice.post("/v1/subnets", json=sub)
        assert r.status_code == 201, r.text
        v4 = r.json()
        assert v4["gateway_ip"] == "10.1.0.1" and v4["ip_version"] == 4
        assert v4["allocation_pools"] == [{"start": "10.1.0.2", "end": "10.1.0.254"}]
        bad = [
            ({**sub, "name": "b", "cidr": "10.1.0.128/25"}, "body.cidr", "overlaps"),
            ({**sub, "name": "b", "cidr": "10.2.0.1/24"}, "body.cidr", "network address"),
            ({**sub, "name": "b", "cidr": "not-a-cidr"}, "body.cidr", "CIDR"),
            (
                {**sub, "name": "b", "cidr": "10.2.0.0/24", "gateway_ip": "10.3.0.1"},
                "body.gateway_ip",
                "outside",
            ),
            (
                {
                    **sub,
                    "name": "b",
                    "cidr": "10.2.0.0/24",
                    "allocation_pools": [{"start": "10.2.0.10", "end": "10.9.0.1"}],
                },
                "body.allocation_pools.0",
                "outside",
            ),
            (
                {
                    **sub,
                    "name": "b",
                    "cidr": "10.2.0.0/24",
                    "host_routes": [{"destination": "0.0.0.0/0", "nexthop": "10.5.0.1"}],
                },
                "body.host_routes.0.nexthop",
                "outside",
            ),
        ]
        for body, field, words in bad:
            assert words in _problem(alice.post("/v1/subnets", json=body), 422, field)
        r = alice.post("/v1/subnets", json={**sub, "name": "v6", "cidr": "fd00:1::/64"})
        assert r.status_code == 201, r.text
        v6 = r.json()
        assert v6["ip_version"] == 6 and v6["gateway_ip"] == "fd00:1::1"

        # a port gets one address from each subnet; a requested one is honoured or refused clearly
        r = alice.post("/v1/ports", json={"network": "web"}, headers={"Idempotency-Key": "p1"})
        assert r.status_code == 201, r.text
        port = r.json()
        ips = {f["ip"] for f in port["fixed_ips"]}
        assert ips == {"10.1.0.2", "fd00:1::2"}
        assert port["device"].startswith("tap") and len(port["device"]) <= 15
        assert port["mac"].startswith("fa:16:3e:")
        r = alice.post("/v1/ports", json={"network": "web", "fixed_ips": [{"ip": "10.1.0.77"}]})
        assert r.status_code == 201 and r.json()["fixed_ips"] == [{"subnet_id": v4["id"], "ip": "10.1.0.77"}]
        assert "already used" in _problem(
            alice.post("/v1/ports", json={"network": "web", "fixed_ips": [{"ip": "10.1.0.77"}]}),
            409,
            "body.fixed_ips.0.ip",
        )
        _problem(
            alice.post("/v1/ports", json={"network": "web", "fixed_ips": [{"ip": "10.9.9.9"}]}),
            422,
            "body.fixed_ips.0.ip",
        )

        # security-group rules are checked field by field
        sg = alice.post("/v1/security-groups", json={"name": "web"})
        assert sg.status_code == 201, sg.text
        rules = f"/v1/security-groups/{sg.json()['id']}/rules"
        _problem(
            alice.post(
                rules, json={"direction": "ingress", "ethertype": "IPv6", "remote_cidr": "10.0.0.0/8"}
            ),
            422,
            "body.remote_cidr",
        )
        _problem(
            alice.post(rules, json={"direction": "ingress", "ethertype": "IPv6", "protocol": "icmp"}),
            422,
            "body.protocol",
        )
        _problem(
            alice.post(
                rules, json={"direction": "ingress", "protocol": "tcp", "port_min": 90, "port_max": 80}
            ),
            422,
            "body.port_max",
        )
        _problem(
            alice.post(rules, json={"direction": "ingress", "protocol": "http", "sni_allow": ["a.com"]}),
            422,
            "body.sni_allow",
        )
        r = alice.post(rules, json={"direction": "egress", "protocol": "tls", "sni_allow": ["*.example.com"]})
        assert r.status_code == 201, r.text
        groups = alice.get("/v1/security-groups").json()["items"]
        assert {g["name"] for g in groups} == {"default", "web"}

        # another tenant sees none of it: every id answers 404
        assert bob.get("/v1/networks").json()["items"] == []
        assert bob.get("/v1/ports").json()["items"] == []
        for r in (
            bob.get(f"/v1/networks/{net['id']}"),
            bob.get(f"/v1/subnets/{v4['id']}"),
            bob.get(f"/v1/ports/{port['id']}"),
            bob.get(f"/v1/ports/{port['id']}/spec"),
            bob.delete(f"/v1/ports/{port['id']}"),
            bob.patch(f"/v1/networks/{net['id']}", json={"mtu": 1400}),
            bob.delete(f"/v1/networks/{net['id']}"),
            bob.get(f"/v1/security-groups/{sg.json()['id']}"),
            bob.post(rules, json={"direction": "ingress"}),
        ):
            assert r.status_code == 404, (r.request.method, r.request.url, r.text)
        _problem(bob.post("/v1/ports", json={"network": net["id"]}), 422, "body.network")

        # If-Match on updates, 409 naming what uses a network on delete
        etag = alice.get(f"/v1/networks/{net['id']}").headers["ETag"]
        assert (
            alice.patch(
                f"/v1/networks/{net['id']}", json={"mtu": 1400}, headers={"If-Match": etag}
            ).status_code
            == 200
        )
        assert (
            alice.patch(
                f"/v1/networks/{net['id']}", json={"mtu": 1300}, headers={"If-Match": etag}
            ).status_code
            == 412
        )
        detail = alice.delete(f"/v1/networks/{net['id']}").json()["detail"]
        assert port["id"] in detail and "in use" in detail
        for p in alice.get("/v1/ports", params={"network_id": net["id"]}).json()["items"]:
            assert alice.delete(f"/v1/ports/{p['id']}").status_code == 204
        assert alice.get(f"/v1/subnets/{v4['id']}").json()["used_ips"] == 0
        assert alice.delete(f"/v1/networks/{net['id']}").status_code == 204
        assert alice.get(f"/v1/networks/{net['id']}").status_code == 404
        page = alice.get("/v1/networks", params={"limit": 1}).json()
        assert len(page["items"]) == 1


def test_ipam_exhaustion_and_concurrent_ports(any_server: Server) -> None:
    with any_server.client() as admin:
        c = tenant_user(admin, any_server, "gamma")[0]
    with c:
        net_id, subnet_id = _net(c, "tiny", "10.9.0.0/29")  # .2 - .6: five addresses
        made: list[dict[str, Any]] = []
        errors: list[httpx.Response] = []
        lock = threading.Lock()

        def create() -> None:
            with any_server.client(c.headers["Authorization"].split()[1]) as mine:
                r = mine.post("/v1/ports", json={"network": net_id})
            with lock:
                if r.status_code == 201:
                    made.append(r.json())
                else:
                    errors.append(r)

        threads = [threading.Thread(target=create) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ips = sorted(p["fixed_ips"][0]["ip"] for p in made)
        assert ips == [f"10.9.0.{i}" for i in range(2, 7)], (ips, [e.text for e in errors])
        assert len(errors) == 3
        for r in errors:
            detail = _problem(r, 409, "body.network")
            assert "no free address" in detail and "all 5 addresses" in detail
        # releasing one makes exactly that one available again
        victim = next(p for p in made if p["fixed_ips"][0]["ip"] == "10.9.0.4")
        assert c.delete(f"/v1/ports/{victim['id']}").status_code == 204
        r = c.post("/v1/ports", json={"network": net_id})
        assert r.status_code == 201 and r.json()["fixed_ips"][0]["ip"] == "10.9.0.4"
        assert c.get(f"/v1/subnets/{subnet_id}").json()["used_ips"] == 5


def _sync_ops(server: Server) -> list[tuple[str, str]]:
    db = sqlite3.connect(server.state_dir / "novacron.db")
    try:
        return list(
            db.execute(
                "SELECT host_id, payload FROM host_operations WHERE op = 'network_sync' "
                "ORDER BY created_at, rowid"
            )
        )
    finally:
        db.close()


def test_vm_networks_labels_and_resolved_policy(server: Server, guest: Guest) -> None:
    with server.client() as admin:
        import_guest_image(admin, guest)
        c = tenant_user(admin, server, "delta")[0]
    with c:
        net_id, subnet_id = _net(c, "app", "10.20.0.0/24")
        db_sg = c.post(
            "/v1/security-groups",
            json={
                "name": "db",
                "rules": [
                    {
                        "direction": "ingress",
                        "protocol": "tcp",
                        "port_min": 80,
                        "port_max": 80,
                        "remote_labels": {"tier": "web"},
                    }
                ],
            },
        )
        assert db_sg.status_code == 201, db_sg.text

        def vm(
            name: str, labels: dict[str, str], groups: list[str] | None = None, **nic: Any
        ) -> dict[str, Any]:
            body = {
                "name": name,
                "image": "test-guest",
                "flavor": "tiny",
                "labels": labels,
                "networks": [{"network": "app", **({"security_groups": groups} if groups else {}), **nic}],
            }
            r = c.post("/v1/vms", json=body)
            assert r.status_code == 202, r.text
            return dict(r.json()["vm"])

        web1 = vm("web1", {"tier": "web"})
        web2 = vm("web2", {"tier": "web"}, fixed_ip="10.20.0.50")
        other = vm("batch", {"tier": "batch"})
        db = vm("db1", {"tier": "db"}, ["db"])
        ports = {p["vm_id"]: p for p in c.get("/v1/ports", params={"network_id": net_id}).json()["items"]}
        assert set(ports) == {web1["id"], web2["id"], other["id"], db["id"]}
        assert ports[web2["id"]]["fixed_ips"] == [{"subnet_id": subnet_id, "ip": "10.20.0.50"}]
        assert c.get(f"/v1/vms/{web1['id']}").json()["labels"] == {"tier": "web"}

        def web_sources() -> set[str]:
            spec = c.get(f"/v1/ports/{ports[db['id']]['id']}/spec").json()
            http = [r for r in spec["rules"] if r["protocol"] == "tcp" and r["port_min"] == 80]
            assert len(http) == 1 and http[0]["direction"] == "ingress", spec["rules"]
            return set(http[0]["remote_cidrs"])

        ip = {v: ports[v]["fixed_ips"][0]["ip"] for v in ports}
        assert web_sources() == {f"{ip[web1['id']]}/32", f"{ip[web2['id']]}/32"}
        # (no If-Match: the create task moves the VM's version on meanwhile)
        r = c.patch(f"/v1/vms/{other['id']}", json={"labels": {"tier": "web"}})
        assert r.status_code == 200, r.text
        assert web_sources() == {f"{ip[v['id']]}/32" for v in (web1, web2, other)}
        c.patch(f"/v1/vms/{web1['id']}", json={"labels": {}})
        assert web_sources() == {f"{ip[v['id']]}/32" for v in (web2, other)}

        # a refused NIC leaves nothing behind: no VM, no port, no address
        r = c.post(
            "/v1/vms",
            json={
                "name": "dup",
                "image": "test-guest",
                "flavor": "tiny",
                "networks": [{"network": "app"}, {"network": "app", "fixed_ip": "10.20.0.50"}],
            },
        )
        _problem(r, 409, "body.networks.1.fixed_ip")
        assert c.get("/v1/vms/dup").status_code == 404
        assert len(c.get("/v1/ports", params={"network_id": net_id}).json()["items"]) == 4

        # the agent's desired state: the placed VMs' ports on their host, with DHCP for the network
        for v in (web1, web2, other, db):
            task = next(t for t in c.get("/v1/tasks").json()["items"] if t["resource_id"] == v["id"])
            wait_task(c, task["id"], 180)
        host = c.get(f"/v1/vms/{db['id']}").json()["host_id"]
        assert host is not None
        ops = _sync_ops(server)
        assert ops and all(h == host for h, _ in ops)
        import json

        state = json.loads(ops[-1][1])["state"]
        assert {p["id"] for p in state["ports"]} == {p["id"] for p in ports.values()}
        assert [n["network"]["id"] for n in state["networks"]] == [net_id]
        assert state["networks"][0]["dhcp"] is True
        assert len(state["networks"][0]["leases"]) == 4

        # deleting the VM deletes its port and releases its address
        r = c.delete(f"/v1/vms/{web2['id']}")
        assert r.status_code == 202, r.text
        assert wait_task(c, r.json()["task_id"], 120)["state"] == "succeeded"
        left = c.get("/v1/ports", params={"network_id": net_id}).json()["items"]
        assert web2["id"] not in {p["vm_id"] for p in left} and len(left) == 3
        assert c.get(f"/v1/subnets/{subnet_id}").json()["used_ips"] == 3
        assert web_sources() == {f"{ip[other['id']]}/32"}
        r = c.post("/v1/ports", json={"network": "app", "fixed_ips": [{"ip": "10.20.0.50"}]})
        assert r.status_code == 201, r.text

        # an SR-IOV NIC needs a host with the trait sriov: placement honours it
        r = c.post(
            "/v1/vms",
            json={
                "name": "fast",
                "image": "test-guest",
                "flavor": "tiny",
                "networks": [{"network": "app", "vnic_type": "direct"}],
            },
        )
        assert r.status_code == 202, r.text
        assert r.json()["vm"]["placement"]["required_traits"] == ["sriov"]
        task = wait_task(c, r.json()["task_id"], 120)
        assert task["state"] == "failed" and "sriov" in str(task["error"]), task


def test_router_gateway_and_floating_ip(server: Server) -> None:
    with server.client() as admin:
        r = admin.post(
            "/v1/networks",
            json={"name": "public", "external": True, "project_id": _default_project(admin)},
        )
        assert r.status_code == 201, r.text
        r = admin.post(
            "/v1/subnets", json={"network": "public", "name": "public-v4", "cidr": "203.0.113.0/24"}
        )
        assert r.status_code == 201, r.text
        c = tenant_user(admin, server, "epsilon")[0]
    with c:
        assert [n["name"] for n in c.get("/v1/networks", params={"external": True}).json()["items"]] == [
            "public"
        ]
        _problem(c.post("/v1/ports", json={"network": "public"}), 403, "body.network")
        net_id, subnet_id = _net(c, "inside", "10.30.0.0/24")
        port = c.post("/v1/ports", json={"network": net_id}).json()
        r = c.post("/v1/floating-ips", json={"network": "public", "port": port["id"]})
        assert "no router" in _problem(r, 409, "body.port")
        assert [p["id"] for p in c.get("/v1/ports", params={"network_id": net_id}).json()["items"]] == [
            port["id"]
        ]
        _problem(
            c.post("/v1/routers", json={"name": "r", "external_network": "inside"}),
            422,
            "body.external_network",
        )
        r = c.post("/v1/routers", json={"name": "r1", "external_network": "public"})
        assert r.status_code == 201, r.text
        router = r.json()
        assert router["external_ip"] == "203.0.113.2"
        r = c.post(f"/v1/routers/{router['id']}/interfaces", json={"subnet": subnet_id})
        assert r.status_code == 200, r.text
        assert r.json()["interfaces"][0]["ip"] == "10.30.0.1"
        r = c.post("/v1/floating-ips", json={"network": "public", "port": port["id"]})
        assert r.status_code == 201, r.text
        fip = r.json()
        assert fip["ip"] == "203.0.113.3" and fip["router_id"] == router["id"]
        assert fip["fixed_ip"] == port["fixed_ips"][0]["ip"]
        detail = c.delete(f"/v1/networks/{net_id}").json()["detail"]
        assert router["id"] in detail, detail
        # dissociate, then release: the address is free again
        r = c.patch(f"/v1/floating-ips/{fip['id']}", json={"port": None})
        assert r.status_code == 200 and r.json()["port_id"] is None
        assert c.delete(f"/v1/floating-ips/{fip['id']}").status_code == 204
        assert c.delete(f"/v1/routers/{router['id']}").status_code == 204
        assert c.delete(f"/v1/ports/{port['id']}").status_code == 204
        assert c.delete(f"/v1/networks/{net_id}").status_code == 204


def _default_project(client: httpx.Client) -> str:
    from tests.conftest import default_project

    return default_project(client)


def test_cli_networks(server: Server, tmp_path: Path) -> None:
    from tests.integration.test_cli import Cli

    cli = Cli(tmp_path / "novacron" / "credentials.json", server)
    cli.ok(
        "login",
        "--server",
        server.url,
        "--username",
        "admin",
        "--password-stdin",
        stdin=server.admin_password + "\n",
    )
    cli.ok("network", "create", "web")
    cli.ok("subnet", "create", "web-v4", "--network", "web", "--cidr", "10.5.0.0/24", "--dns", "10.5.0.1")
    assert "web" in cli.ok("network", "list").out
    assert "10.5.0.0/24" in cli.ok("subnet", "list").out
    cli.ok("security-group", "create", "db", "--selector", "tier=db")
    cli.ok(
        "security-group", "rule-add", "db", "--protocol", "tcp", "--port", "80", "--remote-label", "tier=web"
    )
    r = cli("security-group", "rule-add", "db", "--protocol", "icmp", "--ethertype", "IPv6")
    assert r.code == 1 and "protocol: icmp is IPv4" in r.err and "Traceback" not in r.err
    listing = cli.ok("security-group", "list").out
    assert "80-80" in listing and "tier=web" in listing and "selector tier=db" in listing
    cli.ok("qos-policy", "create", "slow", "--egress-kbps", "10000", "--dscp", "10")
    assert "10000" in cli.ok("qos-policy", "list").out
    cli.ok("router", "create", "r1")
    cli.ok("router", "add-interface", "r1", "web-v4")
    ports = cli.ok("port", "list", "--json").out
    assert "router_interface" in ports and "10.5.0.1" in ports
    r = cli("network", "delete", "web")
    assert r.code == 1 and "router" in r.err
    cli.ok("router", "delete", "r1")
    cli.ok("subnet", "delete", "web-v4")
    cli.ok("network", "delete", "web")
    assert "No networks." in cli.ok("network", "list").out

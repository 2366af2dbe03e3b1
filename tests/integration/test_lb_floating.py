"""A load balancer's VIP takes a floating IP, in process (the world and stand-in agent of
``test_lb_resources``): the floating IP is taken in the load balancer's create or associated
later with its VIP port, never with an amphora's VRRP port nor with another tenant's VIP; the
tenant's router DNATs it to the VIP; deleting the load balancer dissociates it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from novacron.db.models import FloatingIP, LbAmphora, Router
from novacron.network.specs import router_spec
from tests.integration.test_lb_resources import World, create_lb, get_lb, lb_world, problem_fields, run_tasks


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with lb_world(tmp_path_factory.mktemp("lbfip")) as made:
        yield made


def _external_network(world: World) -> None:
    c, admin = world.client, world.admin
    project = c.get("/v1/projects", params={"name": "default"}, headers=admin).json()["items"][0]["id"]
    body = {"name": "public", "external": True, "project_id": project}
    assert c.post("/v1/networks", json=body, headers=admin).status_code == 201
    sub = {"network": "public", "name": "public-v4", "cidr": "203.0.113.0/24"}
    assert c.post("/v1/subnets", json=sub, headers=admin).status_code == 201


def _router(world: World) -> str:
    """alpha's router joining its subnet to the external network."""
    c, alpha = world.client, world.alpha
    r = c.post("/v1/routers", json={"name": "edge", "external_network": "public"}, headers=alpha.headers)
    assert r.status_code == 201, r.text
    router_id = str(r.json()["id"])
    r = c.post(f"/v1/routers/{router_id}/interfaces", json={"subnet": alpha.subnet_id}, headers=alpha.headers)
    assert r.status_code == 200, r.text
    return router_id


def _dnat(world: World, router_id: str) -> list[tuple[str, str]]:
    with world.db.read_session() as s:
        router = s.get(Router, router_id)
        assert router is not None
        return [(n.external_ip, n.internal_ip) for n in router_spec(s, router).floating_ips]


def _fip(world: World, who: Any, **body: Any) -> Any:
    return world.client.post("/v1/floating-ips", json={"network": "public", **body}, headers=who.headers)


def test_a_vip_takes_a_floating_ip_dnated_by_the_router(world: World) -> None:
    c, alpha, beta = world.client, world.alpha, world.beta
    _external_network(world)
    # beta has no router to the external network: refused on the field, nothing written
    r = c.post(
        "/v1/loadbalancers",
        json={"name": "lone", "vip_subnet_id": beta.subnet_id, "floating_network_id": "public"},
        headers=beta.headers,
    )
    assert r.status_code == 409 and problem_fields(r) == ["body.floating_network_id"], r.text
    assert "no router" in r.json()["detail"]
    assert c.get("/v1/loadbalancers", headers=beta.headers).json()["items"] == []
    assert c.get("/v1/floating-ips", headers=beta.headers).json()["items"] == []
    r = c.post(
        "/v1/loadbalancers",
        json={"name": "lone", "vip_subnet_id": alpha.subnet_id, "floating_network_id": "nowhere"},
        headers=alpha.headers,
    )
    assert r.status_code in (404, 422) and problem_fields(r) == ["body.floating_network_id"], r.text

    router_id = _router(world)
    lb = create_lb(world, alpha, "front", floating_network_id="public")
    assert lb["floating_ip"] is not None and lb["floating_ip"].startswith("203.0.113.")
    run_tasks(world)
    shown = get_lb(world, alpha, lb["id"])
    assert (shown["provisioning_status"], shown["floating_ip"]) == ("ACTIVE", lb["floating_ip"])
    assert _dnat(world, router_id) == [(lb["floating_ip"], lb["vip_address"])]
    fips = c.get("/v1/floating-ips", headers=alpha.headers).json()["items"]
    assert [(f["ip"], f["port_id"], f["fixed_ip"]) for f in fips] == [
        (lb["floating_ip"], lb["vip_port_id"], lb["vip_address"])
    ]
    # its VIP is taken: a second floating IP for it is a conflict
    r = _fip(world, alpha, port=lb["vip_port_id"])
    assert r.status_code == 409 and problem_fields(r) == ["body.port"], r.text

    # deleting the load balancer dissociates its floating IP (kept by the tenant, DNAT gone)
    assert c.delete(f"/v1/loadbalancers/{lb['id']}", headers=alpha.headers).status_code == 204
    run_tasks(world)
    assert c.get(f"/v1/loadbalancers/{lb['id']}", headers=alpha.headers).status_code == 404
    fip = c.get("/v1/floating-ips", headers=alpha.headers).json()["items"][0]
    assert (fip["ip"], fip["port_id"], fip["router_id"]) == (lb["floating_ip"], None, None)
    assert _dnat(world, router_id) == []
    assert c.delete(f"/v1/floating-ips/{fip['id']}", headers=alpha.headers).status_code == 204


def test_only_the_tenants_own_vip_port_takes_one(world: World) -> None:
    c, alpha, beta = world.client, world.alpha, world.beta
    router_id = str(
        c.get("/v1/routers", params={"name": "edge"}, headers=alpha.headers).json()["items"][0]["id"]
    )
    lb = create_lb(world, alpha, "pair", topology="ACTIVE_STANDBY")
    run_tasks(world)
    assert get_lb(world, alpha, lb["id"])["floating_ip"] is None
    with world.db.read_session() as s:
        vrrp_ports = list(s.scalars(select(LbAmphora.port_id).where(LbAmphora.loadbalancer_id == lb["id"])))
    assert len(vrrp_ports) == 2 and lb["vip_port_id"] not in vrrp_ports
    r = _fip(world, alpha)
    assert r.status_code == 201, r.text
    fip = r.json()
    for port in vrrp_ports:  # an amphora's own address is not the service's
        r = c.patch(f"/v1/floating-ips/{fip['id']}", json={"port": port}, headers=alpha.headers)
        assert r.status_code == 422 and problem_fields(r) == ["body.port"], r.text
    # another tenant's VIP port is as if absent
    r = _fip(world, beta)
    assert r.status_code == 201, r.text
    theirs = r.json()
    r = c.patch(f"/v1/floating-ips/{theirs['id']}", json={"port": lb["vip_port_id"]}, headers=beta.headers)
    assert r.status_code in (404, 422) and problem_fields(r) == ["body.port"], r.text
    r = c.patch(f"/v1/floating-ips/{fip['id']}", json={"port": lb["vip_port_id"]}, headers=alpha.headers)
    assert r.status_code == 200 and r.json()["fixed_ip"] == lb["vip_address"], r.text
    assert get_lb(world, alpha, lb["id"])["floating_ip"] == fip["ip"]
    assert _dnat(world, router_id) == [(fip["ip"], lb["vip_address"])]
    with world.db.read_session() as s:
        assert s.scalar(select(FloatingIP.port_id).where(FloatingIP.id == theirs["id"])) is None

"""A global name's site may be one of the tenant's load balancers, on a real PowerDNS: the site is
the load balancer's floating IP (its VIP without one, which the egress guard refuses when private),
its port one of the load balancer's listeners'; another tenant's load balancer is as absent; each
publication answers the load balancer's address of the moment, and none once it is deleted.

The load balancers live in the in-process world of ``test_lb_resources`` (its stand-in agent)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest

from novacron.gslb.powerdns import PowerDNSServer
from novacron.gslb.service import provider
from novacron.gslb.sync import DnsSync
from novacron.netguard import parse_networks
from tests.conftest import free_port
from tests.integration.gslblab import HEALTH_INTERVAL_S, dig, require_pdns, wait_for
from tests.integration.test_lb_resources import World, create_lb, get_lb, lb_world, problem_fields, run_tasks

ZONE = "gslb.example"
#: the external network's addresses (documentation space) pass the egress guard; tenant VIPs do not
PUBLIC = "198.51.100.0/24"


@dataclass
class GslbWorld:
    lb: World
    dns: PowerDNSServer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GslbWorld]:
    require_pdns()
    overrides: dict[str, Any] = {
        "gslb_zone": ZONE,
        "gslb_dns_port": free_port(),
        "gslb_health_interval_s": HEALTH_INTERVAL_S,
        "egress_allow": parse_networks(PUBLIC),
    }
    with lb_world(tmp_path_factory.mktemp("gslblb"), **overrides) as made:
        dns = cast(PowerDNSServer, provider(made.ctx.settings))
        dns.start()
        try:
            yield GslbWorld(made, dns)
        finally:
            dns.stop()


def _public_network_and_router(w: World) -> None:
    c, admin, alpha = w.client, w.admin, w.alpha
    project = c.get("/v1/projects", params={"name": "default"}, headers=admin).json()["items"][0]["id"]
    body = {"name": "public", "external": True, "project_id": project}
    assert c.post("/v1/networks", json=body, headers=admin).status_code == 201
    sub = {"network": "public", "name": "public-v4", "cidr": PUBLIC}
    assert c.post("/v1/subnets", json=sub, headers=admin).status_code == 201
    r = c.post("/v1/routers", json={"name": "edge", "external_network": "public"}, headers=alpha.headers)
    assert r.status_code == 201, r.text
    r = c.post(
        f"/v1/routers/{r.json()['id']}/interfaces", json={"subnet": alpha.subnet_id}, headers=alpha.headers
    )
    assert r.status_code == 200, r.text


def _name(lb_id: str, port: int, **site: Any) -> dict[str, Any]:
    return {
        "name": "shop.gslb.example",
        "ttl": 5,
        "sites": [{"loadbalancer_id": lb_id, "port": port, "region": "eu", **site}],
    }


def test_a_site_follows_its_load_balancers_address(world: GslbWorld) -> None:
    w = world.lb
    c, alpha, beta = w.client, w.alpha, w.beta
    _public_network_and_router(w)
    lb = create_lb(w, alpha, "shop")
    run_tasks(w)
    r = c.post(
        f"/v1/loadbalancers/{lb['id']}/listeners",
        json={"protocol": "TCP", "protocol_port": 80},
        headers=alpha.headers,
    )
    assert r.status_code == 201, r.text
    run_tasks(w)
    assert get_lb(w, alpha, lb["id"])["provisioning_status"] == "ACTIVE"

    def post(body: dict[str, Any], who: Any = alpha) -> Any:
        return c.post("/v1/gslb/names", json=body, headers=who.headers)

    # its port must be a listener's; its VIP alone is private: refused by the egress guard
    r = post(_name(lb["id"], 443))
    assert r.status_code == 422 and problem_fields(r) == ["body.sites.0.port"], r.text
    assert "(80)" in r.json()["detail"]
    r = post(_name(lb["id"], 80))
    assert r.status_code == 422 and problem_fields(r) == ["body.sites.0.loadbalancer_id"], r.text
    assert lb["vip_address"] in r.json()["detail"]
    # another tenant's load balancer is as absent as one that does not exist
    for who, lb_id in ((beta, lb["id"]), (alpha, "lb-0000000000000000")):
        r = post(_name(lb_id, 80), who)
        assert r.status_code == 422 and problem_fields(r) == ["body.sites.0.loadbalancer_id"], r.text
        assert "no load balancer" in r.json()["detail"]
    r = post({"name": "x.gslb.example", "ttl": 5, "sites": [{"port": 80, "region": "eu"}]})
    assert r.status_code == 422 and problem_fields(r) == ["body.sites.0.address"], r.text

    # with a floating IP the load balancer is a site at that address
    fip = c.post(
        "/v1/floating-ips", json={"network": "public", "port": lb["vip_port_id"]}, headers=alpha.headers
    )
    assert fip.status_code == 201, fip.text
    first = fip.json()["ip"]
    r = post(_name(lb["id"], 80, address="198.51.100.200"))
    assert r.status_code == 422 and problem_fields(r) == ["body.sites.0.address"], r.text
    r = post(_name(lb["id"], 80))
    assert r.status_code == 201, r.text
    name = r.json()
    assert [(s["address"], s["port"], s["loadbalancer_id"]) for s in name["sites"]] == [(first, 80, lb["id"])]
    wait_for(lambda: dig(world.dns, name["name"]) == [first], 5.0)  # the only site: answered even down
    # giving its current address is the same site (a GET's body can be PUT back)
    etag = c.get(f"/v1/gslb/names/{name['id']}", headers=alpha.headers).headers["etag"]
    r = c.put(
        f"/v1/gslb/names/{name['id']}",
        json=_name(lb["id"], 80, address=first),
        headers={**alpha.headers, "If-Match": etag},
    )
    assert r.status_code == 200, r.text

    # another floating IP for it: the next publication (the sync loop's) answers that one
    spare = c.post("/v1/floating-ips", json={"network": "public"}, headers=alpha.headers)
    assert spare.status_code == 201, spare.text
    second = spare.json()["ip"]
    assert c.delete(f"/v1/floating-ips/{fip.json()['id']}", headers=alpha.headers).status_code == 204
    r = c.patch(
        f"/v1/floating-ips/{spare.json()['id']}", json={"port": lb["vip_port_id"]}, headers=alpha.headers
    )
    assert r.status_code == 200 and second != first, r.text
    sync = DnsSync(w.ctx.db, w.ctx.settings)
    sync.sync()
    wait_for(lambda: dig(world.dns, name["name"]) == [second], 5.0)

    # the load balancer deleted: the site is no longer answered (its address may be another's)
    assert c.delete(f"/v1/loadbalancers/{lb['id']}", headers=alpha.headers).status_code == 204
    run_tasks(w)
    sync.sync()
    wait_for(lambda: dig(world.dns, name["name"]) == [], 5.0)

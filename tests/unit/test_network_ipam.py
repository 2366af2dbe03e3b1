"""IPAM: subnet checks name the field at fault; allocation hands out each pool address exactly once."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from novacron.api.errors import from_domain
from novacron.db.base import Database, new_id
from novacron.errors import InvalidInput
from novacron.network import ipam
from tests.unit.network_helpers import db, make_network, make_port, make_subnet

__all__ = ["db"]


def test_defaults_keep_the_gateway_out_of_the_pool() -> None:
    net, gateway, pools = ipam.check_subnet("192.168.5.0/24", None, None)
    assert (str(net), gateway, pools) == ("192.168.5.0/24", "192.168.5.1", [["192.168.5.2", "192.168.5.254"]])
    _, gateway, pools = ipam.check_subnet("192.168.5.0/24", "192.168.5.100", None)
    assert pools == [["192.168.5.1", "192.168.5.99"], ["192.168.5.101", "192.168.5.254"]]
    _, gateway, pools = ipam.check_subnet("fd00::/120", None, None)
    assert gateway == "fd00::1" and pools == [["fd00::2", "fd00::ff"]]


@pytest.mark.parametrize(
    ("cidr", "gateway", "pools", "field"),
    [
        ("10.0.0.1/24", None, None, "body.cidr"),
        ("10.0.0.0/31", None, None, "body.cidr"),
        ("banana", None, None, "body.cidr"),
        ("10.0.0.0/24", "10.0.1.1", None, "body.gateway_ip"),
        ("10.0.0.0/24", "10.0.0.255", None, "body.gateway_ip"),
        ("10.0.0.0/24", "fd00::1", None, "body.gateway_ip"),
        ("10.0.0.0/24", None, [("10.0.0.10", "10.0.1.5")], "body.allocation_pools.0"),
        ("10.0.0.0/24", None, [("10.0.0.1", "10.0.0.5")], "body.allocation_pools.0"),
        ("10.0.0.0/24", None, [("10.0.0.9", "10.0.0.5")], "body.allocation_pools.0"),
        (
            "10.0.0.0/24",
            None,
            [("10.0.0.2", "10.0.0.9"), ("10.0.0.9", "10.0.0.20")],
            "body.allocation_pools.1",
        ),
        ("10.0.0.0/24", None, [("10.0.0.2", "nope")], "body.allocation_pools.0.end"),
    ],
)
def test_bad_subnets_name_their_field(
    cidr: str, gateway: str | None, pools: list[tuple[str, str]] | None, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        ipam.check_subnet(cidr, gateway, pools)
    problem = from_domain(caught.value)  # as the API answers it
    assert problem.status == 422
    assert problem.errors[0]["field"] == field


def test_requested_address_honoured_or_refused(db: Database) -> None:
    with db.session() as s:
        net = make_network(s)
        subnet = make_subnet(s, net, "10.0.0.0/29")
        a, b = make_port(s, net), make_port(s, net)
        assert ipam.allocate(s, subnet, a.id, "10.0.0.6") == "10.0.0.6"
        with pytest.raises(ipam.Taken, match="already used"):
            ipam.allocate(s, subnet, b.id, "10.0.0.6")
        with pytest.raises(ipam.Taken, match="gateway"):
            ipam.allocate(s, subnet, b.id, "10.0.0.1")
        with pytest.raises(ValueError, match="not a usable address"):
            ipam.allocate(s, subnet, b.id, "10.0.0.7")  # broadcast
        got = [ipam.allocate(s, subnet, b.id) for _ in range(4)]
        assert got == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]
        with pytest.raises(ipam.Exhausted, match="all 5 addresses"):
            ipam.allocate(s, subnet, b.id)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    version=st.sampled_from([4, 6]),
    prefix_room=st.integers(min_value=2, max_value=6),
    base=st.integers(min_value=0, max_value=200),
)
def test_every_pool_address_once_then_exhausted(
    db: Database, version: int, prefix_room: int, base: int
) -> None:
    cidr = f"10.{base}.0.0/{32 - prefix_room}" if version == 4 else f"fd00:{base:x}::/{128 - prefix_room}"
    with db.session() as s:
        net = make_network(s)
        subnet = make_subnet(s, net, cidr)
        port = make_port(s, net)
        size = ipam.pool_size(subnet)
        got = [ipam.allocate(s, subnet, port.id) for _ in range(size)]
        assert len(set(got)) == size
        parsed = ipaddress.ip_network(cidr)
        assert all(ipaddress.ip_address(ip) in parsed and ip != subnet.gateway_ip for ip in got)
        with pytest.raises(ipam.Exhausted):
            ipam.allocate(s, subnet, port.id)


def test_vnis_are_unique_and_device_names_fit(db: Database) -> None:
    with db.session() as s:
        vnis = [make_network(s).vni for _ in range(5)]
    assert len(set(vnis)) == 5 and min(vnis) >= ipam.VNI_MIN
    name = ipam.device_name(new_id("port"))
    assert name.startswith("tap") and len(name) == 15

"""dnsmasq's configuration for a network (no dnsmasq started): static leases only, per-subnet options."""

from __future__ import annotations

from pathlib import Path

import pytest

from novacron.network.linux import dhcp, links
from novacron.network.model import FixedIP, NetworkSpec, PortSpec, SubnetSpec

V4 = SubnetSpec(
    "s4",
    "10.0.0.0/24",
    "10.0.0.1",
    allocation_pools=(("10.0.0.10", "10.0.0.200"),),
    host_routes=(("192.168.5.0/24", "10.0.0.5"),),
)
V6 = SubnetSpec("s6", "fd00:1::/64", None)
NET = NetworkSpec("net-1", "t", 7, mtu=1450, subnets=(V4, V6))
PORT = PortSpec(
    "port-abcdef12",
    "net-1",
    "t",
    "52:54:00:00:00:0a",
    (FixedIP("s4", "10.0.0.10"), FixedIP("s6", "fd00:1::10")),
    "tp1",
)


def test_config_hands_out_only_the_ports_addresses(tmp_path: Path) -> None:
    conf = dhcp._config(NET, (PORT,), "nce1", tmp_path).splitlines()
    assert "dhcp-range=set:s0,10.0.0.0,static,255.255.255.0,12h" in conf
    assert "dhcp-range=set:s1,fd00:1::,static,64,12h" in conf and "enable-ra" in conf
    assert "dhcp-host=52:54:00:00:00:0a,10.0.0.10,[fd00:1::10]" in conf
    assert "host-record=port-port-abc,10.0.0.10,fd00:1::10" in conf
    assert "dhcp-option=tag:s0,option:router,10.0.0.1" in conf
    # the DNS server is dnsmasq itself, on the subnet's second-to-last address
    assert "dhcp-option=tag:s0,option:dns-server,10.0.0.254" in conf
    # option 121 replaces the router option in clients: the default route is kept in it
    assert (
        "dhcp-option=tag:s0,option:classless-static-route,192.168.5.0/24,10.0.0.5,0.0.0.0/0,10.0.0.1" in conf
    )


def test_the_dhcp_server_takes_the_highest_address_no_port_or_gateway_has() -> None:
    whole = SubnetSpec("s", "10.0.0.0/24", "10.0.0.254", allocation_pools=(("10.0.0.1", "10.0.0.253"),))
    assert dhcp.server_ip(whole) == "10.0.0.253"
    assert dhcp.server_ip(whole, frozenset({"10.0.0.253", "10.0.0.252"})) == "10.0.0.251"
    assert dhcp.server_ip(SubnetSpec("s6", "fd00:1::/64", None)) == "fd00:1::ffff:ffff:ffff:fffe"
    with pytest.raises(links.NetError, match="no address left"):
        dhcp.server_ip(SubnetSpec("s", "10.0.0.0/30", "10.0.0.2"), frozenset({"10.0.0.1"}))


def test_leases_of_ports_gone_are_dropped_so_their_address_can_be_handed_out_again(tmp_path: Path) -> None:
    """A deleted VM's lease on 10.0.0.11 would keep dnsmasq from giving that address to the port
    that has it now; the live port's lease, other addresses' and the IPv6 lines stay."""
    leases = tmp_path / "leases"
    leases.write_text(
        "1796650000 52:54:00:00:00:0a 10.0.0.10 web-1 01:52:54:00:00:00:0a\n"
        "1796650000 52:54:00:00:00:0b 10.0.0.11 web-2 *\n"
        "duid 00:01:00:01:2c:aa:bb:cc:52:54:00:00:00:01\n"
        "1796650000 1234 fd00:1::10 web-1 00:03:00:01:52:54:00:00:00:0a\n"
    )
    dhcp.prune_leases(leases, (PORT,))
    assert leases.read_text().splitlines() == [
        "1796650000 52:54:00:00:00:0a 10.0.0.10 web-1 01:52:54:00:00:00:0a",
        "duid 00:01:00:01:2c:aa:bb:cc:52:54:00:00:00:01",
        "1796650000 1234 fd00:1::10 web-1 00:03:00:01:52:54:00:00:00:0a",
    ]
    dhcp.prune_leases(tmp_path / "none", (PORT,))  # no lease file yet: nothing to do

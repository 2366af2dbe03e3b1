"""The egress guard's judgement of addresses, with the real resolver (no connection is made)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from novacron import netguard
from novacron.config import Settings

DENIED = [
    "http://127.0.0.1/", "http://2130706433/", "http://0x7f.1/", "http://017700000001/", "http://127.1/",
    "http://localhost/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/",
    "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://10.0.0.1/", "http://172.16.0.1/",
    "http://192.168.1.1/", "http://[fc00::1]/", "http://[fd12:3456::1]/", "http://100.64.0.1/",
    "http://0.0.0.0/", "http://[::]/", "http://224.0.0.1/", "http://[ff02::1]/", "http://198.18.0.1/",
    "http://240.0.0.1/", "http://255.255.255.255/", "http://192.0.2.1/", "http://[2001:db8::1]/",
    "http://[64:ff9b::a9fe:a9fe]/", "http://[2002:7f00:1::]/", "http://name.invalid/",
    "ftp://93.184.216.34/", "file:///etc/passwd", "gopher://93.184.216.34/", "http:///nohost",
    "http://93.184.216.34:99999/",
]  # fmt: skip


@pytest.mark.parametrize("url", DENIED)
def test_inside_addresses_in_every_spelling_are_refused(url: str) -> None:
    with pytest.raises(netguard.EgressDenied):
        netguard.check_url(url, netguard.EgressPolicy())


@pytest.mark.parametrize("url", ["http://93.184.216.34/disk.img", "https://[2606:4700::1111]:8443/x"])
def test_public_addresses_pass(url: str) -> None:
    target = netguard.check_url(url, netguard.EgressPolicy())
    assert str(target.address) in url and target.pinned_url().host == str(target.address)


def test_allow_list_opens_ranges_but_never_this_host() -> None:
    own = next(a for a in netguard.host_addresses() if not a.is_loopback)
    net = ipaddress.ip_network(f"{own}/{24 if own.version == 4 else 64}", strict=False)
    policy = netguard.EgressPolicy(allow=(net, ipaddress.ip_network("10.0.5.0/24")))
    assert netguard.check_url("http://10.0.5.7:8000/img", policy).port == 8000
    with pytest.raises(netguard.EgressDenied, match="platform itself"):
        netguard.check_url(f"http://{ipaddress.ip_address(own) if own.version == 4 else f'[{own}]'}/", policy)
    with pytest.raises(netguard.EgressDenied):
        netguard.check_url("http://10.0.6.7/", policy)


def test_setting_parses_and_names_a_bad_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOVACRON_EGRESS_ALLOW", "10.0.5.0/24, fd00:5::/64")
    assert [str(n) for n in Settings.from_env().egress_allow] == ["10.0.5.0/24", "fd00:5::/64"]
    monkeypatch.setenv("NOVACRON_EGRESS_ALLOW", "10.0.5.0/24,intranet")
    with pytest.raises(ValueError, match="intranet"):
        Settings.from_env()


def test_the_platforms_listen_address_is_its_own() -> None:
    settings = Settings(state_dir=Path("/tmp"), database_url="", listen_host="93.184.216.34")
    policy = netguard.EgressPolicy.from_settings(settings)
    assert policy.refusal(ipaddress.ip_address("93.184.216.34")) == "an address of the platform itself"

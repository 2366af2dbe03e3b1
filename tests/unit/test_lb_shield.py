"""SYN-flood protection and per-listener QoS as text: the synproxy ruleset nft accepts, the
kernel's statistics read, QoS validated and round-tripped, the tc lines and HAProxy's
``rate-limit sessions`` accepted by ``haproxy -c``."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from novacron.errors import InvalidInput
from novacron.lbaas import qos, synproxy
from novacron.lbaas.haproxy import HAProxyInstance
from novacron.lbaas.haproxy_config import ACME_MAP, Paths, render
from novacron.lbaas.model import ListenerSpec, LoadBalancerSpec, PoolSpec
from novacron.lbaas.protection import ListenerProtection
from novacron.lbaas.qos import ListenerQoS
from novacron.network.wire import from_dict, to_dict
from tests.conftest import require
from tests.integration.netsec_topo import have_netns
from tests.unit.test_lb_config import haproxy_accepts


def spec(vip: str = "10.0.0.100") -> LoadBalancerSpec:
    return LoadBalancerSpec(
        "lb-1",
        vip,
        listeners=(
            ListenerSpec(
                "web",
                "HTTP",
                80,
                default_pool_id="pool",
                protection=ListenerProtection(syn_flood=True),
                qos=ListenerQoS(bandwidth_kbit=1000, connection_rate=50),
            ),
            ListenerSpec("tls", "HTTPS", 443, protection=ListenerProtection(syn_flood=True)),
            ListenerSpec("db", "TCP", 5432, qos=ListenerQoS(bandwidth_kbit=20_000)),
            ListenerSpec("plain", "HTTP", 8080, protection=ListenerProtection(rate_limit=5)),
        ),
        pools=(PoolSpec("pool"),),
    )


def test_the_synproxy_covers_exactly_the_protected_listeners() -> None:
    script = synproxy.ruleset(spec(), mtu=1450)
    assert synproxy.protected_ports(spec()) == [80, 443]
    assert (
        "ip daddr 10.0.0.100 tcp dport { 80, 443 } tcp flags & (fin|syn|rst|ack) == syn counter notrack"
        in script
    )
    # the MSS only: no timestamps, hence no window scaling or SACK (synproxy.py says why)
    assert "ct state invalid,untracked counter synproxy mss 1410\n" in script
    assert "ip daddr 10.0.0.100 tcp dport { 80, 443 } ct state invalid counter drop" in script
    ipv6 = synproxy.ruleset(spec("fd00::100"), mtu=1450)
    assert "ip6 daddr fd00::100 tcp dport { 80, 443 }" in ipv6 and "mss 1390" in ipv6
    # an unchanged spec renders the same script (its digest decides whether to load it again)
    assert synproxy.ruleset(spec(), 1450) == script != synproxy.ruleset(spec(), 1500)


def test_without_protected_listeners_the_script_only_removes_the_table() -> None:
    script = synproxy.ruleset(LoadBalancerSpec("lb-1", "10.0.0.100"), mtu=1500)
    assert script == "table inet novacron_synproxy {}\ndelete table inet novacron_synproxy\n"


def test_nft_accepts_the_ruleset() -> None:
    require(have_netns(), "needs root and network namespaces")
    checked = subprocess.run(
        ["nft", "-c", "-f", "-"], input=synproxy.ruleset(spec(), 1500), capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr


def test_the_kernels_statistics_are_summed_over_cpus() -> None:
    stat = (
        "entries\t\tsyn_received\tcookie_invalid\tcookie_valid\tcookie_retrans\tconn_reopened\n"
        "00000000\t00000050\t00000001\t0000000a\t00000000\t00000000\n"
        "00000000\t00000079\t00000000\t00000010\t00000002\t00000000\n"
    )
    totals = synproxy.parse_stat(stat)
    assert (totals["syn_received"], totals["cookie_invalid"], totals["cookie_valid"]) == (0xC9, 1, 0x1A)
    assert totals["cookie_retrans"] == 2 and synproxy.parse_stat("") == {}


def test_qos_is_validated_and_round_trips() -> None:
    refusals: list[tuple[str, Callable[[], object]]] = [
        ("bandwidth_kbit", lambda: ListenerQoS(bandwidth_kbit=10)),
        ("bandwidth_kbit", lambda: ListenerQoS(bandwidth_kbit=qos.MAX_KBIT + 1)),
        ("connection_rate", lambda: ListenerQoS(connection_rate=0)),
    ]
    for field, build in refusals:
        with pytest.raises(InvalidInput) as refused:
            build()
        assert refused.value.fields[0].field == field
    assert from_dict(LoadBalancerSpec, json.loads(json.dumps(to_dict(spec())))) == spec()


def test_each_shaped_listener_gets_a_class_picked_by_vip_and_port() -> None:
    assert qos.shaped(spec()) == {80: 1000, 5432: 20_000}
    assert qos.tc_batch(spec(), "lb0") == [
        "class replace dev lb0 parent 1: classid 1:50 htb rate 1000kbit ceil 1000kbit",
        "filter add dev lb0 parent 1: protocol ip prio 1 u32 match ip src 10.0.0.100/32 "
        "match ip sport 80 0xffff flowid 1:50",
        "class replace dev lb0 parent 1: classid 1:1538 htb rate 20000kbit ceil 20000kbit",
        "filter add dev lb0 parent 1: protocol ip prio 1 u32 match ip src 10.0.0.100/32 "
        "match ip sport 5432 0xffff flowid 1:1538",
    ]
    assert (
        "match ip6 src fd00::100/128 match ip6 sport 80 0xffff" in qos.tc_batch(spec("fd00::100"), "lb0")[1]
    )


def test_the_connection_rate_is_rendered_and_accepted(tmp_path: Path) -> None:
    require(shutil.which("haproxy") is not None, "needs haproxy (scripts/setup.sh installs it)")
    (tmp_path / ACME_MAP).write_text("")
    config = render(spec(), Paths(tmp_path, tmp_path / "certs"))
    assert config.count("rate-limit sessions") == 1 and "    rate-limit sessions 50" in config
    checked = haproxy_accepts(config, tmp_path)
    assert checked.returncode == 0, checked.stderr + config


def test_kernel_protection_needs_a_namespace(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as refused:
        HAProxyInstance(tmp_path / "lb", netns=None).apply(spec())
    assert refused.value.fields[0].field == "protection"
    assert not (tmp_path / "lb").exists()

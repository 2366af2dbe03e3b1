"""QoS on real bridged traffic: tc HTB on ifb devices in a "host" namespace with a Linux bridge, VMs as
namespaces attached by veth pairs standing in for their tap devices (see netsec_topo); rates are
measured with iperf3, DSCP with nftables counters in the receiving VM."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from novacron.network.linux.qos import DOWN, UP, Shaper
from novacron.network.model import QosSpec
from tests.conftest import require
from tests.integration.netsec_topo import Topology, have_netns, sh

LIMIT_KBPS = 10_000


@pytest.fixture
def topo() -> Iterator[Topology]:
    require(have_netns(), "needs root, nft, tc and network namespaces")
    require(shutil.which("iperf3") is not None, "needs iperf3 (scripts/setup.sh installs it)")
    t = Topology()
    try:
        t.up(3)
        t.procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", t.vms[1].ns, "iperf3", "-s", "-p", "5201"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        time.sleep(1)
        yield t
    finally:
        Shaper(t.host).clear()
        t.down()


def iperf(t: Topology, reverse: bool) -> float:
    vm1, vm2 = t.vms[0], t.vms[1]
    flags = "-R" if reverse else ""
    out = vm1.run(f"iperf3 -c {vm2.ip} -p 5201 -t 6 -O 2 -J {flags}", timeout=120).stdout
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1000


def test_port_limits_within_10_percent_dscp_and_clear(topo: Topology) -> None:
    t = topo
    vm1, vm2, vm3 = t.vms
    unshaped = iperf(t, reverse=False)
    assert unshaped > 5 * LIMIT_KBPS, f"the path itself is too slow to test a limit: {unshaped} kbit/s"
    shaper = Shaper(t.host)
    qos = QosSpec(ingress_kbps=LIMIT_KBPS, egress_kbps=LIMIT_KBPS, guaranteed_kbps=2_000, dscp=46)
    shaper.apply([vm1.port(qos=qos), vm2.port(), vm3.port()])
    up = iperf(t, reverse=False)  # VM 1 sends: its egress
    down = iperf(t, reverse=True)  # VM 1 receives: its ingress
    assert abs(up - LIMIT_KBPS) <= 0.1 * LIMIT_KBPS, f"egress {up:.0f} kbit/s"
    assert abs(down - LIMIT_KBPS) <= 0.1 * LIMIT_KBPS, f"ingress {down:.0f} kbit/s"
    # the hierarchy: port class under the network's under the tenant's
    classes = sh(f"ip netns exec {t.host} tc class show dev {UP}").stdout
    assert classes.count("class htb") == 4 and "ceil 10Mbit" in classes
    # DSCP 46 (EF) on VM 1's packets as VM 2 receives them, not on VM 3's
    vm2.run(
        "nft 'add table inet cap; add chain inet cap in { type filter hook input priority 0; }; "
        f"add rule inet cap in ip saddr {vm1.ip} ip dscp ef counter; "
        f"add rule inet cap in ip saddr {vm3.ip} ip dscp ef counter'"
    )
    send = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
    send += f"[s.sendto(b'x', ({vm2.ip!r}, 9)) for _ in range(3)]"
    vm1.py(send)
    vm3.py(send)
    counters = [r["rule"]["expr"][-1]["counter"]["packets"] for r in _rules(vm2.ns)]
    assert counters[0] >= 3 and counters[1] == 0
    shaper.clear()
    for dev in (UP, DOWN):
        assert sh(f"ip -n {t.host} link show {dev}", check=False).returncode != 0
    assert "clsact" not in sh(f"ip netns exec {t.host} tc qdisc show dev {vm1.device}").stdout
    assert "novacron_qos" not in sh(f"ip netns exec {t.host} nft list tables").stdout
    assert not shaper.state.parent.exists()
    assert iperf(t, reverse=False) > 5 * LIMIT_KBPS


def _rules(ns: str) -> list[dict[str, Any]]:
    out = json.loads(sh(f"ip netns exec {ns} nft -j list chain inet cap in").stdout)["nftables"]
    return [x for x in out if "rule" in x]

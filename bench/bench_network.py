"""Tenant network datapath: TCP throughput between two ports on two hosts across VXLAN, against the
same two endpoints joined directly by one veth (no platform in the path); time to program 1,000
ports on a host through ``network_sync``.

Hosts are network namespaces on an underlay bridge (tests/integration/netlab.py); the two ports are
veths whose outer ends the backend puts on the network's bridge, their inner ends in endpoint
namespaces running iperf3. Run as root: ``.venv/bin/python bench/bench_network.py``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from novacron.network.model import FixedIP, NetworkSpec, PortSpec, Rule, SubnetSpec  # noqa: E402
from novacron.network.wire import HostNetwork, HostState, to_dict  # noqa: E402
from tests.integration.netlab import Lab, sh  # noqa: E402

SECONDS = 5


def iperf(server_ns: str, client_ns: str, server_ip: str) -> float:
    """Gbit/s of one TCP stream from ``client_ns`` to ``server_ns``."""
    sh("ip", "netns", "exec", server_ns, "iperf3", "-s", "-D", "-1")
    time.sleep(0.5)
    out = sh(
        "ip",
        "netns",
        "exec",
        client_ns,
        "iperf3",
        "-c",
        server_ip,
        "-t",
        str(SECONDS),
        "-J",
        "--connect-timeout",
        "5000",
        timeout=SECONDS + 30,
    )
    result = json.loads(out)
    if "error" in result:
        raise SystemExit(f"iperf3 {client_ns} -> {server_ip}: {result['error']}")
    return float(result["end"]["sum_received"]["bits_per_second"]) / 1e9


def state(host: str, network: HostNetwork, ports: tuple[PortSpec, ...]) -> dict[str, Any]:
    return {"state": to_dict(HostState(host, None, (network,), ports))}


def endpoint(host_ns: str | None, ns: str, outer: str, ip: str, mtu: int, mac: str) -> None:
    sh("ip", "netns", "add", ns)
    where = ["-n", host_ns] if host_ns else []
    sh(
        "ip",
        *where,
        "link",
        "add",
        outer,
        "mtu",
        str(mtu),
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns,
    )
    # the port's MAC: anti-spoofing lets nothing else out
    sh("ip", "-n", ns, "link", "set", "eth0", "address", mac, "mtu", str(mtu), "up")
    sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="nbn", dir="/tmp"))
    lab = Lab("nbn", work, subnet=249)
    extra_ns: list[str] = []
    try:
        lab.up()
        h1, h2 = lab.hosts
        sub = SubnetSpec("s", "10.9.0.0/24", None, dhcp=False)
        net = NetworkSpec("bench-net", "t", 4242, subnets=(sub,))
        p1 = PortSpec(
            "p1", net.id, "t", "52:54:00:99:00:01", (FixedIP("s", "10.9.0.1"),), "bp1", port_security=False
        )
        p2 = PortSpec("p2", net.id, "t", "52:54:00:99:00:02", (FixedIP("s", "10.9.0.2"),), "bp2")
        endpoint(h1.ns, "nbn-e1", "bp1", "10.9.0.1", net.mtu, p1.mac)
        endpoint(h2.ns, "nbn-e2", "bp2", "10.9.0.2", net.mtu, p2.mac)
        extra_ns += ["nbn-e1", "nbn-e2"]
        h1.sync(state(h1.name, HostNetwork(net, (h2.underlay_ip,)), (p1,)))
        h2.sync(state(h2.name, HostNetwork(net, (h1.underlay_ip,)), (p2,)))
        open_p2 = replace(p2, port_security=False)
        h2.sync(state(h2.name, HostNetwork(net, (h1.underlay_ip,)), (open_p2,)))
        vxlan = {"no rules (port security off)": iperf("nbn-e2", "nbn-e1", "10.9.0.2")}
        for n in (10, 1000):
            # n - 1 rules that do not match (other sources), then the one that lets iperf3 in
            rules = tuple(
                Rule(
                    "ingress",
                    protocol="tcp",
                    port_min=5201,
                    port_max=5201,
                    remote_cidrs=(f"172.{16 + i // 250}.{i % 250}.0/24",),
                )
                for i in range(n - 1)
            ) + (
                Rule("ingress", protocol="tcp", port_min=5201, port_max=5201, remote_cidrs=("10.9.0.1/32",)),
            )
            h2.sync(state(h2.name, HostNetwork(net, (h1.underlay_ip,)), (replace(p2, rules=rules),)))
            vxlan[f"{n:,} rules on the receiving port"] = iperf("nbn-e2", "nbn-e1", "10.9.0.2")
        # the peer: the same two kinds of endpoint namespaces, one veth between them
        sh("ip", "netns", "add", "nbn-d1")
        sh("ip", "netns", "add", "nbn-d2")
        extra_ns += ["nbn-d1", "nbn-d2"]
        sh(
            "ip",
            "-n",
            "nbn-d1",
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            "nbn-d2",
        )
        for n, ns in enumerate(("nbn-d1", "nbn-d2"), 1):
            sh("ip", "-n", ns, "link", "set", "eth0", "mtu", str(net.mtu), "up")
            sh("ip", "-n", ns, "addr", "add", f"10.8.0.{n}/24", "dev", "eth0")
        direct = iperf("nbn-d2", "nbn-d1", "10.8.0.2")
        print(f"TCP, 1 stream, {SECONDS} s, MTU {net.mtu}:")
        print(f"  peer: the same endpoints on one veth, no platform in the path: {direct:.2f} Gbit/s")
        for what, gbps in vxlan.items():
            print(f"  two ports across VXLAN, {what}: {gbps:.2f} Gbit/s ({gbps / direct:.2f} of the peer)")

        ports = tuple(
            PortSpec(
                f"port-{i}",
                net.id,
                "t",
                f"52:54:00:aa:{i >> 8:02x}:{i & 255:02x}",
                (FixedIP("s", f"10.9.{1 + i // 250}.{1 + i % 250}"),),
                f"bt{i}",
                rules=(
                    Rule("ingress", protocol="icmp", remote_cidrs=("10.9.0.0/16",)),
                    Rule("ingress", protocol="tcp", port_min=22, port_max=22),
                ),
            )
            for i in range(1000)
        )
        many = state(h1.name, HostNetwork(net, (h2.underlay_ip,)), (p1, *ports))
        first = h1.sync(many)["seconds"]
        again = h1.sync(many)["seconds"]
        gone = h1.sync(state(h1.name, HostNetwork(net, (h2.underlay_ip,)), (p1,)))["seconds"]
        print(
            "1,000 ports (taps on the bridge, 2 rules each: firewall and QoS applied once) via network_sync:"
        )
        print(f"  program: {first:.2f} s ({first:.2f} ms/port); re-apply unchanged: {again:.2f} s;")
        print(f"  remove all 1,000: {gone:.2f} s")
    finally:
        for ns in extra_ns:
            for pid in sh("ip", "netns", "pids", ns, check=False).split():
                sh("kill", "-9", pid, check=False)
            sh("ip", "netns", "del", ns, check=False)
        lab.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

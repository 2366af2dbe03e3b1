"""Programming a host's ports: 1,000 ports (taps on a VXLAN network's bridge, 2 firewall rules
each) through ``LinuxBackend.sync``, as an agent's ``network_sync`` does: first program, re-apply
of the unchanged state, removal of all; beside the floor of the tools themselves in the same
namespace (the same taps by one ``ip -batch``, the same ruleset by one ``nft -f``, the same taps
deleted as one device group), which no platform can beat.

Runs in a network namespace of its own, removed at the end. Run as root:
``.venv/bin/python bench/bench_network_program.py [--ports 1000]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from novacron.network.linux import linkbatch  # noqa: E402
from novacron.network.linux.backend import LinuxBackend  # noqa: E402
from novacron.network.linux.firewall import compile_ruleset  # noqa: E402
from novacron.network.model import AddressSet, FixedIP, NetworkSpec, PortSpec, Rule, SubnetSpec  # noqa: E402
from novacron.network.wire import HostNetwork, HostState  # noqa: E402

NS = "ncbench-prog"


def ports(n: int, network_id: str) -> tuple[PortSpec, ...]:
    rules = (
        Rule("ingress", protocol="icmp", remote_cidrs=("10.9.0.0/16",)),
        Rule("ingress", protocol="tcp", port_min=22, port_max=22),
    )
    return tuple(
        PortSpec(
            f"port-{i}",
            network_id,
            "t",
            f"52:54:00:aa:{i >> 8:02x}:{i & 255:02x}",
            (FixedIP("s", f"10.9.{1 + i // 250}.{1 + i % 250}"),),
            f"bt{i}",
            rules=rules,
        )
        for i in range(n)
    )


def timed(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def membership_change(
    backend: LinuxBackend, network: HostNetwork, many: tuple[PortSpec, ...]
) -> tuple[float, float]:
    """One member in, one out of a group every port's rule names: as the platform sends it (the
    rule names an ``AddressSet``) and as it was sent before (the rules carry the addresses)."""

    def group(first: int) -> AddressSet:
        members = many[first : first + 100]
        return AddressSet("rweb_4", "IPv4", tuple(f"{p.fixed_ips[0].ip}/32" for p in members))

    def state(rule: Callable[[int], Rule], first: int, sets: tuple[AddressSet, ...] = ()) -> HostState:
        ports = tuple(replace(p, rules=(*p.rules, rule(first))) for p in many)
        return HostState("h", None, (network,), ports, address_sets=sets)

    def named(_: int) -> Rule:
        return Rule("ingress", protocol="tcp", port_min=80, remote_set="rweb_4")

    def written_out(first: int) -> Rule:
        return Rule("ingress", protocol="tcp", port_min=80, remote_cidrs=group(first).cidrs)

    backend.sync(state(named, 0, (group(0),)))
    as_set = timed(backend.sync, state(named, 1, (group(1),)))
    backend.sync(state(written_out, 0))
    inline = timed(backend.sync, state(written_out, 1))
    return as_set, inline


def inside(n: int) -> None:
    """In the bench's namespace: the platform's sync, then the tools' floor on the same devices."""
    net = NetworkSpec("bench-net", "t", 4242, subnets=(SubnetSpec("s", "10.9.0.0/16", None, dhcp=False),))
    many = ports(n, net.id)
    # a VXLAN network with one peer, as on a host of a cluster
    network = HostNetwork(net, ("10.77.0.3",))
    backend = LinuxBackend.for_host(Path(tempfile.mkdtemp(prefix="ncbp")), "10.77.0.2", scope="bp")
    program = timed(backend.sync, HostState("h", None, (network,), many))
    again = timed(backend.sync, HostState("h", None, (network,), many))
    as_set, inline = membership_change(backend, network, many)
    remove = timed(backend.sync, HostState("h", None, (network,), ()))
    bridge = "ncbenchbr"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    plugs = [linkbatch.Plug(p.device, bridge, net.mtu, create=True) for p in many]
    floor_links = timed(linkbatch.plug, plugs)
    script = compile_ruleset(many, {p.device: bridge for p in many}).script()
    start = time.perf_counter()
    subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True)
    floor_nft = time.perf_counter() - start
    floor_remove = timed(linkbatch.delete, [p.device for p in many], 4242)
    backend.clear()
    print(f"{n:,} ports on a VXLAN network's bridge, 2 rules each, via LinuxBackend.sync (firewall + QoS):")
    print(
        f"  program: {program:.2f} s ({program / n * 1000:.2f} ms/port); re-apply unchanged: {again:.2f} s;"
    )
    print(
        f"  a remote group of 100 members gains one and loses one (every port has a rule naming it): "
        f"{as_set:.3f} s as a named set rewritten in place; {inline:.2f} s with the addresses in the rules"
    )
    print(f"  remove all: {remove:.2f} s")
    print("the tools alone, same namespace (the floor):")
    print(f"  {n:,} taps made and plugged by ip -batch: {floor_links:.2f} s;")
    print(f"  their ruleset by one nft -f: {floor_nft:.2f} s (together {floor_links + floor_nft:.2f} s);")
    print(f"  the taps deleted as one group: {floor_remove:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside:
        inside(args.ports)
        return
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        subprocess.run(["ip", "-n", NS, "link", "set", "lo", "up"], check=True)
        argv = [sys.executable, __file__, "--inside", "--ports", str(args.ports)]
        subprocess.run(["nsenter", f"--net=/run/netns/{NS}", *argv], check=True)
        print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)


if __name__ == "__main__":
    main()

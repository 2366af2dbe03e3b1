"""Port firewall cost: throughput across the bridge, programming time, the TLS classifier.

Topology as in tests/integration/netsec_topo.py: a "host" namespace with a Linux bridge and two
"VM" namespaces on veth pairs (standing in for taps). Measured:

1. iperf3 TCP throughput VM 1 -> VM 2 (10 s) on the same path with no platform tables (the peer),
   with the firewall and 1 rule (the allowing one), 10 rules and 1,000 rules on VM 2's port (the
   allowing rule last, each other rule a different /32 source, no set: the worst, linear case).
2. Time to program 1,000 ports (3 rules each, one with a 50-address remote group) with one
   ``Firewall.apply`` (compile + one atomic ``nft -f``).
3. The TLS classifier: parse + verdict rate of ``sni_of``/``allowed`` in one process (its packets/s
   ceiling), and TLS connections/s end to end with an SNI allow-list (ClientHello through NFQUEUE)
   against a plain ``tls`` rule (matched in nftables only).

Run: .venv/bin/python bench/bench_firewall.py
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

from common import load, machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from novacron.network.linux.classifier import allowed, sni_of  # noqa: E402
from novacron.network.linux.firewall import Firewall, compile_ruleset  # noqa: E402
from novacron.network.model import FixedIP, PortSpec, Rule  # noqa: E402
from tests.integration.netsec_topo import Topology, sh  # noqa: E402


def iperf(t: Topology) -> float:
    out = t.vms[0].run(f"iperf3 -c {t.vms[1].ip} -p 5201 -t 10 -O 2 -J", timeout=120).stdout
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e6


def rules(n: int, port: int = 5201) -> tuple[Rule, ...]:
    """``n`` rules, the one allowing VM 1 last; the others each a different /32 (no set: linear)."""
    other = [Rule("ingress", protocol="tcp", port_min=port, remote_cidrs=(f"10.200.{i // 250}.{i % 250}/32",))
             for i in range(n - 1)]  # fmt: skip
    return (*other, Rule("ingress", protocol="tcp", port_min=port, remote_cidrs=("10.9.0.1/32",)))


def group_rule(n: int, port: int = 5201) -> tuple[Rule, ...]:
    """One rule whose remote group has ``n`` members (a named set), VM 1 among them."""
    members = tuple(f"10.200.{i // 250}.{i % 250}/32" for i in range(n - 1)) + ("10.9.0.1/32",)
    return (Rule("ingress", protocol="tcp", port_min=port, remote_cidrs=members),)


def conn_rate(t: Topology, port: int, seconds: float = 6) -> float:
    """New TCP connections per second VM 1 -> VM 2 (each one walks the rules once)."""
    code = f"""
import socket, time
n, end = 0, time.monotonic() + {seconds}
while time.monotonic() < end:
    s = socket.create_connection(({t.vms[1].ip!r}, {port}), timeout=5); s.close(); n += 1
print(n / {seconds})
"""
    return float(t.vms[0].py(code, timeout=seconds + 60))


def udp_pps(t: Topology) -> tuple[float, float]:
    """Small (100-byte) UDP datagrams as fast as iperf3 sends them: received packets/s, loss %."""
    out = t.vms[0].run(f"iperf3 -c {t.vms[1].ip} -p 5201 -u -l 100 -b 0 -t 8 -J", timeout=120).stdout
    s = json.loads(out)["end"]["sum"]
    return s["packets"] * (1 - s["lost_percent"] / 100) / s["seconds"], s["lost_percent"]


def classifier_throughput(t: Topology) -> tuple[float, float, float, float]:
    """Every packet of an iperf3 flow through the classifier (a bench-only table queues them all;
    with no firewall table the verdict mark is ignored, so all pass): Mbit/s and packets/s."""
    from novacron.network.linux import classifier

    state = Path(sh("mktemp -d /tmp/ncclsXXXX").stdout.strip())
    classifier.ensure(t.host, state, 7, {1: ["bench.test"]})
    sh(
        f"ip netns exec {t.host} nft 'add table inet benchq; "
        "add chain inet benchq f { type filter hook forward priority -20; }; "
        "add rule inet benchq f meta l4proto { tcp, udp } th dport 5201 counter meta mark set 0x10000000; "
        "add rule inet benchq f meta l4proto { tcp, udp } th sport 5201 counter meta mark set 0x10000000'"
    )
    try:
        t0 = time.monotonic()
        mbit = iperf(t)
        elapsed = time.monotonic() - t0
        out = json.loads(sh(f"ip netns exec {t.host} nft -j list chain inet benchq f").stdout)["nftables"]
        packets = sum(x["rule"]["expr"][-2]["counter"]["packets"] for x in out if "rule" in x)
        pps, loss = udp_pps(t)
        return mbit, packets / elapsed, pps, loss
    finally:
        sh(f"ip netns exec {t.host} nft delete table inet benchq", check=False)
        classifier.stop(t.host, state)
        sh(f"rm -rf {state}")


def tls_rate(t: Topology, seconds: float = 8) -> float:
    code = f"""
import socket, ssl, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
n, end = 0, time.monotonic() + {seconds}
while time.monotonic() < end:
    s = socket.create_connection(({t.vms[1].ip!r}, 8443), timeout=5)
    ctx.wrap_socket(s, server_hostname="allowed.test").close(); n += 1
print(n / {seconds})
"""
    return float(t.vms[0].py(code, timeout=seconds + 60))


def client_hello() -> bytes:
    """A real ClientHello (from Python's ssl) inside an IPv4/TCP packet."""
    import ssl

    out = ssl.MemoryBIO()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="api.allowed.test")
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = out.read()
    ip = bytes([0x45]) + bytes(8) + bytes([6]) + bytes(10)
    tcp = bytes(12) + bytes([0x50]) + bytes(7)
    return ip + tcp + hello


def main() -> None:
    print(machine(), "load", load())
    t = Topology()
    try:
        t.up(2)
        vm1, vm2 = t.vms
        t.procs.append(subprocess.Popen(["ip", "netns", "exec", vm2.ns, "iperf3", "-s", "-p", "5201"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        time.sleep(1)
        fw = Firewall(t.host)
        print(f"iperf3 TCP VM1 -> VM2 across the bridge, no platform tables: {iperf(t):.0f} Mbit/s")
        for n in (1, 10, 1000):
            fw.apply([vm1.port(), vm2.port(rules(n))])
            print(f"  firewall, {n:>4} rules on the receiving port: {iperf(t):.0f} Mbit/s")
        fw.apply([vm1.port(), vm2.port(group_rule(1000))])
        print(f"  firewall, 1 rule with a 1000-member remote group (set): {iperf(t):.0f} Mbit/s")
        fw.clear()
        t.serve(vm2, 7000, Path("/dev/null"))
        time.sleep(1)
        print(f"new TCP connections/s VM1 -> VM2, no platform tables: {conn_rate(t, 7000):.0f}/s")
        for label, rs in (("1 rule", rules(1, 7000)), ("1000 rules", rules(1000, 7000)),
                          ("1000-member set", group_rule(1000, 7000))):  # fmt: skip
            fw.apply([vm1.port(), vm2.port(rs)])
            print(f"  firewall, {label}: {conn_rate(t, 7000):.0f}/s")
        fw.clear()
        plain_pps, plain_loss = udp_pps(t)
        print(
            f"UDP 100-byte datagrams, no platform tables: {plain_pps:.0f} packets/s received, "
            f"{plain_loss:.0f}% lost"
        )
        mbit, pps, upps, uloss = classifier_throughput(t)
        print(
            f"every packet through the NFQUEUE classifier: TCP {mbit:.0f} Mbit/s ({pps:.0f} GSO packets/s); "
            f"UDP 100-byte {upps:.0f} packets/s received, {uloss:.0f}% lost"
        )

        group = tuple(f"10.7.0.{k}/32" for k in range(50))
        three = (
            Rule("ingress", protocol="tcp", port_min=22),
            Rule("ingress", protocol="tcp", port_min=443, remote_cidrs=group),
            Rule("egress", protocol="udp", port_min=53),
        )
        ports = [
            PortSpec(
                id=f"p{i}",
                network_id=f"n{i % 20}",
                tenant_id=f"t{i % 5}",
                mac=f"52:54:01:00:{i >> 8:02x}:{i & 255:02x}",
                fixed_ips=(FixedIP("s", f"10.{i >> 8}.{i & 255}.2"),),
                device=f"tb{i}",
                rules=three,
            )
            for i in range(1000)
        ]
        t0 = time.perf_counter()
        script = compile_ruleset(ports, {}).script()
        t1 = time.perf_counter()
        fw.apply(ports)
        t2 = time.perf_counter()
        lines = len(script.splitlines())
        print(
            f"program 1000 ports (3 rules each): compile {1000 * (t1 - t0):.0f} ms, "
            f"Firewall.apply total {1000 * (t2 - t1):.0f} ms ({lines} nft lines)"
        )
        fw.clear()

        pkt = client_hello()
        assert sni_of(pkt) == "api.allowed.test"
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 2:
            allowed(sni_of(pkt), ["*.allowed.test"])
            n += 1
        print(f"classifier parse+match: {n / 2:.0f} ClientHellos/s in one process (its packet/s ceiling)")

        tmp = Path(sh("mktemp -d /tmp/ncbenchXXXX").stdout.strip())
        sh(f"openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=allowed.test -days 1 "
           f"-keyout {tmp}/k.pem -out {tmp}/c.pem")  # fmt: skip
        t.serve(vm2, 8443, tmp / "log", tls=(tmp / "c.pem", tmp / "k.pem"))
        time.sleep(1)
        fw.apply([vm1.port(), vm2.port((Rule("ingress", protocol="tls"),))])
        plain = tls_rate(t)
        fw.apply([vm1.port(), vm2.port((Rule("ingress", protocol="tls", sni_allow=("allowed.test",)),))])
        cls = tls_rate(t)
        print(
            f"TLS connections/s: tls rule in nftables {plain:.1f}/s, "
            f"with SNI allow-list via NFQUEUE {cls:.1f}/s"
        )
        fw.clear()
        sh(f"rm -rf {tmp}")
    finally:
        Firewall(t.host).clear()
        t.down()


if __name__ == "__main__":
    main()

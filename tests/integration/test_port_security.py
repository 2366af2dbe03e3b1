"""Security groups on real bridged traffic: nftables in a "host" namespace with a Linux bridge, VMs as
namespaces attached by veth pairs standing in for their tap devices (see netsec_topo). Connections
are real TCP/TLS sockets; "dropped" means the client timed out, not that nothing listened."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from novacron.network.linux.firewall import Firewall
from novacron.network.model import AddressSet, Rule
from tests.conftest import require, short_tmpdir
from tests.integration.netsec_topo import DNS_QUERY, Topology, connect, have_netns, sh, tls_connect, udp
from tests.integration.netsec_topo import VM as TopoVM

WEB_TIER = ("10.9.0.2/32",)  # what the label policy tier=web resolves to: VM 2


@pytest.fixture(scope="module")
def topo() -> Iterator[tuple[Topology, Path]]:
    require(have_netns(), "needs root, nft, tc and network namespaces")
    t, tmp = Topology(), short_tmpdir("ncsec")
    try:
        t.up(3)
        subprocess.run(
            f"openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=allowed.test -days 1 "
            f"-keyout {tmp}/key.pem -out {tmp}/cert.pem",
            shell=True,
            check=True,
            capture_output=True,
        )
        vm1 = t.vms[0]
        for port in (80, 81, 2222, 8080, 8081):
            t.serve(vm1, port, tmp / f"log{port}")
        t.serve_udp(vm1, 5353)
        t.serve(vm1, 8443, tmp / "log8443", tls=(tmp / "cert.pem", tmp / "key.pem"))
        # every server answers before any firewall is there
        for port in (80, 8080):
            for _ in range(50):
                if connect(t.vms[2], vm1.ip, port, b"ping") == "OK":
                    break
            else:
                raise AssertionError(f"server on {port} never came up")
        yield t, tmp
    finally:
        Firewall(t.host).clear()
        t.down()
        sh(f"rm -rf {tmp}", check=False)


def test_tcp80_from_web_tier_only_stateful_with_egress_and_antispoofing(topo: tuple[Topology, Path]) -> None:
    t, tmp = topo
    vm1, vm2, vm3 = t.vms
    fw = Firewall(t.host)
    fw.apply(
        [
            vm1.port(
                (
                    Rule("ingress", protocol="tcp", port_min=80, remote_cidrs=WEB_TIER),
                    Rule("ingress", "IPv6", protocol="tcp", port_min=80, remote_cidrs=(f"{vm2.ip6}/128",)),
                    Rule("ingress", protocol="tcp", port_min=8080, port_max=8081),
                )
            ),
            # VM 2 may only open connections to port 80
            vm2.port((Rule("egress", protocol="tcp", port_min=80), Rule("egress", "IPv6", protocol="tcp"))),
            vm3.port(),
        ]
    )
    # allowed source: the answer comes back (established return traffic through default-deny ingress)
    assert connect(vm2, vm1.ip, 80, b"from-web") == "OK"
    assert connect(vm2, vm1.ip6, 80, b"from-web-v6") == "OK"
    # another source, and the allowed source on another port: dropped, not refused by the kernel
    assert connect(vm3, vm1.ip, 80, b"from-other") == "TimeoutError"
    assert connect(vm3, vm1.ip6, 80, b"from-other-v6") == "TimeoutError"
    assert connect(vm2, vm1.ip, 81, b"wrong-port") == "TimeoutError"
    # 8080 is open to all, but VM 2's egress rules allow only port 80
    assert connect(vm3, vm1.ip, 8080, b"open") == "OK"
    assert connect(vm2, vm1.ip, 8080, b"egress-blocked") == "TimeoutError"
    # VM 3 spoofing VM 2's address
    vm3.run(f"ip addr add {vm2.ip}/32 dev eth0")
    try:
        assert connect(vm3, vm1.ip, 80, b"spoofed-ip", src=vm2.ip) == "TimeoutError"
    finally:
        vm3.run(f"ip addr del {vm2.ip}/32 dev eth0")
    # VM 3 with another MAC: not even the open port answers
    vm3.run("ip link set eth0 address 52:54:00:bb:00:03")
    try:
        # its ARP requests are dropped too: no route to host (OSError) or a timeout
        assert connect(vm3, vm1.ip, 8080, b"spoofed-mac") in ("TimeoutError", "OSError")
    finally:
        vm3.run(f"ip link set eth0 address {vm3.mac}")
    assert connect(vm3, vm1.ip, 8080, b"open-again") == "OK"
    logs = {p: (tmp / f"log{p}").read_bytes() if (tmp / f"log{p}").exists() else b"" for p in (80, 81, 8080)}
    assert b"from-web" in logs[80] and b"from-other" not in logs[80] and b"spoofed" not in logs[80]
    assert logs[81] == b"" or b"wrong-port" not in logs[81]
    assert b"egress-blocked" not in logs[8080] and b"spoofed-mac" not in logs[8080]


def _table_handle(t: Topology) -> str:
    listing = sh(f"ip netns exec {t.host} nft -a list table inet novacron").stdout
    return listing.splitlines()[0].split("# handle")[1].strip()


def test_a_remote_group_is_a_set_rewritten_in_place(topo: tuple[Topology, Path]) -> None:
    t, _ = topo
    vm1, vm2, vm3 = t.vms
    fw = Firewall(t.host)
    ports = [
        vm1.port((Rule("ingress", protocol="tcp", port_min=80, remote_set="rweb_4"),)),
        vm2.port(),
        vm3.port(),
    ]

    def members(*vms: TopoVM) -> dict[str, AddressSet]:
        return {"rweb_4": AddressSet("rweb_4", "IPv4", tuple(f"{v.ip}/32" for v in vms))}

    fw.apply(ports, members(vm2))
    handle = _table_handle(t)
    assert connect(vm2, vm1.ip, 80, b"member", timeout=1) == "OK"
    assert connect(vm3, vm1.ip, 80, b"not-yet", timeout=1) == "TimeoutError"
    # VM 3 joins and VM 2 leaves the group: the set's elements change, the tables stay
    fw.sets_changed(ports, members(vm3))
    assert _table_handle(t) == handle
    assert connect(vm3, vm1.ip, 80, b"joined", timeout=1) == "OK"
    assert connect(vm2, vm1.ip, 80, b"left", timeout=1) == "TimeoutError"
    # nobody left: the rule matches nothing (never "anywhere")
    fw.sets_changed(ports, members())
    assert connect(vm3, vm1.ip, 80, b"empty", timeout=1) == "TimeoutError"
    assert _table_handle(t) == handle


def test_application_protocols_detected_from_traffic(topo: tuple[Topology, Path]) -> None:
    t, tmp = topo
    vm1, vm2, vm3 = t.vms
    fw = Firewall(t.host)
    fw.apply(
        [
            vm1.port(
                (
                    Rule("ingress", protocol="http"),
                    Rule("ingress", protocol="tls", sni_allow=("allowed.test", "*.ok.test")),
                )
            ),
            vm2.port(),
            vm3.port(),
        ]
    )
    # HTTP on a port that is not 80 passes: the method is recognised, not the port number
    assert connect(vm3, vm1.ip, 8081, b"GET / HTTP/1.0\r\n\r\n") == "OK"
    # an SSH client on port 80 is not HTTP: its banner never reaches the server
    assert connect(vm3, vm1.ip, 80, b"SSH-2.0-OpenSSH_9.2\r\n") != "OK"
    assert connect(vm3, vm1.ip, 8080, b"just bytes") != "OK"
    # TLS: the ClientHello's SNI goes through the classifier
    assert tls_connect(vm3, vm1.ip, 8443, "allowed.test") == "OK"
    assert tls_connect(vm2, vm1.ip, 8443, "api.ok.test") == "OK"
    assert tls_connect(vm3, vm1.ip, 8443, "evil.test") != "OK"
    log80 = (tmp / "log80").read_bytes() if (tmp / "log80").exists() else b""
    assert b"SSH-" not in log80
    assert b"just bytes" not in (tmp / "log8080").read_bytes()
    assert b"GET /" in (tmp / "log8081").read_bytes()
    # the same on the way out: VM 3 may only speak TLS to allowed names (an egress rule)
    fw.apply(
        [
            vm1.port((Rule("ingress", protocol="tcp"),)),
            vm2.port(),
            vm3.port((Rule("egress", protocol="tls", sni_allow=("allowed.test",)),)),
        ]
    )
    assert tls_connect(vm3, vm1.ip, 8443, "allowed.test") == "OK"
    assert tls_connect(vm3, vm1.ip, 8443, "evil.test") != "OK"
    assert connect(vm3, vm1.ip, 8081, b"GET / HTTP/1.0\r\n\r\n") != "OK"
    assert connect(vm2, vm1.ip, 8081, b"GET / HTTP/1.0\r\n\r\n") == "OK"


def test_ssh_and_dns_rules(topo: tuple[Topology, Path]) -> None:
    t, tmp = topo
    vm1, vm2, vm3 = t.vms
    Firewall(t.host).apply(
        [vm1.port((Rule("ingress", protocol="ssh"), Rule("ingress", protocol="dns"))), vm2.port(), vm3.port()]
    )
    assert connect(vm3, vm1.ip, 2222, b"SSH-2.0-OpenSSH_9.2\r\n") == "OK"
    assert connect(vm3, vm1.ip, 81, b"GET / HTTP/1.0\r\n\r\n") != "OK"
    assert udp(vm3, vm1.ip, 5353, DNS_QUERY) == "OK"
    assert udp(vm3, vm1.ip, 5353, b"not a dns query at all") == "TimeoutError"
    # the same query from the DHCP server port: a VM may not act as a DHCP server
    assert udp(vm3, vm1.ip, 5353, DNS_QUERY, sport=67) == "TimeoutError"


def test_port_security_off_passes_everything_and_clear_leaves_nothing(topo: tuple[Topology, Path]) -> None:
    t, _ = topo
    vm1, vm2, vm3 = t.vms
    fw = Firewall(t.host)
    fw.apply([vm1.port(security=False), vm2.port(), vm3.port()])
    assert connect(vm3, vm1.ip, 81, b"anything") == "OK"
    fw.apply([vm1.port((Rule("ingress", protocol="tls", sni_allow=("x.test",)),)), vm2.port(), vm3.port()])
    assert "novacron" in sh(f"ip netns exec {t.host} nft list tables").stdout
    pid = int((fw.state_dir / "classifier.pid").read_text())
    assert Path(f"/proc/{pid}").exists()
    fw.clear()
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert sh(f"ip netns exec {t.host} nft list ruleset").stdout.strip() == ""
    assert not fw.state_dir.exists()
    assert connect(vm3, vm1.ip, 81, b"no-firewall") == "OK"


def test_rules_follow_a_migrated_vm(topo: tuple[Topology, Path]) -> None:
    """VM 1 moves to a second host (its device moves namespace, the hosts' bridges are joined by a
    veth standing in for the VXLAN underlay); the destination applies the same PortSpec."""
    t, _ = topo
    vm1, vm2, vm3 = t.vms
    rules = (Rule("ingress", protocol="tcp", port_min=80, remote_cidrs=WEB_TIER),)
    Firewall(t.host).apply([vm1.port(rules), vm2.port(), vm3.port()])
    assert connect(vm2, vm1.ip, 80, b"before") == "OK"
    dest = f"{t.host}b"
    t.extra.append(dest)
    sh(f"ip netns add {dest} && ip -n {dest} link add br0 type bridge && ip -n {dest} link set br0 up")
    sh(f"ip -n {t.host} link add uplink type veth peer name uplink netns {dest}")
    for ns in (t.host, dest):
        sh(f"ip -n {ns} link set uplink master br0 up")
    dst_fw = Firewall(dest)
    try:
        sh(f"ip -n {t.host} link set {vm1.device} netns {dest}")
        sh(f"ip -n {dest} link set {vm1.device} master br0 up")
        dst_fw.apply([vm1.port(rules)])
        Firewall(t.host).apply([vm2.port(), vm3.port()])
        assert connect(vm2, vm1.ip, 80, b"after") == "OK"
        assert connect(vm3, vm1.ip, 80, b"after-other") == "TimeoutError"
        assert connect(vm3, vm1.ip, 8080, b"closed-now") == "TimeoutError"
    finally:
        dst_fw.clear()
        sh(f"ip -n {dest} link set {vm1.device} netns {t.host}", check=False)
        sh(f"ip -n {t.host} link set {vm1.device} master br0 up", check=False)

"""Tenant networks on the ``linux`` backend, end to end with real QEMU guests on two "hosts".

Isolation between the tenants here is the overlay's (separate VNIs and bridges): VM C's pings
come from inside the CIDR the others' security groups allow, so only L2 separation stops them.

Hosts are network namespaces on an underlay bridge (netlab.py). Each host's datapath is driven by
the agent's ``network_sync`` operation (AgentRuntime.execute) with the host's whole desired state,
as the control plane sends it; guests are QEMU (TCG) on the ports' taps, and report what they see
(DHCP lease, pings, HTTP) on their serial console.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from novacron.network.linux import names
from novacron.network.model import (
    FixedIP,
    NatRule,
    NetworkSpec,
    PortSpec,
    RouterInterface,
    RouterSpec,
    Rule,
    SubnetSpec,
)
from novacron.network.wire import HostNetwork, HostState, to_dict
from tests.conftest import Guest, require, short_tmpdir
from tests.integration.netlab import INTERNET_IP, Lab, guest_pids, guest_script, sh

SUB1 = SubnetSpec("sub-1", "10.0.0.0/24", "10.0.0.1", allocation_pools=(("10.0.0.10", "10.0.0.200"),))
SUB2 = SubnetSpec("sub-2", "10.0.0.0/24", None, allocation_pools=(("10.0.0.10", "10.0.0.200"),))
NET1 = NetworkSpec("net-t1", "tenant-1", 1001, subnets=(SUB1,))
#: another tenant's network, with the same addresses: only the VNI keeps them apart
NET2 = NetworkSpec("net-t2", "tenant-2", 1002, subnets=(SUB2,))
EXT = NetworkSpec(
    "net-ext",
    "admin",
    0,
    subnets=(SubnetSpec("sub-ext", "203.0.113.0/24", INTERNET_IP, dhcp=False),),
    external=True,
    physical_interface="ext0",
)
FLOATING_IP = "203.0.113.50"


PING_FROM_SUBNET = Rule("ingress", protocol="icmp", remote_cidrs=("10.0.0.0/24",))


def port(pid: str, net: NetworkSpec, mac: str, ip: str, *rules: Rule) -> PortSpec:
    """A port with its security group (the netsec area's Firewall): default deny inbound."""
    ips = (FixedIP(net.subnets[0].id, ip),)
    return PortSpec(pid, net.id, net.tenant_id, mac, ips, f"tp{pid[-6:]}", rules=(PING_FROM_SUBNET, *rules))


PA = port("port-vm-a", NET1, "52:54:00:10:00:0a", "10.0.0.10")
PB = port(
    "port-vm-b",
    NET1,
    "52:54:00:10:00:0b",
    "10.0.0.11",
    Rule("ingress", protocol="tcp", port_min=80, port_max=80),
)
PC = port("port-vm-c", NET2, "52:54:00:20:00:0c", "10.0.0.12")
ROUTER = RouterSpec(
    "router-t1",
    "tenant-1",
    (RouterInterface(NET1.id, SUB1.id, "10.0.0.1", 24),),
    external_network_id=EXT.id,
    external_ip="203.0.113.10",
    external_prefix_len=24,
    external_gateway=INTERNET_IP,
    floating_ips=(NatRule(FLOATING_IP, PB.fixed_ips[0].ip),),
)

B_SCRIPT = (
    "mkdir -p /tmp/www && echo vm-b-answers > /tmp/www/index.html && httpd -p 80 -h /tmp/www\n"
    "probe 10.0.0.10 150"
)


def host_state(
    host: Any = None,
    networks: tuple[HostNetwork, ...] = (),
    ports: tuple[PortSpec, ...] = (),
    routers: tuple[RouterSpec, ...] = (),
) -> dict[str, Any]:
    """The ``network_sync`` payload, as the control plane's ``network/sync.py`` sends it."""
    state = HostState(host.name if host else "", host.underlay_ip if host else None, networks, ports, routers)
    return {"state": to_dict(state)}


@pytest.fixture
def lab() -> Iterator[Lab]:
    require(os.geteuid() == 0, "network namespaces need root")
    for tool in ("dnsmasq", "nft", "nsenter", "qemu-system-x86_64", "busybox"):
        require(shutil.which(tool) is not None, f"{tool} is not installed")
    work = short_tmpdir("ntl")
    lab = Lab("ntl", work)
    try:
        yield lab.up()
    finally:
        for host in lab.hosts:
            lab.pids += guest_pids(host.state_dir)
        lab.down()
        shutil.rmtree(work, ignore_errors=True)


def vm_payload(guest: Guest, vm_id: str, p: PortSpec, script: str) -> dict[str, Any]:
    return {
        "id": vm_id,
        "name": vm_id,
        "vcpus": 1,
        "ram_mb": 128,
        "disk_gb": 1,
        "image_path": str(guest.disk),
        "image_format": "qcow2",
        "kernel_path": str(guest.kernel),
        "initrd_path": str(guest.initrd),
        "kernel_cmdline": guest.cmdline,
        "user_data": guest_script(script),
        "nics": [{"port_id": p.id, "mac": p.mac, "device": p.device, "network_id": p.network_id}],
    }


def launch(host: Any, guest: Guest, vm_id: str, p: PortSpec, script: str) -> Path:
    return Path(host.helper("launch", vm_payload(guest, vm_id, p, script))["console"])


def wait_for(console: Path, pattern: str, timeout_s: float = 300) -> re.Match[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = console.read_text(errors="replace") if console.exists() else ""
        m = re.search(pattern, text)
        if m:
            return m
        time.sleep(1)
    raise AssertionError(f"{pattern!r} not on {console} after {timeout_s}s:\n{text[-3000:]}")


def our_processes(workdir: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(workdir) in cmd:
                found.append(cmd)
    return found


def test_two_hosts_dhcp_vxlan_isolation_snat_floating_ip_and_clean_delete(lab: Lab, guest: Guest) -> None:
    h1, h2 = lab.hosts
    # host 1: tenant 1's network (DHCP here), the external network, tenant 1's router; VM A
    state1 = host_state(
        h1,
        (
            HostNetwork(NET1, (h2.underlay_ip,), dhcp=True, leases=(PA, PB)),
            HostNetwork(NET2, (h2.underlay_ip,)),
            HostNetwork(EXT),
        ),
        ports=(PA,),
        routers=(ROUTER,),
    )
    # host 2: VM B of tenant 1 and VM C of tenant 2 (tenant 2's DHCP here)
    state2 = host_state(
        h2,
        (HostNetwork(NET1, (h1.underlay_ip,)), HostNetwork(NET2, (h1.underlay_ip,), dhcp=True, leases=(PC,))),
        ports=(PB, PC),
    )
    assert h1.sync(state1)["ports"] == 1
    assert h2.sync(state2)["ports"] == 2
    # converging: applying the same state again changes nothing and fails nothing
    links_before = h1.links()
    h1.sync(state1)
    assert h1.links() == links_before

    con_a = launch(h1, guest, "vm-a", PA, f"probe {PB.fixed_ips[0].ip} 150\nprobe {INTERNET_IP} 60")
    con_b = launch(
        h2,
        guest,
        "vm-b",
        PB,
        B_SCRIPT,
    )
    # the guests got the addresses IPAM gave their ports, from dnsmasq on host 1 over VXLAN for B
    assert wait_for(con_a, r"(?m)^NETLAB-DHCP ([0-9.]+)").group(1) == "10.0.0.10"
    assert wait_for(con_b, r"(?m)^NETLAB-DHCP ([0-9.]+)").group(1) == "10.0.0.11"

    # another tenant's VM, same addresses, same hosts: reaches its own DHCP server, not the others
    con_c = launch(
        h2,
        guest,
        "vm-c",
        PC,
        # its own DHCP server first; then the three that must fail, side by side (each still gets
        # all its pings: one after the other they took 35 s of the test)
        "probe 10.0.0.254 60\nprobe 10.0.0.10 15 &\nprobe 10.0.0.11 15 &\nprobe 203.0.113.1 5 &\nwait",
    )
    assert wait_for(con_c, r"(?m)^NETLAB-DHCP ([0-9.]+)").group(1) == "10.0.0.12"

    # same tenant across hosts over VXLAN, both ways; SNAT out to the internet
    assert wait_for(con_a, r"(?m)^NETLAB-PING 10.0.0.11 (ok|fail)").group(1) == "ok"
    assert wait_for(con_b, r"(?m)^NETLAB-PING 10.0.0.10 (ok|fail)").group(1) == "ok"
    assert wait_for(con_a, rf"(?m)^NETLAB-PING {INTERNET_IP} (ok|fail)").group(1) == "ok"
    # the guest's traffic is counted on its port's tap (the VM's metrics)
    sample = h1.helper("sample", {"id": "vm-a"})
    assert sample["net_tx_bytes"] > 0 and sample["net_rx_bytes"] > 0
    # the internet has no route to 10.0.0.0/24: the reply came back only because of SNAT
    assert "10.0.0" not in lab.internet("ip", "route")

    # a floating IP: the internet reaches VM B (on host 2) through the router on host 1
    answer = lab.internet("curl", "-s", "-m", "20", "--retry", "5", f"http://{FLOATING_IP}/", check=False)
    assert answer.strip() == "vm-b-answers"
    # ... through B's security group: tcp/80 from anywhere, ping only from its own subnet
    assert "0 packets received" in lab.internet(
        "busybox", "ping", "-c", "2", "-W", "2", FLOATING_IP, check=False
    )

    assert wait_for(con_c, r"(?m)^NETLAB-PING 10.0.0.254 (ok|fail)").group(1) == "ok"
    assert wait_for(con_c, r"(?m)^NETLAB-PING 10.0.0.10 (ok|fail)").group(1) == "fail"
    assert wait_for(con_c, r"(?m)^NETLAB-PING 10.0.0.11 (ok|fail)").group(1) == "fail"
    assert wait_for(con_c, r"(?m)^NETLAB-PING 203.0.113.1 (ok|fail)").group(1) == "fail"

    # live migration of B to host 1: host 1 gets B's port (tap, rules) first, then the guest moves;
    # it keeps its address, its running httpd and its security group
    state1_b = host_state(
        h1,
        (
            HostNetwork(NET1, (h2.underlay_ip,), dhcp=True, leases=(PA, PB)),
            HostNetwork(NET2, (h2.underlay_ip,)),
            HostNetwork(EXT),
        ),
        ports=(PA, PB),
        routers=(ROUTER,),
    )
    assert h1.sync(state1_b)["ports"] == 2
    b_spec = vm_payload(guest, "vm-b", PB, B_SCRIPT)
    target = h1.helper("migrate_receive", b_spec)["target"]
    h2.helper("migrate_send", {"id": "vm-b", "target": target}, timeout=600)
    assert h1.helper("migrate_finish", {"id": "vm-b"})["pid"]
    h2.sync(
        host_state(
            h2,
            (
                HostNetwork(NET1, (h1.underlay_ip,)),
                HostNetwork(NET2, (h1.underlay_ip,), dhcp=True, leases=(PC,)),
            ),
            ports=(PC,),
        )
    )
    assert PB.device not in h2.links() and PB.device in h1.links()
    answer = lab.internet("curl", "-s", "-m", "20", "--retry", "5", f"http://{FLOATING_IP}/", check=False)
    assert answer.strip() == "vm-b-answers"
    assert "0 packets received" in lab.internet(
        "busybox", "ping", "-c", "2", "-W", "2", FLOATING_IP, check=False
    )

    # delete: guests gone, then the hosts' desired state is empty
    for host in lab.hosts:
        for pid in guest_pids(host.state_dir):
            os.kill(pid, 9)
    h1.sync(host_state())
    h2.sync(host_state())
    assert h1.links() == ["lo", "ul0", "ext0"]
    assert h2.links() == ["lo", "ul0"]
    for host in lab.hosts:
        assert not [n for n in sh("ip", "netns", "list").split() if n.startswith(names.ns_prefix(host.name))]
        assert host.run("nft", "list", "ruleset").strip() == ""
        assert not list((host.state_dir / "network" / "dhcp").glob("*"))
    assert not [c for c in our_processes(lab.workdir) if "dnsmasq" in c]

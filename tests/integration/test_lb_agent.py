"""Load balancers on a host, end to end: the agent's ``lb_apply`` / ``lb_status`` / ``lb_remove``
with the leg the Linux backend's sync makes, in front of real QEMU guests on a real tenant network.

Two "hosts" share this kernel as two backend scopes (as test_lb_ha does with namespaces): their
legs are namespaces on the network's bridge, whose guests (TCG, static addresses) run busybox
httpd serving their hostname; a client namespace on the same bridge asks the VIP. A member is
taken down and brought back through its serial console (its root shell).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from novacron.agent.runtime import AgentRuntime
from novacron.errors import InvalidInput
from novacron.lbaas.model import (
    AmphoraSpec,
    HealthMonitorSpec,
    ListenerSpec,
    LoadBalancerSpec,
    MemberSpec,
    PoolSpec,
)
from novacron.network.linux import LinuxBackend, names
from novacron.network.model import FixedIP, LoadBalancerLeg, NetworkSpec, PortSpec, SubnetSpec
from novacron.network.wire import HostNetwork, HostState, to_dict
from novacron.virt.base import InstanceSpec, Nic
from novacron.virt.qemu import QemuDriver
from tests.conftest import Guest, require, short_tmpdir

PREFIX = "10.68.0"
MEMBERS = ("m1", "m2", "m3")
#: the health monitor: a check a second, down after 2 failures, up after 2 successes
MONITOR = HealthMonitorSpec("HTTP", delay=1, timeout=1, max_retries=2, max_retries_down=2)
#: the polling and the load of a shared machine, on top of delay × fall (rise)
SLACK_S = 1.5
#: the issue's bound: the VIP answers through the standby within 5 s of losing the active side
FAILOVER_BOUND_S = 5.0


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {res.stderr.strip()}")
    return res


def user_data(ip: str) -> str:
    return (
        "#!/bin/sh\n"
        f"ip link set lo up\nip addr add {ip}/24 dev eth0\nip link set eth0 up\n"
        "mkdir -p /www\nhostname > /www/index.html\n"
        "busybox httpd -f -p 80 -h /www </dev/null >/dev/null 2>&1 &\necho $! > /tmp/web.pid\n"
    )


@dataclass
class Site:
    """The tenant network with its guests, the two hosts' backends and agents, and the client."""

    tag: str
    work: Path
    net: NetworkSpec
    ports: tuple[PortSpec, ...]
    backends: tuple[LinuxBackend, LinuxBackend]
    agents: tuple[AgentRuntime, AgentRuntime]
    driver: QemuDriver
    client: str
    vms: dict[str, str]

    def sync(self, host: int, *legs: LoadBalancerLeg) -> dict[str, int]:
        """Host ``host``'s whole network state: the network, the guests' ports on host 0, ``legs``."""
        state = HostState(
            f"h{host}",
            None,
            (HostNetwork(self.net),),
            self.ports if host == 0 else (),
            loadbalancers=legs,
        )
        return self.backends[host].sync(state)

    def leg(self, leg_id: str, address: str) -> LoadBalancerLeg:
        mac = f"52:54:00:6c:01:{int(address.split('.')[-1]):02x}"
        return LoadBalancerLeg(leg_id, self.net.tenant_id, self.net.id, mac, (f"{address}/24",))

    def execute(self, host: int, op: str, payload: dict[str, Any]) -> dict[str, Any]:
        return asyncio.run(self.agents[host].execute(op, "", payload))

    def get(self, address: str, timeout: int = 2, path: str = "/") -> str | None:
        """The body of ``http://address/path`` from the client; None when nothing answers in time
        (busybox wget's ``-T`` does not bound an unanswered ARP: the process is bounded too)."""
        argv = (
            "ip",
            "netns",
            "exec",
            self.client,
            "wget",
            "-qO-",
            "-T",
            str(timeout),
            f"http://{address}{path}",
        )
        try:
            res = sh(*argv, check=False, timeout=timeout + 1)
        except subprocess.TimeoutExpired:
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    def console(self, member: str, command: str) -> None:
        """Type ``command`` on the member's serial console (its root shell)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(self.driver.console_socket(self.vms[member])))
            sock.sendall(f"\n{command}\n".encode())
            time.sleep(0.2)

    def wait_console(self, member: str, pattern: str, after: int = 0, timeout: float = 120) -> int:
        """Until ``pattern`` is on the member's console past offset ``after``; the end of the log."""
        log = self.driver.console_log(self.vms[member])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log.read_bytes()[after:].decode(errors="replace") if log.exists() else ""
            if re.search(pattern, text):
                return after + len(text.encode())
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} not on {member}'s console after {timeout}s:\n{text[-2000:]}")


def ours(work: Path) -> list[str]:
    """Processes whose command line names the site's directory (HAProxy, keepalived, QEMU)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(work) in cmd:
                found.append(cmd)
    return found


@pytest.fixture(scope="module")
def site(guest: Guest) -> Iterator[Site]:
    require(os.geteuid() == 0, "network namespaces need root")
    for tool in ("haproxy", "keepalived", "socat", "qemu-system-x86_64", "busybox"):
        require(shutil.which(tool) is not None, f"needs {tool} (scripts/setup.sh installs it)")
    tag = secrets.token_hex(3)
    work = short_tmpdir("nclba")
    subnet = SubnetSpec(f"sub-{tag}", f"{PREFIX}.0/24", None)
    net = NetworkSpec(f"net-lba-{tag}", "tenant-lb", 3000 + int(tag, 16) % 1000, subnets=(subnet,))
    ports = tuple(
        PortSpec(
            f"port-{tag}-{m}",
            net.id,
            net.tenant_id,
            f"52:54:00:6c:00:1{i}",
            (FixedIP(subnet.id, f"{PREFIX}.1{i}"),),
            f"tl{tag}{i}",
        )
        for i, m in enumerate(MEMBERS, 1)
    )
    backends = (
        LinuxBackend(work / "h0" / "net", None, f"lba{tag}0"),
        LinuxBackend(work / "h1" / "net", None, f"lba{tag}1"),
    )
    agents = (
        AgentRuntime(None, None, lease_dir=work / "h0" / "run", network=backends[0]),  # type: ignore[arg-type]
        AgentRuntime(None, None, lease_dir=work / "h1" / "run", network=backends[1]),  # type: ignore[arg-type]
    )
    for host in ("h0", "h1"):
        (work / host / "run").mkdir(parents=True, exist_ok=True)
    driver = QemuDriver(work / "vms", work / "run", "auto", bridge=None, tap_salt=tag)
    client = f"lbc{tag}"
    s = Site(tag, work, net, ports, backends, agents, driver, client, {})
    try:
        s.sync(0)
        s.sync(1)
        sh("ip", "netns", "add", client)
        sh("ip", "link", "add", f"lbc{tag}", "type", "veth", "peer", "name", "eth0", "netns", client)
        sh("ip", "link", "set", f"lbc{tag}", "master", names.bridge(net.id), "up")
        sh("ip", "-n", client, "addr", "add", f"{PREFIX}.100/24", "dev", "eth0")
        sh("ip", "-n", client, "link", "set", "eth0", "up")
        sh("ip", "-n", client, "link", "set", "lo", "up")
        specs = [
            InstanceSpec(
                f"lba-{tag}-{m}",
                m,
                1,
                128,
                1,
                guest.disk,
                "qcow2",
                p.mac,
                guest.kernel,
                guest.initrd,
                guest.cmdline,
                user_data(p.fixed_ips[0].ip),
                nics=(Nic(p.id, p.mac, p.device, net.id),),
            )
            for m, p in zip(MEMBERS, ports, strict=True)
        ]

        async def boot() -> None:
            await asyncio.gather(*(driver.launch(spec) for spec in specs))

        asyncio.run(boot())
        s.vms = {spec.name: spec.id for spec in specs}
        for m in MEMBERS:
            s.wait_console(m, r"NOVACRON-GUEST-READY", timeout=180)
        yield s
    finally:
        for agent in agents:
            if agent.load_balancers is not None:
                for lb_id in list(agent.load_balancers.health()):
                    agent.load_balancers.remove(lb_id)
        for instance_id in s.vms.values():
            asyncio.run(driver.destroy(instance_id))
        for backend in reversed(backends):
            backend.release()
        sh("ip", "netns", "del", client, check=False)
        shutil.rmtree(work, ignore_errors=True)


def single(vip: str) -> LoadBalancerSpec:
    pool = PoolSpec(
        "pool-1",
        members=tuple(MemberSpec(m, f"{PREFIX}.1{i}", 80) for i, m in enumerate(MEMBERS, 1)),
        healthmonitor=MONITOR,
    )
    return LoadBalancerSpec(
        "lb-single", vip, (ListenerSpec("web", "HTTP", 80, default_pool_id="pool-1"),), (pool,)
    )


def wait_member(s: Site, host: int, lb_id: str, member: str, state: str, timeout: float) -> float:
    """Seconds until the agent reports ``member`` in ``state``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        members = s.execute(host, "lb_status", {"loadbalancer_id": lb_id})["members"]
        if members[f"pool-1/{member}"] == state:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{member} is {members[f'pool-1/{member}']}, not {state}, after {timeout}s")


def test_round_robin_over_the_guests_and_health_takes_a_member_out_and_back(site: Site) -> None:
    s = site
    leg = s.leg("lb-single", f"{PREFIX}.5")
    assert s.sync(0, leg)["loadbalancers"] == 1
    spec = single(f"{PREFIX}.5")
    answer = s.execute(0, "lb_apply", {"spec": to_dict(spec), "leg_id": leg.id})
    assert answer["applied"] is True and answer["vrrp_state"] is None
    assert set(answer["members"]) == {f"pool-1/{m}" for m in MEMBERS}
    # idempotent: the same state again is a reload that changes nothing
    assert s.execute(0, "lb_apply", {"spec": to_dict(spec), "leg_id": leg.id})["applied"] is True
    for m in MEMBERS:
        wait_member(s, 0, "lb-single", m, "UP", timeout=10)

    answers = [s.get(f"{PREFIX}.5") for _ in range(6)]
    assert sorted(str(a) for a in answers) == sorted(MEMBERS * 2), answers  # round robin: each guest twice

    # m2's web server dies: out within delay × fall, and no request goes to it then
    s.console("m2", "kill $(cat /tmp/web.pid) && echo LBT-KILL''ED")
    s.wait_console("m2", r"LBT-KILLED", timeout=30)
    down_s = wait_member(
        s, 0, "lb-single", "m2", "DOWN", timeout=MONITOR.delay * MONITOR.max_retries_down + 10
    )
    print(f"\nmember down after {down_s:.2f} s (delay × fall = {MONITOR.delay * MONITOR.max_retries_down} s)")
    assert down_s <= MONITOR.delay * MONITOR.max_retries_down + SLACK_S
    assert set(s.get(f"{PREFIX}.5") for _ in range(4)) == {"m1", "m3"}
    report = asyncio.run(s.agents[0].lb_report())
    assert report is not None and report["lb_health"]["lb-single"]["pool-1/m2"] == "DOWN"
    stats = {
        (series, labels.get("member_id")): value
        for series, labels, value in report["lb_metrics"]["lb-single"]
    }
    # the statistics in the report: the 12 requests so far, and m2 down
    assert stats[("novacron_lb_listener_requests_total", None)] >= 10
    assert stats[("novacron_lb_member_up", "m2")] == 0 and stats[("novacron_lb_member_up", "m1")] == 1

    # back: in again within delay × rise
    s.console("m2", "busybox httpd -f -p 80 -h /www </dev/null >/dev/null 2>&1 & echo $! > /tmp/web.pid")
    up_s = wait_member(s, 0, "lb-single", "m2", "UP", timeout=MONITOR.delay * MONITOR.max_retries + 10)
    print(f"member up after {up_s:.2f} s (delay × rise = {MONITOR.delay * MONITOR.max_retries} s)")
    assert up_s <= MONITOR.delay * MONITOR.max_retries + SLACK_S
    assert set(s.get(f"{PREFIX}.5") for _ in range(6)) == set(MEMBERS)

    # a configuration HAProxy refuses (a certificate it does not have) is an error in HAProxy's
    # words, and the running load balancer keeps serving the previous one
    tls = ListenerSpec(
        "tls", "TERMINATED_HTTPS", 443, default_pool_id="pool-1", default_tls_container_ref="nocert"
    )
    refused = dataclasses.replace(spec, listeners=(*spec.listeners, tls))
    with pytest.raises(InvalidInput, match="nocert"):
        s.execute(0, "lb_apply", {"spec": to_dict(refused), "leg_id": leg.id})
    assert s.get(f"{PREFIX}.5") in MEMBERS

    # an ACME HTTP-01 answer put at run time is served on the VIP, and gone once removed
    token, thumbprint = "t" * 43, "k" * 43
    challenge = f"/.well-known/acme-challenge/{token}"
    answer = s.execute(
        0,
        "lb_challenge",
        {"loadbalancer_id": "lb-single", "token": token, "key_authorization": f"{token}.{thumbprint}"},
    )
    assert answer == {"answering": True}
    assert s.get(f"{PREFIX}.5", path=challenge) == f"{token}.{thumbprint}"
    s.execute(0, "lb_challenge", {"loadbalancer_id": "lb-single", "token": token})
    assert s.get(f"{PREFIX}.5", path=challenge) is None  # busybox httpd has no such file: 404

    # a leg whose veth was lost behind the backend's back is rebuilt by the next sync (an intact
    # one is left alone), and the VIP answers again
    sh("ip", "link", "del", names.lb_veth(leg.id))
    assert s.get(f"{PREFIX}.5", timeout=1) is None
    s.sync(0, leg)
    for m in MEMBERS:  # the health checks failed meanwhile: back within delay × rise
        wait_member(s, 0, "lb-single", m, "UP", timeout=10)
    assert s.get(f"{PREFIX}.5") in MEMBERS

    # a restarted agent finds the running HAProxy again by its sockets, and reports its members
    again = AgentRuntime(None, None, lease_dir=s.agents[0].run_dir, network=s.backends[0])  # type: ignore[arg-type]
    report = asyncio.run(again.lb_report())
    assert report is not None and set(report["lb_health"]["lb-single"].values()) == {"UP"}


def test_active_standby_moves_the_vip_when_the_master_leg_goes(site: Site) -> None:
    s = site
    vip = f"{PREFIX}.6"
    amp_a, amp_b = s.leg("amp-a", f"{PREFIX}.21"), s.leg("amp-b", f"{PREFIX}.22")
    base = single(vip)
    spec = LoadBalancerSpec(
        "lb-ha",
        vip,
        base.listeners,
        base.pools,
        topology="ACTIVE_STANDBY",
        amphorae=(
            AmphoraSpec("amp-a", "MASTER", f"{PREFIX}.21"),
            AmphoraSpec("amp-b", "BACKUP", f"{PREFIX}.22"),
        ),
    )
    single_leg = s.leg("lb-single", f"{PREFIX}.5")
    s.sync(0, single_leg, amp_a)
    s.sync(1, amp_b)
    for host, leg in ((0, amp_a), (1, amp_b)):
        payload = {"spec": to_dict(spec), "leg_id": leg.id, "amphora_id": leg.id}
        assert s.execute(host, "lb_apply", payload)["applied"] is True
    deadline = time.monotonic() + 15
    while s.execute(0, "lb_status", {"loadbalancer_id": "lb-ha"})["vrrp_state"] != "MASTER":
        assert time.monotonic() < deadline, "amp-a never became MASTER"
        time.sleep(0.1)
    assert s.execute(1, "lb_status", {"loadbalancer_id": "lb-ha"})["vrrp_state"] == "BACKUP"
    assert s.get(vip) in MEMBERS

    # the master's leg goes (its host's network sync no longer lists it): the standby takes the VIP
    s.sync(0, single_leg)
    lost = time.monotonic()
    while (answer := s.get(vip, timeout=1)) is None:
        assert time.monotonic() - lost < FAILOVER_BOUND_S + 5, "the VIP never answered through amp-b"
    gap = time.monotonic() - lost
    print(f"\nVIP answered through the standby {gap:.2f} s after the master's leg went")
    assert answer in MEMBERS and gap < FAILOVER_BOUND_S
    assert s.execute(1, "lb_status", {"loadbalancer_id": "lb-ha"})["vrrp_state"] == "MASTER"
    # the lost side's processes (in a namespace no longer named) stop on its lb_remove
    assert s.execute(0, "lb_remove", {"loadbalancer_id": "lb-ha", "leg_id": "amp-a"}) == {"removed": True}
    assert not [c for c in ours(s.work / "h0") if "lb/" + names.h("lb-ha") in c]


def test_lb_remove_leaves_no_process_and_the_sync_no_namespace(site: Site) -> None:
    s = site
    for host, lb_id, leg_id in ((0, "lb-single", "lb-single"), (1, "lb-ha", "amp-b"), (0, "lb-ha", "amp-a")):
        assert s.execute(host, "lb_remove", {"loadbalancer_id": lb_id, "leg_id": leg_id}) == {"removed": True}
    s.sync(0)
    s.sync(1)
    for host in (0, 1):
        assert ours(s.work / f"h{host}") == []
        assert list((s.work / f"h{host}" / "run" / "lb").iterdir()) == []
        prefix = names.ns_prefix(s.backends[host].scope) + "l"
        assert [ns for ns in sh("ip", "netns", "list").stdout.split() if ns.startswith(prefix)] == []
    assert s.get(f"{PREFIX}.5", timeout=1) is None
    with pytest.raises(Exception, match="not on this host"):
        s.execute(0, "lb_status", {"loadbalancer_id": "lb-single"})

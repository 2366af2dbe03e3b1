"""Tenant networks end to end through the REST API only: a real server, one real ``novacron
agent`` per "host" (a network namespace of netlab's lab, the agent running inside it), real QEMU
guests whose serial consoles (read through the API) report what they saw on the wire.

Nothing here writes a host's desired state: the API calls make the control plane queue the
``network_sync`` operations, the agents claim them over HTTPS and program their namespaces.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from novacron.network.linux import names
from tests.conftest import (
    Guest,
    Server,
    default_project,
    destroy_server,
    import_guest_image,
    make_server,
    require,
    short_tmpdir,
    tenant_user,
    wait_task,
)
from tests.integration.netlab import INTERNET_IP, Host, Lab, guest_pids, guest_script, sh
from tests.integration.test_remote_agent import _wait_host

CIDR = "10.40.0.0/24"
POOL = [{"start": "10.40.0.10", "end": "10.40.0.200"}]
SRV, WEB, OTHER, INTRUDER = "10.40.0.20", "10.40.0.21", "10.40.0.22", "10.40.0.30"
DHCP_SERVER = "10.40.0.254"  # dnsmasq takes the subnet's second-to-last address
PUBLIC = "203.0.113.0/24"  # the provider network: netlab's "internet" is INTERNET_IP on it

#: the API test's own probes: an HTTP GET on port 80, and iperf3 (``$3``: ``-R`` to receive)
PROBES = """hprobe() {
  i=0
  while [ $i -lt $2 ]; do
    rm -f /tmp/got
    printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 $1 80 >/tmp/got 2>/dev/null
    if grep -q srv-answers /tmp/got 2>/dev/null; then echo "NETLAB-HTTP $1 ok"; return; fi
    i=$((i + 1))
    sleep 1
  done
  echo "NETLAB-HTTP $1 fail"
}
iperf() {
  i=0
  while [ $i -lt 40 ]; do
    r=$(iperf3 -c $1 -t 10 -O 2 -f k $3 2>/dev/null | sed -n 's|.* \\([0-9.]*\\) Kbits/s.*receiver|\\1|p')
    if [ -n "$r" ]; then echo "NETLAB-IPERF $2 $r"; return; fi
    i=$((i + 1))
    sleep 2
  done
  echo "NETLAB-IPERF $2 fail"
}
"""
#: the server starts httpd before it has an address: whoever pinged it can expect an answer on 80
#: (the probes use nc: this busybox's ``wget -T`` segfaults)
HTTPD = "mkdir -p /tmp/www && echo srv-answers > /tmp/www/index.html && httpd -p 80 -h /tmp/www"
#: web's port has this QoS policy (both directions); iperf3 in the guests measures it
LIMIT_KBPS = 10_000
#: the policy limits the port's Ethernet frames; iperf3 counts TCP payload: 1448 of 1514 bytes
GOODPUT_KBPS = LIMIT_KBPS * 1448 / 1514


@dataclass
class HostAgent:
    """``novacron agent`` running inside a lab host's namespace, its VTEP on the host's underlay."""

    host: Host
    proc: subprocess.Popen[bytes] | None = None

    def start(self, server: Server, token: dict[str, Any]) -> None:
        url = f"https://{server.env['NOVACRON_LISTEN_HOST']}:{server.env['NOVACRON_AGENT_PORT']}"
        env = {
            **os.environ,
            "NOVACRON_UNDERLAY_IP": self.host.underlay_ip,
            "NOVACRON_NETWORK_BACKEND": "linux",
            "NOVACRON_MIGRATION_ADDRESS": self.host.underlay_ip,
        }
        log = (self.host.state_dir / "agent.log").open("ab")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.host.ns}", sys.executable, "-m", "novacron.cli.main"]
            + ["agent", "--server", url, "--name", self.host.name, "--state-dir", str(self.host.state_dir)]
            + ["--join-token", token["join_token"], "--ca-fingerprint", token["ca_fingerprint"]],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def api_lab() -> Iterator[tuple[Lab, Server, list[HostAgent]]]:
    require(os.geteuid() == 0, "network namespaces need root")
    for tool in ("dnsmasq", "nft", "nsenter", "qemu-system-x86_64", "busybox"):
        require(shutil.which(tool) is not None, f"{tool} is not installed")
    work = short_tmpdir("nae")
    lab = Lab("nae", work, subnet=247)
    agents: list[HostAgent] = []
    server: Server | None = None
    try:
        lab.up()
        # the control plane listens on the underlay bridge: reachable from every host namespace
        # not loopback: HTTPS (plain HTTP is refused there), the clients trust the platform CA
        server = make_server(
            NOVACRON_EMBEDDED_AGENT="0", NOVACRON_LISTEN_HOST=f"10.{lab.subnet}.0.1", NOVACRON_PLAIN_HTTP="0"
        )
        server.start(60)
        agents = [HostAgent(h) for h in lab.hosts]
        yield lab, server, agents
    finally:
        for agent in agents:
            agent.stop()
        keep = Path("/tmp/nae-logs")  # for a failure's post-mortem: the lab's dirs go below
        keep.mkdir(exist_ok=True)
        for log in [*work.glob("h*/agent.log"), *([server.log_path] if server else [])]:
            shutil.copy(log, keep / f"{log.parent.name}-{log.name}")
        for host in lab.hosts:
            lab.pids += guest_pids(host.state_dir)
        lab.down()
        if server is not None:
            destroy_server(server)
        subprocess.run(["pkill", "-9", "-f", f"{work}/"], check=False)
        shutil.rmtree(work, ignore_errors=True)


def _network(c: httpx.Client, name: str) -> tuple[str, str]:
    r = c.post("/v1/networks", json={"name": name})
    assert r.status_code == 201, r.text
    net = r.json()["id"]
    body = {"network": net, "name": f"{name}-v4", "cidr": CIDR, "gateway_ip": "10.40.0.1"}
    r = c.post("/v1/subnets", json={**body, "allocation_pools": POOL})
    assert r.status_code == 201, r.text
    return str(net), str(r.json()["id"])


def _vm(
    c: httpx.Client, name: str, slot: str, net: str, ip: str, script: str, **extra: Any
) -> dict[str, Any]:
    nic: dict[str, Any] = {"network": net, "fixed_ip": ip}
    if "groups" in extra:
        nic["security_groups"] = extra.pop("groups")
    if "qos" in extra:
        nic["qos_policy"] = extra.pop("qos")
    body = {
        "name": name,
        "image": "test-guest",
        "flavor": "tiny",
        "user_data": script,
        "networks": [nic],
        "placement": {"labels": {"slot": slot}},
        **extra,
    }
    r = c.post("/v1/vms", json=body)
    assert r.status_code == 202, r.text
    return dict(r.json())


def _console(c: httpx.Client, vm_id: str, pattern: str, timeout_s: float = 300) -> str:
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        r = c.get(f"/v1/vms/{vm_id}/console-log", params={"tail": 65536})
        text = r.text if r.status_code == 200 else text
        m = re.search(pattern, text)
        if m:
            return m.group(1)
        time.sleep(1)
    raise AssertionError(f"{pattern!r} not on the console of {vm_id} after {timeout_s}s:\n{text[-3000:]}")


def _leftovers(host: Host, bridges: set[str], taps: set[str]) -> list[str]:
    links = set(host.links())
    found = sorted(links & (bridges | taps | {names.VXLAN + b[len(names.BRIDGE) :] for b in bridges}))
    found += [n for n in sh("ip", "netns", "list").split() if n.startswith(names.ns_prefix(host.name))]
    if host.run("nft", "list", "ruleset").strip():
        found.append("nft ruleset")
    return found


def test_tenant_networks_through_the_api(api_lab: tuple[Lab, Server, list[HostAgent]], guest: Guest) -> None:
    lab, server, agents = api_lab
    h1, h2 = lab.hosts
    with server.client() as admin:
        # two hosts join, each from inside its namespace, reporting its underlay address
        hosts: dict[str, dict[str, Any]] = {}
        for agent, slot in zip(agents, ("h1", "h2"), strict=True):
            token = admin.post("/v1/hosts/join-tokens", json={"ttl_s": 600}).json()
            agent.start(server, token)
            host: dict[str, Any] = _wait_host(admin, agent.host.name, 90)
            assert host["underlay_ip"] == agent.host.underlay_ip
            traits = list(host["traits"]) + (["network-node"] if slot == "h1" else [])
            r = admin.patch(f"/v1/hosts/{host['id']}", json={"labels": {"slot": slot}, "traits": traits})
            assert r.status_code == 200, r.text
            hosts[slot] = host
        import_guest_image(admin, guest)
        # the provider network leaves h1 (the network node) through its interface ext0
        r = admin.post(
            "/v1/networks",
            json={
                "name": "public",
                "external": True,
                "physical_interface": "ext0",
                "shared": True,
                "project_id": default_project(admin),
            },  # fmt: skip
        )
        assert r.status_code == 201, r.text
        public = r.json()["id"]
        body = {
            "network": public,
            "name": "public-v4",
            "cidr": PUBLIC,
            "gateway_ip": INTERNET_IP,
            "dhcp": False,
        }
        r = admin.post("/v1/subnets", json=body)
        assert r.status_code == 201, r.text
        alpha, beta = tenant_user(admin, server, "alpha")[0], tenant_user(admin, server, "beta")[0]

    with alpha, beta:
        a_net, a_subnet = _network(alpha, "a-net")
        r = alpha.post("/v1/routers", json={"name": "edge", "external_network": public})
        assert r.status_code == 201, r.text
        router = r.json()["id"]
        r = alpha.post(f"/v1/routers/{router}/interfaces", json={"subnet": a_subnet})
        assert r.status_code == 200, r.text
        b_net, _ = _network(beta, "b-net")  # the same addresses: only the overlay keeps them apart
        r = alpha.post(
            "/v1/security-groups",
            json={
                "name": "app",
                "rules": [
                    {"direction": "ingress", "protocol": "icmp", "remote_cidr": CIDR},
                    {
                        "direction": "ingress",
                        "protocol": "tcp",
                        "port_min": 80,
                        "port_max": 80,
                        "remote_labels": {"tier": "web"},
                    },
                    {"direction": "ingress", "protocol": "tcp", "port_min": 5201, "port_max": 5201},
                    {
                        "direction": "ingress",
                        "protocol": "tcp",
                        "port_min": 80,
                        "port_max": 80,
                        "remote_cidr": PUBLIC,
                    },
                ],
            },
        )
        assert r.status_code == 201, r.text
        r = alpha.post(
            "/v1/qos-policies",
            json={"name": "ten-mbit", "ingress_kbps": LIMIT_KBPS, "egress_kbps": LIMIT_KBPS},
        )
        assert r.status_code == 201, r.text

        srv = _vm(
            alpha, "srv", "h2", "a-net", SRV,
            guest_script(f"probe {WEB} 200", before=HTTPD + "\niperf3 -s -D", functions=PROBES),
            groups=["app"], labels={"tier": "db"},
        )  # fmt: skip
        web = _vm(
            alpha, "web", "h1", "a-net", WEB,
            guest_script(f"probe {SRV} 200\nhprobe {SRV} 60\nprobe {INTERNET_IP} 30\n"
                         f"iperf {SRV} up\niperf {SRV} down -R", functions=PROBES),
            groups=["app"], labels={"tier": "web"}, qos="ten-mbit",
        )  # fmt: skip
        other = _vm(
            alpha, "other", "h1", "a-net", OTHER,
            guest_script(f"probe {SRV} 200\nhprobe {SRV} 10\niperf {SRV} free", functions=PROBES),
            groups=["app"], labels={"tier": "batch"},
        )  # fmt: skip
        intruder = _vm(
            beta, "intruder", "h2", "b-net", INTRUDER,
            guest_script(f"probe {DHCP_SERVER} 100\nprobe {SRV} 15\nprobe {WEB} 15"),
        )  # fmt: skip
        vms = {
            "srv": (alpha, srv),
            "web": (alpha, web),
            "other": (alpha, other),
            "intruder": (beta, intruder),
        }
        for c, v in vms.values():
            task = wait_task(c, v["task_id"], 300)
            assert task["state"] == "succeeded", f"{task.get('error')} {task.get('step')}"
        ids = {k: v["vm"]["id"] for k, (_, v) in vms.items()}
        for k, slot in (("srv", "h2"), ("web", "h1"), ("other", "h1"), ("intruder", "h2")):
            c = beta if k == "intruder" else alpha
            assert c.get(f"/v1/vms/{ids[k]}").json()["host_id"] == hosts[slot]["id"], k

        # every guest got the address IPAM gave its port, from dnsmasq on h1 (over VXLAN for h2's)
        for k, ip in (("srv", SRV), ("web", WEB), ("other", OTHER), ("intruder", INTRUDER)):
            c = beta if k == "intruder" else alpha
            assert _console(c, ids[k], r"(?m)^NETLAB-DHCP ([0-9.]+)") == ip, k
        # tenant A across hosts over VXLAN, both ways (icmp allowed from the subnet)
        assert _console(alpha, ids["web"], rf"(?m)^NETLAB-PING {SRV} (ok|fail)") == "ok"
        assert _console(alpha, ids["srv"], rf"(?m)^NETLAB-PING {WEB} (ok|fail)") == "ok"
        assert _console(alpha, ids["other"], rf"(?m)^NETLAB-PING {SRV} (ok|fail)") == "ok"
        # tcp/80 only from VMs labelled tier=web: real connections from an allowed and a refused source
        assert _console(alpha, ids["web"], rf"(?m)^NETLAB-HTTP {SRV} (ok|fail)") == "ok"
        assert _console(alpha, ids["other"], rf"(?m)^NETLAB-HTTP {SRV} (ok|fail)") == "fail"
        # SNAT: web reaches the internet through the router (which has no route back to 10.40.0.0/24)
        assert _console(alpha, ids["web"], rf"(?m)^NETLAB-PING {INTERNET_IP} (ok|fail)") == "ok"
        assert "10.40.0" not in lab.internet("ip", "route")
        # a floating IP: the internet reaches srv (on h2) through the router on h1, and its group
        [srv_port] = alpha.get("/v1/ports", params={"vm_id": ids["srv"]}).json()["items"]
        r = alpha.post("/v1/floating-ips", json={"network": public, "port": srv_port["id"]})
        assert r.status_code == 201, r.text
        fip = r.json()
        answer = lab.internet("curl", "-s", "-m", "10", "--retry", "10", "--retry-all-errors",
                              f"http://{fip['ip']}/", check=False)  # fmt: skip
        assert answer.strip() == "srv-answers"
        # web's 10 Mbit/s QoS policy, measured by iperf3 in the guests over VXLAN, both directions,
        # against the same path without a policy (from "other", on the same host)
        free = _console(alpha, ids["other"], r"(?m)^NETLAB-IPERF free (\S+)", 600)
        assert free != "fail" and float(free) > 1.5 * LIMIT_KBPS, f"the path is too slow: {free} kbit/s"
        for direction in ("up", "down"):
            rate = _console(alpha, ids["web"], rf"(?m)^NETLAB-IPERF {direction} (\S+)", 600)
            measured = (direction, rate, free)
            print(f"iperf3 in the guests: {direction} {rate} kbit/s with the policy, {free} kbit/s without")
            assert rate != "fail" and abs(float(rate) - GOODPUT_KBPS) <= 0.1 * GOODPUT_KBPS, measured
        # tenant B, same addresses, same hosts: its own DHCP server answers, tenant A does not
        assert _console(beta, ids["intruder"], rf"(?m)^NETLAB-PING {DHCP_SERVER} (ok|fail)") == "ok"
        assert _console(beta, ids["intruder"], rf"(?m)^NETLAB-PING {SRV} (ok|fail)") == "fail"
        assert _console(beta, ids["intruder"], rf"(?m)^NETLAB-PING {WEB} (ok|fail)") == "fail"

        # delete everything through the API: nothing of these networks is left on the hosts
        ports = [p for c in (alpha, beta) for p in c.get("/v1/ports").json()["items"]]
        taps = {str(p["device"]) for p in ports if p["vm_id"]}  # router legs are ports too
        assert len(taps) == 4
        assert alpha.delete(f"/v1/floating-ips/{fip['id']}").status_code == 204
        assert alpha.delete(f"/v1/routers/{router}").status_code == 204
        for c, v in vms.values():
            r = c.delete(f"/v1/vms/{v['vm']['id']}")
            assert r.status_code == 202, r.text
            task = wait_task(c, r.json()["task_id"], 180)
            assert task["state"] == "succeeded", f"{task.get('error')} {task.get('step')}"
        for c, net in ((alpha, a_net), (beta, b_net)):
            for sub in c.get("/v1/subnets", params={"network_id": net}).json()["items"]:
                assert c.delete(f"/v1/subnets/{sub['id']}").status_code == 204
            r = c.delete(f"/v1/networks/{net}")
            assert r.status_code == 204, r.text
        bridges = {names.bridge(a_net), names.bridge(b_net)}
        deadline = time.monotonic() + 60
        while any(_leftovers(h, bridges, taps) for h in (h1, h2)) and time.monotonic() < deadline:
            time.sleep(1)
        assert _leftovers(h1, bridges, taps) == [] and _leftovers(h2, bridges, taps) == []
        assert not [p for h in (h1, h2) for p in guest_pids(h.state_dir) if Path(f"/proc/{p}").exists()]
        dnsmasq = sh("pgrep", "-af", "dnsmasq", check=False)
        assert str(lab.workdir) not in dnsmasq

"""A SINGLE load balancer survives the loss of its host, on real agents: the VIP answers again from
another host after the first is killed (Octavia's amphora failover).

Two remote agents on one machine (``test_ha``'s cluster, short HA timeouts) share one kernel, so a
network's bridge is the same device for both and the member's namespace reaches a leg on either.
Killing a host is killing its agent with everything it started (HAProxy, the watchdog) and
removing its namespaces (the leg with the VIP): what dies with a real machine. The HA monitor
marks the silent host down, fences it when its lease ran out, and the ``loadbalancer.failover``
task brings the load balancer up on the other host. The time from the kill until the VIP answers
again is printed.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from novacron.network.linux import names
from tests.conftest import Server, require
from tests.integration.test_ha import _events, _join, _wait
from tests.integration.test_ha import ha_cluster as ha_cluster
from tests.integration.test_lb_api import MEMBER_IP, ask_vip, plug_member, sh, tenant_network, wait_active
from tests.integration.test_lb_api import member_ns as member_ns
from tests.integration.test_remote_agent import Agent, host_project


def kill_host(agent: Agent) -> None:
    """The host dies: its processes, and its namespaces with the devices in them."""
    agent.stop()
    sh("pkill", "-9", "-f", f"{agent.state_dir}/", check=False)
    prefix = names.ns_prefix(agent.name)
    for line in sh("ip", "netns", "list").stdout.splitlines():
        ns = line.split()[0] if line.strip() else ""
        if ns.startswith(prefix):
            sh("ip", "netns", "del", ns, check=False)


def serving_load_balancer(c: httpx.Client, ns: str) -> tuple[dict[str, Any], subprocess.Popen[bytes]]:
    """A SINGLE load balancer with an HTTP listener in front of a member in namespace ``ns``."""
    project = host_project(c)
    network_id, sub, port = tenant_network(c, project)
    r = c.post(
        "/v1/loadbalancers", json={"name": "web", "vip_subnet_id": sub.json()["id"], "project_id": project}
    )
    assert r.status_code == 201, r.text
    lb = wait_active(c, r.json()["id"])
    member = plug_member(ns, network_id, port.json()["mac"])
    base = f"/v1/loadbalancers/{lb['id']}"
    pool = c.post(base + "/pools", json={"name": "web", "protocol": "HTTP"})
    assert pool.status_code == 201, pool.text
    wait_active(c, lb["id"])
    body = {"address": MEMBER_IP, "protocol_port": 8080}
    assert c.post(f"{base}/pools/{pool.json()['id']}/members", json=body).status_code == 201
    wait_active(c, lb["id"])
    listener = {"protocol": "HTTP", "protocol_port": 80, "default_pool_id": pool.json()["id"]}
    assert c.post(base + "/listeners", json=listener).status_code == 201
    return wait_active(c, lb["id"]), member


def test_the_vip_answers_again_from_another_host_after_its_host_died(
    ha_cluster: tuple[Server, Agent, Agent, Path], member_ns: str
) -> None:
    require(shutil.which("haproxy") is not None, "haproxy is not installed")
    server, a, b, _shared = ha_cluster
    with server.client() as c:
        hosts = {agent.name: _join(c, agent)["id"] for agent in (a, b)}
        lb, member = serving_load_balancer(c, member_ns)
        try:
            [leg] = c.get(f"/v1/loadbalancers/{lb['id']}").json()["amphorae"]
            first = next(agent for agent in (a, b) if hosts[agent.name] == leg["host_id"])
            other = b if first is a else a
            vip = str(lb["vip_address"])
            assert ask_vip(member_ns, vip) == "200"

            killed = time.monotonic()
            kill_host(first)
            with pytest.raises(AssertionError, match="did not answer"):  # nothing serves it now
                ask_vip(member_ns, vip, timeout_s=1)
            _wait("host fenced", lambda: _events(c, "host.fenced"), 60, poll_s=0.2)
            fenced_after = time.monotonic() - killed
            try:
                assert ask_vip(member_ns, vip, timeout_s=90) == "200"
            except AssertionError as exc:  # say where the failover got stuck
                shown = c.get(f"/v1/loadbalancers/{lb['id']}").json()
                task = c.get(f"/v1/tasks/{shown['task_id']}").json()
                raise AssertionError(f"{exc}\n{shown}\n{task}\n{_events(c, 'loadbalancer.*')}") from exc
            answered_after = time.monotonic() - killed
            print(
                f"LB failover: host fenced {fenced_after:.1f}s after the kill, "
                f"VIP answering from {other.name} {answered_after:.1f}s after the kill"
            )

            done = wait_active(c, str(lb["id"]))
            assert done["operating_status"] == "ONLINE"
            assert [a_["host_id"] for a_ in done["amphorae"]] == [hosts[other.name]]
            assert c.get(f"/v1/ports/{lb['vip_port_id']}").json()["host_id"] == hosts[other.name]
            kinds = [e["type"] for e in _events(c, "loadbalancer.failover.*")]
            assert kinds == ["loadbalancer.failover.started", "loadbalancer.failover.completed"], kinds
        finally:
            member.kill()
            for agent in (a, b):  # what the hosts leave in the shared kernel
                kill_host(agent)
            sh("ip", "link", "del", names.bridge(str(lb["vip_network_id"])), check=False)

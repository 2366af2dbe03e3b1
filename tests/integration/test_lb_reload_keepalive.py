"""A client on a keep-alive connection loses no request while the load balancer reloads.

A change made through the API reloads HAProxy (``HAProxyInstance.apply``) unless it only touches
members' weight, drain or admin state (those go through the runtime API). HAProxy 2.4+ has
the old worker close idle keep-alive connections at once, so a client sending its next request on
one just then gets the connection closed under it (bench/bench_lb_changes.py saw one failed
request per reload). The rendered HTTP frontends carry ``option idle-close-on-response``: the old
worker answers that request and closes with ``Connection: close``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from novacron.lbaas.haproxy import HAProxyInstance
from novacron.lbaas.model import ListenerSpec, LoadBalancerSpec, MemberSpec, PoolSpec
from tests.integration.lblab import LbLab, haproxy_lab

#: requests on one keep-alive connection (a new one only when the server says close) until the
#: stop file exists: prints {"ok": n, "failed": [...], "connections": n}
KEEPALIVE_CLIENT = """
import http.client, json, os, sys, time
host, stop = sys.argv[1], sys.argv[2]
ok, failed, conn, connections = 0, [], None, 0
while not os.path.exists(stop):
    try:
        if conn is None:
            conn = http.client.HTTPConnection(host, 80, timeout=5)
            connections += 1
        conn.request("GET", "/")
        r = conn.getresponse(); r.read()
        if r.status == 200:
            ok += 1
        else:
            failed.append(str(r.status))
        if r.will_close:  # the server said Connection: close (or HTTP/1.0): a new connection
            conn.close(); conn = None
    except Exception as e:
        failed.append(type(e).__name__ + ": " + str(e))
        conn.close(); conn = None
    time.sleep(0.01)
print(json.dumps({"ok": ok, "failed": failed, "connections": connections}))
"""


@pytest.fixture
def lab() -> Iterator[tuple[LbLab, HAProxyInstance]]:
    with haproxy_lab("nclk", members=2) as made:
        yield made


def spec(lab: LbLab, timeout_s: int) -> LoadBalancerSpec:
    """The load balancer with a listener timeout of ``timeout_s``: a change that needs a reload."""
    members = tuple(MemberSpec(m, lab.addresses[m], 80) for m in ("m1", "m2"))
    listener = ListenerSpec(
        "listener-1", "HTTP", 80, default_pool_id="pool-1", timeout_client_data=timeout_s * 1000
    )
    return LoadBalancerSpec(
        id="lb-1", vip_address=lab.vip, listeners=(listener,), pools=(PoolSpec("pool-1", members=members),)
    )


def test_no_request_on_a_keep_alive_connection_fails_across_reloads(
    lab: tuple[LbLab, HAProxyInstance],
) -> None:
    net, instance = lab
    instance.apply(spec(net, 30))
    stop = net.workdir / "stop-keepalive"
    argv = ["ip", "netns", "exec", net.client, sys.executable, "-c", KEEPALIVE_CLIENT, net.vip, str(stop)]
    client = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(0.5)  # the client is under way on its connection
        for n in range(10):
            instance.apply(spec(net, 31 + n))  # each a reload: a new worker, the old one soft-stops
            time.sleep(0.3)
    finally:
        stop.touch()
        out, _ = client.communicate(timeout=60)
    result = json.loads(out)
    assert result["failed"] == [], result
    # the connection really was reused, and handed over by each reload with Connection: close
    assert result["ok"] > 3 * result["connections"], result
    assert result["connections"] >= 10, result

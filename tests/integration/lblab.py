"""A load balancer's network out of namespaces, for the HAProxy data-plane tests.

A "switch" namespace holds a bridge; the client, the load balancer and each member are namespaces
with a veth into it, all on 10.77.0.0/24 (each lab has its own bridge, so labs running at once
never meet). Each member runs a small HTTP server that answers its own name (and, for the L7
tests, the path it was asked). The client runs its requests in one Python process per batch, or
loops in the background counting failures (or timing every request, for the failover tests of
lbhalab.py). Traffic never leaves these namespaces; ``down`` removes them and every process, even
after a failure.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from novacron.lbaas.haproxy import HAProxyInstance
from tests.conftest import require, short_tmpdir
from tests.integration.netsec_topo import have_netns


def sh(cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, shell=True, check=check, capture_output=True, text=True, timeout=60)


MEMBER_SERVER = """
import http.server, sys
name = sys.argv[1].encode()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        body = name + b" " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer.allow_reuse_address = True
http.server.ThreadingHTTPServer(("0.0.0.0", 80), Handler).serve_forever()
"""

#: requests in a batch: prints one JSON list of [status, body or error]
BATCH_CLIENT = """
import http.client, json, sys
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
count, headers = int(sys.argv[4]), json.loads(sys.argv[5])
out = []
for _ in range(count):
    try:
        c = http.client.HTTPConnection(host, port, timeout=5)
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        out.append([r.status, r.read().decode()])
        c.close()
    except Exception as e:
        out.append([0, type(e).__name__ + ": " + str(e)])
print(json.dumps(out))
"""

#: requests in a loop until the stop file exists: prints {"ok": n, "failed": [...]}
LOOP_CLIENT = """
import http.client, json, os, sys, time
host, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ok, failed = 0, []
while not os.path.exists(stop):
    try:
        c = http.client.HTTPConnection(host, port, timeout=5)
        c.request("GET", "/")
        r = c.getresponse(); body = r.read()
        c.close()
        if r.status == 200:
            ok += 1
        else:
            failed.append(f"{r.status} {body[:80]!r}")
    except Exception as e:
        failed.append(type(e).__name__ + ": " + str(e))
    time.sleep(0.005)
print(json.dumps({"ok": ok, "failed": failed}))
"""

#: like LOOP_CLIENT with a short timeout, timing every request: prints {"ok": [[start, end]...],
#: "failed": [[start, end, error]...]} (wall-clock seconds, comparable with the test's time.time())
TIMED_LOOP_CLIENT = """
import http.client, json, os, sys, time
host, port, stop, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
ok, failed = [], []
while not os.path.exists(stop):
    start = time.time()
    try:
        c = http.client.HTTPConnection(host, port, timeout=timeout)
        c.request("GET", "/")
        r = c.getresponse(); r.read()
        c.close()
        if r.status == 200:
            ok.append([start, time.time()])
        else:
            failed.append([start, time.time(), str(r.status)])
    except Exception as e:
        failed.append([start, time.time(), type(e).__name__])
    time.sleep(0.01)
print(json.dumps({"ok": ok, "failed": failed}))
"""


@dataclass
class Looper:
    """A client requesting the VIP in a loop from the client namespace."""

    proc: subprocess.Popen[str]
    stop_file: Path

    def finish(self) -> dict[str, object]:
        self.stop_file.touch()
        out, _ = self.proc.communicate(timeout=60)
        result: dict[str, object] = json.loads(out)
        return result


@dataclass
class LbLab:
    workdir: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    namespaces: list[str] = field(default_factory=list)
    servers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    loopers: list[subprocess.Popen[str]] = field(default_factory=list)
    addresses: dict[str, str] = field(default_factory=dict)

    @property
    def switch(self) -> str:
        return f"nlbs{self.tag}"

    @property
    def client(self) -> str:
        return f"nlbc{self.tag}"

    @property
    def lb(self) -> str:
        return f"nlbl{self.tag}"

    @property
    def vip(self) -> str:
        return "10.77.0.100"

    def _attach(self, ns: str, host: int) -> str:
        """A namespace with a veth into the switch and address 10.77.0.<host>."""
        sh(f"ip netns add {ns}")
        self.namespaces.append(ns)
        dev = f"v{self.tag}{host}"
        sh(f"ip -n {ns} link set lo up")
        sh(f"ip -n {self.switch} link add {dev} type veth peer name eth0 netns {ns}")
        sh(f"ip -n {self.switch} link set {dev} master br0 up")
        address = f"10.77.0.{host}"
        sh(f"ip -n {ns} addr add {address}/24 dev eth0 && ip -n {ns} link set eth0 up")
        return address

    def up(self, members: int, lb: bool = True) -> list[str]:
        """The switch, client, load balancer (unless ``lb`` is false: the test adds its own with
        :meth:`add_host`) and ``members`` member namespaces; the members' names."""
        sh(f"ip netns add {self.switch}")
        self.namespaces.append(self.switch)
        sh(f"ip -n {self.switch} link add br0 type bridge && ip -n {self.switch} link set br0 up")
        self._attach(self.client, 10)
        if lb:
            self._attach(self.lb, 100)
        names = []
        for n in range(1, members + 1):
            member = f"m{n}"
            self.addresses[member] = self._attach(self.member_ns(member), n)
            self.start_member(member)
            names.append(member)
        for member in names:
            self.wait_member(member)
        return names

    def add_host(self, label: str, host: int) -> tuple[str, str]:
        """Another namespace on the bridge (a load balancer host): its name and address 10.77.0.<host>."""
        ns = f"nlb{label}{self.tag}"
        return ns, self._attach(ns, host)

    def member_ns(self, member: str) -> str:
        return f"nlb{member}{self.tag}"

    def start_member(self, member: str) -> None:
        argv = ["ip", "netns", "exec", self.member_ns(member), sys.executable, "-c", MEMBER_SERVER, member]
        self.servers[member] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop_member(self, member: str) -> None:
        proc = self.servers.pop(member)
        proc.kill()
        proc.wait(timeout=10)

    def wait_member(self, member: str, timeout: float = 20) -> None:
        """Until the member's server answers the client directly."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get(self.addresses[member], 80, count=1)[0][0] == 200:
                return
            time.sleep(0.1)
        raise AssertionError(f"member {member} does not answer")

    def get(
        self, host: str, port: int, path: str = "/", count: int = 1, headers: dict[str, str] | None = None
    ) -> list[tuple[int, str]]:
        """``count`` requests from the client namespace: (status, body) each (status 0: failed)."""
        argv = ["ip", "netns", "exec", self.client, sys.executable, "-c", textwrap.dedent(BATCH_CLIENT)]
        argv += [host, str(port), path, str(count), json.dumps(headers or {})]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
        return [(status, body) for status, body in json.loads(proc.stdout)]

    def names(
        self, port: int, count: int, path: str = "/", headers: dict[str, str] | None = None
    ) -> list[str]:
        """The members that answered ``count`` requests to the VIP, in order (``ERR <status>``)."""
        return [
            body.split()[0] if status == 200 else f"ERR {status}"
            for status, body in self.get(self.vip, port, path, count, headers)
        ]

    def loop(self, port: int, timeout: float | None = None) -> Looper:
        """A client looping on the VIP; with ``timeout``, each request is timed (TIMED_LOOP_CLIENT)."""
        stop = self.workdir / f"stop-{uuid.uuid4().hex[:6]}"
        client = LOOP_CLIENT if timeout is None else TIMED_LOOP_CLIENT
        argv = ["ip", "netns", "exec", self.client, sys.executable, "-c", client, self.vip, str(port)]
        argv += [str(stop)] if timeout is None else [str(stop), str(timeout)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.loopers.append(proc)
        return Looper(proc, stop)

    def down(self) -> None:
        procs: list[subprocess.Popen[bytes] | subprocess.Popen[str]] = [*self.servers.values(), *self.loopers]
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)
        self.servers.clear()
        for ns in reversed(self.namespaces):
            sh(f"ip netns del {ns}", check=False)


@contextmanager
def haproxy_lab(prefix: str, members: int) -> Iterator[tuple[LbLab, HAProxyInstance]]:
    """A lab with ``members`` members and the seam's HAProxy (not yet applied) in its load
    balancer's namespace; everything removed afterwards, even after a failure."""
    require(have_netns(), "needs root and network namespaces")
    require(shutil.which("haproxy") is not None, "needs haproxy (scripts/setup.sh installs it)")
    workdir = short_tmpdir(prefix)
    lab = LbLab(workdir)
    instance = HAProxyInstance(workdir / "lb", netns=lab.lb)
    try:
        lab.up(members=members)
        yield lab, instance
    finally:
        instance.stop()
        lab.down()
        shutil.rmtree(workdir, ignore_errors=True)

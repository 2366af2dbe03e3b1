"""Let's Encrypt's test ACME server, pebble (Debian's package), in a load-balancer lab.

pebble and its companion ``pebble-challtestsrv`` (used only as the DNS server pebble asks, with
every name answering the lab's VIP) run in the lab's client namespace, so pebble's HTTP-01
validation really connects to the load balancer's HTTP listener over the lab's bridge, port 80.
pebble's own HTTPS (directory and management) uses a certificate from a CA made in the test; the
ACME client (the test process, in the host's namespace) reaches the directory through a small TCP
forwarder bound to the host's loopback that connects from inside the client namespace, and
verifies pebble's certificate against that CA. The forwarder listens on 127.0.0.1 (directory
``https://localhost:<port>/dir``) or on another loopback address (``address``), which a test opens
with NOVACRON_EGRESS_ALLOW where the directory must pass the egress guard (127.0.0.1 is this host's
own address, which the guard never opens). ``PEBBLE_VA_NOSLEEP`` only removes pebble's random
wait before validating, ``PEBBLE_WFE_NONCEREJECT=0`` its random refusal of 5 % of nonces (the
library retries a refused nonce once; two in a row would fail a test at random), and
``PEBBLE_AUTHZREUSE=0`` makes every order (a renewal too) validate again. Validation is never
switched off.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization

from tests.conftest import free_port
from tests.tlsca import TestCA, key_pem

ACME_PORT = 14000
MANAGEMENT_PORT = 15000
DNS = "127.0.0.1:8053"

#: accepts on the host's loopback address argv[5], then joins namespace argv[2] (setns) and
#: connects each connection to argv[3]:argv[4] from there
FORWARDER = """
import ctypes, os, socket, sys, threading
port, ns, host, target = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((sys.argv[5], port))
listener.listen(64)
libc = ctypes.CDLL(None, use_errno=True)
if libc.setns(os.open(f"/var/run/netns/{ns}", os.O_RDONLY), 0x40000000) != 0:
    raise OSError(ctypes.get_errno(), "setns")
print("ready", flush=True)
def pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
while True:
    conn, _ = listener.accept()
    try:
        upstream = socket.create_connection((host, target), timeout=10)
    except OSError:
        conn.close()
        continue
    upstream.settimeout(None)
    threading.Thread(target=pipe, args=(conn, upstream), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, conn), daemon=True).start()
"""


def have_pebble() -> bool:
    return shutil.which("pebble") is not None and shutil.which("pebble-challtestsrv") is not None


class PebbleSite(Protocol):
    """Where pebble runs: a client namespace that reaches the load balancer's VIP on port 80, and
    a directory for its files (a load-balancer lab, or a test's namespace on a tenant network)."""

    @property
    def workdir(self) -> Path: ...

    @property
    def client(self) -> str: ...

    @property
    def vip(self) -> str: ...


@dataclass
class Pebble:
    lab: PebbleSite
    procs: list[subprocess.Popen[bytes] | subprocess.Popen[str]] = field(default_factory=list)
    port: int = 0
    #: the host loopback address the directory is reached at
    address: str = "127.0.0.1"

    @property
    def dir(self) -> Path:
        return self.lab.workdir / "pebble"

    @property
    def tls_ca(self) -> Path:
        """The CA pebble's own HTTPS certificate comes from (not its issuing root)."""
        return self.dir / "tls-ca.pem"

    @property
    def directory_url(self) -> str:
        host = "localhost" if self.address == "127.0.0.1" else self.address
        return f"https://{host}:{self.port}/dir"

    def _in_client(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start ``argv`` in the client namespace, its output in ``<program>.log``."""
        variables = [f"{k}={v}" for k, v in (env or {}).items()]
        full = ["ip", "netns", "exec", self.lab.client, "env", *variables, *argv]
        with open(self.dir / f"{argv[0]}.log", "wb") as log:
            self.procs.append(subprocess.Popen(full, stdout=log, stderr=log))

    def start(self) -> None:
        self.dir.mkdir(parents=True)
        ca = TestCA.create("pebble TLS test CA")
        self.tls_ca.write_text(ca.pem)
        certificate, key = ca.leaf(["localhost", self.address])
        (self.dir / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        (self.dir / "key.pem").write_text(key_pem(key))
        config = {
            "pebble": {
                "listenAddress": f"0.0.0.0:{ACME_PORT}",
                "managementListenAddress": f"0.0.0.0:{MANAGEMENT_PORT}",
                "certificate": str(self.dir / "cert.pem"),
                "privateKey": str(self.dir / "key.pem"),
                "httpPort": 80,
                "tlsPort": 443,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        (self.dir / "pebble.json").write_text(json.dumps(config))
        self._in_client(
            ["pebble-challtestsrv", "-http01", "", "-https01", "", "-tlsalpn01", "", "-dns01", DNS]
            + ["-management", "127.0.0.1:8055", "-defaultIPv4", self.lab.vip, "-defaultIPv6", ""]
        )
        env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
        self._in_client(["pebble", "-config", str(self.dir / "pebble.json"), "-dnsserver", DNS], env)
        self.port = free_port()
        forwarder = [sys.executable, "-c", FORWARDER, str(self.port), self.lab.client, "127.0.0.1"]
        proc = subprocess.Popen([*forwarder, str(ACME_PORT), self.address], stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        self._wait_directory()

    def _wait_directory(self, timeout: float = 30) -> None:
        context = ssl.create_default_context(cafile=str(self.tls_ca))
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.directory_url, context=context, timeout=5) as answer:
                    if "newOrder" in json.loads(answer.read()):
                        return
            except OSError:
                if time.monotonic() > deadline:
                    logs = {p.name: p.read_text()[-500:] for p in self.dir.glob("*.log")}
                    raise AssertionError(f"pebble does not answer: {logs}") from None
            time.sleep(0.2)

    def issuing_root(self) -> str:
        """pebble's issuing root, from its management endpoint (it makes a new one each start)."""
        curl = ["curl", "-sf", "--cacert", str(self.tls_ca), f"https://localhost:{MANAGEMENT_PORT}/roots/0"]
        argv = ["ip", "netns", "exec", self.lab.client, *curl]
        return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout

    def log(self) -> str:
        return (self.dir / "pebble.log").read_text()

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=10)
        self.procs.clear()

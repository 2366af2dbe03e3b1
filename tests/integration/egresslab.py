"""Servers for egress (SSRF) tests: a loopback-only "internal service", and an "outside" origin in
its own network namespace behind a veth, which a test opens with NOVACRON_EGRESS_ALLOW.

The origin serves files, ``/redirect?to=URL`` (302), ``/host`` (echoes the Host header), records
every POST under ``posts/`` of its directory (a webhook receiver, answering 204, or the status
written in the directory's ``status`` file), and on
``port + 1`` a TCP listener that accepts and closes without a byte (an open port that does not
serve HTTP). ``python -m tests.integration.egresslab serve IP PORT DIR`` runs it inside the namespace.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[2]


class Handler(http.server.SimpleHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        parts = urlsplit(self.path)
        if parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", parse_qs(parts.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if parts.path == "/host":
            body = str(self.headers.get("Host")).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def do_POST(self) -> None:
        """Record the request (arrival time, headers, body) as ``posts/<n>.json`` under the served
        directory, where a test on the host reads it (a webhook receiver)."""
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        record = {"time": time.time(), "path": self.path, "headers": dict(self.headers.items()),
                  "body": body.decode(errors="replace")}  # fmt: skip
        posts = Path(self.directory) / "posts"
        posts.mkdir(exist_ok=True)
        tmp = posts / f".{time.monotonic_ns()}.tmp"
        tmp.write_text(json.dumps(record))
        tmp.rename(posts / f"{time.monotonic_ns()}.json")
        # a test makes the receiver fail by writing the status it should answer into ``status``
        status = Path(self.directory) / "status"
        code = int(status.read_text()) if status.exists() else 204
        body = b"" if code == 204 else f"answered {code} as told".encode()
        self.send_response(code)
        if body:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def http_server(address: str, port: int, directory: Path) -> http.server.ThreadingHTTPServer:
    """A threaded file server (plus /redirect and /host); its requests are in ``Handler.hits``."""
    handler = functools.partial(Handler, directory=str(directory))
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    class Server(http.server.ThreadingHTTPServer):
        address_family = family

    httpd = Server((address, port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def _mute_listener(address: str, port: int) -> None:
    sock = socket.create_server((address, port))

    def serve() -> None:
        while True:
            conn, _ = sock.accept()
            conn.close()

    threading.Thread(target=serve, daemon=True).start()


def sh(*argv: str) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {res.stderr.strip()}")
    return res.stdout


@dataclass
class Origin:
    """An HTTP origin at ``ip:port`` in namespace ``ns``; ``host_ip`` is this host's end of the veth."""

    ns: str
    host_ip: str
    ip: str
    port: int
    network: str
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def url(self, path: str = "/") -> str:
        return f"http://{self.ip}:{self.port}{path}"


@contextmanager
def origin(directory: Path) -> Iterator[Origin]:
    """An origin serving ``directory`` from a fresh namespace on a free 10.253.x.y/30."""
    used = sh("ip", "-o", "addr")
    while True:
        third, fourth = random.randrange(1, 255), random.randrange(0, 64) * 4
        if f"10.253.{third}.{fourth + 1}/" not in used:
            break
    tag = f"{os.getpid() % 10000}{random.randrange(100)}"
    ns, veth, peer = f"egr{tag}", f"egr{tag}h", f"egr{tag}n"
    host_ip, ip = f"10.253.{third}.{fourth + 1}", f"10.253.{third}.{fourth + 2}"
    sh("ip", "netns", "add", ns)
    proc = None
    try:
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", ns)
        sh("ip", "addr", "add", f"{host_ip}/30", "dev", veth)
        sh("ip", "link", "set", veth, "up")
        for cmd in (
            ("addr", "add", f"{ip}/30", "dev", peer),
            ("link", "set", peer, "up"),
            ("link", "set", "lo", "up"),
        ):
            sh("ip", "-n", ns, *cmd)
        port = random.randrange(20000, 30000)
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-m", "tests.integration.egresslab",
             "serve", ip, str(port), str(directory)],
            cwd=ROOT,
        )  # fmt: skip
        _wait_port(ns, ip, port)
        yield Origin(ns, host_ip, ip, port, f"10.253.{third}.{fourth}/30", proc)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _wait_port(ns: str, ip: str, port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((ip, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the origin in {ns} did not listen on {ip}:{port}")


if __name__ == "__main__" and sys.argv[1] == "serve":
    _ip, _port, _dir = sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    _mute_listener(_ip, _port + 1)
    http_server(_ip, _port, _dir)
    threading.Event().wait()

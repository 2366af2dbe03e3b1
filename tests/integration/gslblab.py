"""A real pdns_server for the global load balancing tests, with ``dig`` to ask it and plain TCP or
HTTP listeners on loopback addresses (127.0.0.0/8 is all this host's) as the sites' VIPs."""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from novacron.gslb.powerdns import PDNS_SERVER, PowerDNSServer
from tests.conftest import free_port, require, short_tmpdir

#: PowerDNS checks sites this often in the tests (seconds)
HEALTH_INTERVAL_S = 1


def require_pdns() -> None:
    require(Path(PDNS_SERVER).exists(), "pdns_server (Debian pdns-server) is not installed")
    require(shutil.which("dig") is not None, "dig (Debian dnsutils) is not installed")


@contextmanager
def pdns() -> Iterator[PowerDNSServer]:
    """Our own pdns_server on a free loopback port, stopped and removed afterwards."""
    require_pdns()
    root = short_tmpdir("gslb")
    server = PowerDNSServer(root / "gslb", "127.0.0.1", free_port(), HEALTH_INTERVAL_S)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def dig(
    server: PowerDNSServer, name: str, rtype: str = "A", subnet: str | None = None, count: int = 1
) -> list[str]:
    """The addresses ``count`` queries for ``name`` got (one dig process; ``subnet``: EDNS client subnet)."""
    options = ["+short", "+tries=1", "+time=2"] + ([f"+subnet={subnet}"] if subnet else [])
    batch = "\n".join(f"{name} {rtype}" for _ in range(count))
    proc = subprocess.run(
        ["dig", f"@{server.address}", "-p", str(server.port), *options, "-f", "-"],
        input=batch,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return proc.stdout.split()


def wait_for(check: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until ``check()`` held (polling), or AssertionError after ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s")


class TcpSite:
    """A listening TCP socket: a site's VIP that is up while it listens."""

    def __init__(self, address: str, port: int) -> None:
        self.address, self.port = address, port
        self.sock: socket.socket | None = None

    def up(self) -> TcpSite:
        self.sock = socket.socket(socket.AF_INET6 if ":" in self.address else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.address, self.port))
        self.sock.listen(64)
        return self

    def down(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class HttpSite:
    """An HTTP server answering ``/health`` with ``status``."""

    def __init__(self, address: str, port: int) -> None:
        self.address, self.status = address, 200
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(site.status if self.path == "/health" else 404)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((address, port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

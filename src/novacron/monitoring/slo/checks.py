"""Running one synthetic check (ICMP echo, TCP connect, HTTP(S) request) inside a network namespace.

A probe targets an address in a tenant network, and tenant networks may overlap each other and the
host's own addresses: a check sent from the host's namespace could reach someone else. So every
check runs in a fresh thread that first enters the namespace of the tenant network's vantage point
(``setns(2)`` on ``/run/netns/<name>`` changes the calling thread only), and only then opens its
socket; the thread ends with the check, so nothing else ever runs in that namespace.
"""

from __future__ import annotations

import ctypes
import http.client
import os
import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
#: bytes of an HTTP answer read to look for the expected substring
_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Check:
    """What to check: ``kind`` at ``address`` (``port`` for tcp/http/https) within ``timeout_s``."""

    kind: str
    address: str
    port: int | None = None
    path: str = "/"
    expected_status: int = 200
    body_contains: str | None = None
    timeout_s: float = 2.0
    #: https: verify the certificate's chain and name (else reachability and the answer only)
    tls_verify: bool = True
    #: https: the name the certificate must be for (SNI and Host); default: the address
    tls_server_name: str | None = None
    #: https: CA certificates (PEM) trusted instead of the system's
    tls_ca_pem: str | None = None


@dataclass(frozen=True)
class Outcome:
    """A check's result: whether it passed, how long it took, and why it failed."""

    success: bool
    duration_s: float
    error: str | None = None
    #: False when the check could not run at all (no vantage point): no sample of the tenant's service
    measured: bool = True


class CheckFailed(Exception):
    """The target answered, but not as expected (the message says how)."""


def enter_netns(name: str) -> None:
    """Move the calling thread into the named network namespace (``ip netns`` names)."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def run_many(items: Sequence[tuple[str, Check]]) -> list[Outcome]:
    """Run each ``(netns, check)`` at once, each in its own thread inside its namespace."""
    results: list[Outcome | None] = [None] * len(items)

    def body(i: int, netns: str, check: Check) -> None:
        if not os.path.exists(f"/run/netns/{netns}"):
            results[i] = Outcome(False, 0.0, f"no namespace {netns} on this host", measured=False)
            return
        try:
            enter_netns(netns)
        except OSError as exc:
            results[i] = Outcome(False, 0.0, f"cannot enter {netns}: {exc.strerror}", measured=False)
            return
        results[i] = run_here(check)

    threads = [
        threading.Thread(target=body, args=(i, netns, check), name=f"probe:{netns}", daemon=True)
        for i, (netns, check) in enumerate(items)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + max((c.timeout_s for _, c in items), default=0.0) + 5.0
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.0))
    return [
        r if r is not None else Outcome(False, c.timeout_s, "the check did not finish")
        for r, (_, c) in zip(results, items, strict=True)
    ]


def run_here(check: Check) -> Outcome:
    """Run ``check`` in the calling thread's namespace, timing it."""
    started = time.monotonic()
    try:
        if check.kind == "icmp":
            _icmp_echo(check.address, check.timeout_s)
        elif check.kind == "tcp":
            with socket.create_connection(_target(check), timeout=check.timeout_s):
                pass
        else:
            _http(check)
    except (OSError, CheckFailed, http.client.HTTPException) as exc:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError | socket.timeout):
            reason = f"no answer within {check.timeout_s:g}s"
        elif isinstance(exc, ssl.SSLCertVerificationError):
            reason = f"{exc.verify_message or reason}: {_VERIFY_HINT}"
        return Outcome(False, time.monotonic() - started, reason[:500])
    return Outcome(True, time.monotonic() - started)


def _target(check: Check) -> tuple[str, int]:
    if check.port is None:
        raise CheckFailed(f"a {check.kind} check needs a port")
    return check.address, check.port


_VERIFY_HINT = (
    "give the probe tls_ca_pem (the CA that signed the certificate) and tls_server_name (the name "
    "it is for), or tls_verify false to check reachability and the answer only"
)


class _HTTPSAt(http.client.HTTPSConnection):
    """HTTPS to an address, the certificate verified for ``server_name`` (also SNI and Host):
    tenant endpoints are probed by address, their certificates name a host."""

    def __init__(
        self, address: str, port: int, server_name: str, tls: ssl.SSLContext, timeout: float
    ) -> None:
        super().__init__(server_name, port, timeout=timeout, context=tls)
        self._address = address
        self._tls = tls

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def tls_context(check: Check) -> ssl.SSLContext:
    """The TLS context of an https check: the system's CAs or the probe's own, or no
    verification at all when the probe says so."""
    context = ssl.create_default_context(cadata=check.tls_ca_pem or None)
    if not check.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _http(check: Check) -> None:
    host, port = _target(check)
    conn: http.client.HTTPConnection
    if check.kind == "https":
        name = check.tls_server_name or host
        conn = _HTTPSAt(host, port, name, tls_context(check), check.timeout_s)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=check.timeout_s)
    try:
        conn.request("GET", check.path, headers={"User-Agent": "novacron-probe"})
        answer = conn.getresponse()
        body = answer.read(_BODY_LIMIT)
    finally:
        conn.close()
    if answer.status != check.expected_status:
        raise CheckFailed(f"HTTP {answer.status}, expected {check.expected_status}")
    if check.body_contains and check.body_contains.encode() not in body:
        raise CheckFailed(f"the body does not contain {check.body_contains!r}")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def _icmp_echo(address: str, timeout_s: float) -> None:
    """One echo request and its reply (a raw socket: the platform runs as root on its hosts)."""
    v6 = ":" in address
    family, proto = (socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP)
    request, reply = (128, 129) if v6 else (8, 0)
    ident = random.randrange(1, 0xFFFF)  # noqa: S311 - an echo id, not a secret
    payload = b"novacron-probe"
    header = struct.pack("!BBHHH", request, 0, 0, ident, 1)
    if not v6:  # the kernel fills in the ICMPv6 checksum itself
        header = struct.pack("!BBHHH", request, 0, _checksum(header + payload), ident, 1)
    deadline = time.monotonic() + timeout_s
    with socket.socket(family, socket.SOCK_RAW, proto) as sock:
        sock.sendto(header + payload, (address, 0))
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            data, source = sock.recvfrom(2048)
            if not v6:
                data = data[(data[0] & 0x0F) * 4 :]  # past the IPv4 header the raw socket keeps
            if len(data) >= 8 and source[0] == address:
                kind, _, _, got_ident, _ = struct.unpack("!BBHHH", data[:8])
                if kind == reply and got_ident == ident:
                    return
    raise TimeoutError

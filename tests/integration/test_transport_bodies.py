"""The HTTP edge: an anonymous body is refused before it is read, bodies are limited per route, and
every kind of response carries ``nosniff``; /docs and /redoc come from local pinned assets.

Real parts: a ``novacron-server`` process (simulated compute: nothing here needs a guest), raw
sockets for the anonymous flood, the server's own RSS from /proc.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server, destroy_server, make_server, require
from tests.e2e.conftest import VENDOR

MiB = 1 << 20


@pytest.fixture(scope="module")
def srv() -> Iterator[Server]:
    server = make_server(NOVACRON_COMPUTE_DRIVER="simulated", NOVACRON_NETWORK_BACKEND="none")
    server.start()
    try:
        yield server
    finally:
        destroy_server(server)


def _rss_kib(server: Server) -> int:
    assert server.proc is not None
    status = open(f"/proc/{server.proc.pid}/status").read()  # noqa: SIM115 - one read
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


def _post_head(port: int, size: int, path: str = "/v1/vms", auth: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"{auth}Content-Length: {size}\r\n\r\n"
    ).encode()


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_anonymous_body_is_refused_before_a_byte_of_it_is_read(srv: Server) -> None:
    # only the headers of a 20 MB body: the 401 comes back before the body is even sent
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(_post_head(srv.port, 20 * MiB))
        answer = s.recv(65536)
    assert _status(answer) == 401 and b"application/problem+json" in answer
    # a forged token is no better: it is checked before the body too
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(_post_head(srv.port, 20 * MiB, auth="Authorization: Bearer a.b.c\r\n"))
        assert _status(s.recv(65536)) == 401


def _flood(port: int, size: int, statuses: list[int], sent: list[int]) -> None:
    """One anonymous client pushing ``size`` bytes of invalid JSON as fast as the server takes them."""
    chunk = b"{" * MiB
    total = 0
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(_post_head(port, size))
        try:
            while total < size:
                total += s.send(chunk[: size - total])
        except OSError:
            pass  # the server answered and closed: the rest is never read
        try:
            statuses.append(_status(s.recv(65536)))
        except (OSError, IndexError, ValueError):
            statuses.append(0)
    sent.append(total)


def test_parallel_anonymous_50mb_bodies_do_not_grow_the_server(srv: Server) -> None:
    before = _rss_kib(srv)
    statuses: list[int] = []
    sent: list[int] = []
    floods = [threading.Thread(target=_flood, args=(srv.port, 50 * MiB, statuses, sent)) for _ in range(4)]
    for t in floods:
        t.start()
    for t in floods:
        t.join(60)
    grown_mib = (_rss_kib(srv) - before) / 1024
    # before the fix: 75-160 MB for four such bodies (each buffered and parsed); now a few socket buffers
    assert grown_mib < 16, f"server RSS grew by {grown_mib:.1f} MiB"
    assert set(statuses) <= {401, 0} and 401 in statuses, statuses
    assert httpx.get(f"{srv.url}/healthz").status_code == 200


def test_authenticated_bodies_are_limited_per_route(srv: Server) -> None:
    with srv.client() as admin:
        big = b'{"name": "' + b"x" * (2 * MiB) + b'"}'
        r = admin.post("/v1/vms", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["errors"][0]["field"] == "body" and "1048576" in r.json()["detail"]
        # no Content-Length (chunked): counted as it arrives, the same answer
        r = admin.post(
            "/v1/vms", content=iter([big[:MiB], big[MiB:]]), headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 413 and r.json()["errors"][0]["field"] == "body"
        # under the limit, a bad document is the usual 422, naming the field
        r = admin.post("/v1/vms", json={"name": "x" * 1000})
        assert r.status_code == 422
        # uploads stream past the JSON limit under their own
        project = admin.get("/v1/projects", params={"name": "default"}).json()["items"][0]["id"]
        image = admin.post("/v1/images", json={"name": "big-kernel", "project_id": project}).json()
        blob = os.urandom(3 * MiB)
        r = admin.put(
            f"/v1/images/{image['id']}/kernel",
            content=blob,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 200, r.text
        assert admin.get(f"/v1/images/{image['id']}/kernel").content == blob
    # the anonymous routes take small documents only
    r = httpx.post(f"{srv.url}/v1/tokens", json={"username": "admin", "password": "x" * (100 * 1024)})
    assert r.status_code == 413 and r.json()["errors"][0]["field"] == "body"


def _stream_after_limit(srv: Server, path: bytes, auth: bytes = b"", method: bytes = b"POST") -> int:
    """Bytes a chunked body could still send (up to 256 MiB) after its route's limit was passed."""
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    head = b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s" % (method, path, auth)
    sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"a" * 64 * 1024)
    sent = 0
    try:
        while sent < 256 * MiB:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    finally:
        sock.close()
    return sent


def test_a_chunked_body_over_its_limit_ends_the_connection(srv: Server) -> None:
    """The 413 of a chunked body counted past its limit kept the connection open, and the server
    read and dropped whatever followed, without end (256 MiB anonymous in a fraction of a
    second). It closes the connection now, as the refusals before the body do."""
    assert _stream_after_limit(srv, b"/v1/tokens") < 32 * MiB
    auth = b"Authorization: Bearer %s\r\n" % srv.token().encode()
    assert _stream_after_limit(srv, b"/v1/vms", auth) < 32 * MiB


def test_an_upload_refused_before_its_body_is_read_ends_the_connection(srv: Server) -> None:
    """Streamed uploads have no limit at the edge (they count while they write to disk), so their
    early answers (an unknown image, a caller that is not a node, the size limit) left the
    connection open and the server read and dropped the rest of the upload."""
    auth = b"Authorization: Bearer %s\r\n" % srv.token().encode()
    assert _stream_after_limit(srv, b"/v1/images/no-such-image/file", auth, b"PUT") < 32 * MiB
    assert _stream_after_limit(srv, b"/v1/agent/snapshots/img-x", auth, b"PUT") < 32 * MiB
    # a body read whole keeps the connection (no needless reconnects)
    with srv.client() as admin:
        r = admin.post("/v1/vms", json={"name": "x" * 1000})
        assert r.status_code == 422 and "close" not in r.headers.get("connection", "")


def test_every_kind_of_response_says_nosniff(srv: Server) -> None:
    require(
        (VENDOR / "swagger-ui-dist").exists(), f"API docs assets missing in {VENDOR}: run scripts/setup.sh"
    )
    with srv.client() as admin:
        answers = {
            "api json": admin.get("/v1/vms"),
            "problem 404": admin.get("/v1/vms/nope"),
            "problem 401": httpx.get(f"{srv.url}/v1/vms"),
            "problem 405": admin.put("/v1/vms"),
            "no route": httpx.get(f"{srv.url}/nothing-here"),
            "shell": httpx.get(f"{srv.url}/"),
            "static": httpx.get(f"{srv.url}/static/js/api.js"),
            "vendor": httpx.get(f"{srv.url}/vendor/xterm.mjs"),
            "openapi": httpx.get(f"{srv.url}/openapi.json"),
            "docs": httpx.get(f"{srv.url}/docs"),
            "redoc": httpx.get(f"{srv.url}/redoc"),
            "healthz": httpx.get(f"{srv.url}/healthz"),
        }
    for kind, r in answers.items():
        assert r.headers.get("x-content-type-options") == "nosniff", (kind, r.status_code, dict(r.headers))
        # plain HTTP on loopback: no HSTS, which only means something over TLS
        assert "strict-transport-security" not in r.headers, kind


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_use_local_assets_under_a_csp(srv: Server, page: str) -> None:
    require((VENDOR / "redoc").exists(), f"API docs assets missing in {VENDOR}: run scripts/setup.sh")
    r = httpx.get(f"{srv.url}{page}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]+)", csp).group(1)  # type: ignore[union-attr]
    assert script_src.strip() == "'self'" and "frame-ancestors 'none'" in csp
    # no other origin anywhere in the page (no CDN), and no inline script the CSP would block
    assert not re.search(r"(?:src|href)=[\"'](?:https?:)?//", r.text), r.text
    assert "<script>" not in r.text.replace(" ", "")
    refs = re.findall(r"(?:src|href)=[\"'](/[^\"']+)", r.text)
    assert refs, r.text
    for ref in refs:
        asset = httpx.get(f"{srv.url}{ref}")
        assert asset.status_code == 200 and len(asset.content) > 0, ref

"""An image import's URL is sealed at rest: a failed download must not write it back in clear.

The URL may carry ``user:password@`` or a signed query. It was sealed in the task's parameters,
but a failed download put it whole into the task's error (stored in clear, shown by the API) and
the server log. The origin here is 127.0.0.2, opened with NOVACRON_EGRESS_ALLOW (127.0.0.1, an
address of the platform, stays refused): one closed port, one server answering 404.
"""

from __future__ import annotations

import http.server
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, default_project, destroy_server, make_server, wait_task


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = make_server(
        NOVACRON_EGRESS_ALLOW="127.0.0.2/32",
        NOVACRON_COMPUTE_DRIVER="simulated",
        NOVACRON_NETWORK_BACKEND="none",
    )
    srv.start(timeout_s=120)
    try:
        yield srv
    finally:
        destroy_server(srv)


@pytest.fixture(scope="module")
def not_found() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.2", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()  # every GET: 501/404-like
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return int(s.getsockname()[1])


def _files(state: Path) -> bytes:
    base = state / "novacron.db"
    logs = [base, Path(f"{base}-wal"), state / "server.log"]
    return b"".join(p.read_bytes() for p in logs if p.exists())


@pytest.mark.parametrize("origin", ["closed", "http-error"])
def test_a_failed_import_keeps_the_urls_credentials_out_of_its_error_and_the_log(
    server: Server, not_found: int, origin: str
) -> None:
    password = "url-pw-" + uuid.uuid4().hex
    port = _closed_port() if origin == "closed" else not_found
    url = f"http://importer:{password}@127.0.0.2:{port}/disk.qcow2?sig={password}"
    with server.client() as c:
        r = c.post(
            "/v1/images", json={"name": f"u-{origin}", "source_url": url, "project_id": default_project(c)}
        )
        assert r.status_code == 201, r.text
        done = wait_task(c, r.json()["task_id"], timeout_s=120)
        assert done["state"] == "failed"
        assert password not in str(done) and "importer" not in str(done)
        assert f"http://127.0.0.2:{port}/disk.qcow2?***" in done["error"]  # still says which URL
        assert password not in c.get(f"/v1/tasks/{done['id']}").text
    assert password.encode() not in _files(server.state_dir)

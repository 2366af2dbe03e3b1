"""URLs that carry credentials (an image import's, a DR webhook's) are not kept in clear.

The URL may carry ``user:password@``, a signed query or a token in its path. An image import's was
sealed in the task's parameters, but a failed download put it whole into the task's error (stored
in clear, shown by the API) and the server log; a runbook's webhook URLs were stored in clear in
the runbook, its runs' plans, their hook results and the stored idempotent answer. The origin here
is 127.0.0.2, opened with NOVACRON_EGRESS_ALLOW (127.0.0.1, an address of the platform, stays
refused).
"""

from __future__ import annotations

import asyncio
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


def test_a_runbooks_webhook_url_is_sealed_at_rest_and_shown_to_its_readers(server: Server) -> None:
    token = "hook-tok-" + uuid.uuid4().hex
    url = f"http://127.0.0.2:9/services/{token}?auth={token}"
    body = {
        "name": "hooked",
        "steps": [{"vm": "db", "hooks": [{"when": "after", "url": url}]}],
    }
    with server.client() as c:
        body["project_id"] = default_project(c)
        r = c.post("/v1/dr/runbooks", json=body, headers={"Idempotency-Key": "rb-1"})
        assert r.status_code == 201, r.text
        assert r.json()["steps"][0]["hooks"][0]["url"] == url  # its readers see where it goes
        got = c.get(f"/v1/dr/runbooks/{r.json()['id']}")
        assert got.json()["steps"][0]["hooks"][0]["url"] == url
        again = c.post("/v1/dr/runbooks", json=body, headers={"Idempotency-Key": "rb-1"})
        assert again.headers.get("idempotent-replayed") == "true"
        assert token not in again.text  # the stored answer holds no clear copy
    assert token.encode() not in _files(server.state_dir)


class _Hook(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        self.seen.append(self.path)
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def test_a_sealed_webhook_url_is_opened_to_call_it_and_kept_out_of_the_result(tmp_path: Path) -> None:
    from novacron.backup import drsteps
    from novacron.identity.encryption import EncryptionService
    from novacron.identity.kek import KeyService
    from novacron.netguard import EgressPolicy, parse_networks

    httpd = http.server.ThreadingHTTPServer(("127.0.0.2", 0), _Hook)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        token = "hook-tok-" + uuid.uuid4().hex
        url = f"http://127.0.0.2:{httpd.server_address[1]}/services/x?auth={token}"
        enc, aad = EncryptionService(KeyService(tmp_path / "kek")), drsteps.hook_url_aad("drb-1")
        (step,) = drsteps.map_hook_urls(
            [{"vm": "db", "hooks": [{"url": url}]}], lambda u: enc.seal_text(u, aad)
        )
        assert token not in str(step)
        policy = EgressPolicy(allow=parse_networks("127.0.0.2/32"))
        (result,) = asyncio.run(
            drsteps.run_hooks(step["hooks"], "before", {}, policy, lambda u: enc.open_text(u, aad))
        )
    finally:
        httpd.shutdown()
    assert result["ok"] and _Hook.seen == [f"/services/x?auth={token}"]
    assert token not in str(result) and result["url"].endswith("/services/x?***")

"""Runbook hooks for real: a command and a webhook (a local HTTP server), their output and failures."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from novacron import netguard
from novacron.backup.drsteps import WEBHOOK_FAILED, failed_hook, run_hooks, tcp_check
from novacron.tasks.runner import StepFailed

ENV = {"NOVACRON_RUNBOOK": "site", "NOVACRON_STEP": "2", "NOVACRON_VM": "db"}
#: these tests' webhook listens on loopback: a policy that opens it (the platform's never does)
LOOPBACK_OK = netguard.EgressPolicy(allow=netguard.parse_networks("127.0.0.0/8"), host_interfaces=False)


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, str]]]]:
    received: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            status = 500 if self.path == "/fail" else 200
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"dns switched" if status == 200 else b"boom")

        def log_message(self, *args: object) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", received
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_before_hooks_run_in_order_with_output_and_context(webhook: tuple[str, list[dict[str, str]]]) -> None:
    url, received = webhook
    hooks: list[dict[str, Any]] = [
        {"when": "before", "command": ["sh", "-c", "echo step $NOVACRON_STEP of $NOVACRON_RUNBOOK"]},
        {"when": "after", "command": ["sh", "-c", "echo never now"]},
        {"when": "before", "url": f"{url}/ok"},
    ]
    results = asyncio.run(run_hooks(hooks, "before", ENV, LOOPBACK_OK))
    assert [r["ok"] for r in results] == [True, True]
    assert results[0]["output"] == "step 2 of site\n" and results[0]["exit_code"] == 0
    assert results[1]["status"] == 200 and results[1]["output"] == "dns switched"
    assert received == [{**ENV, "NOVACRON_HOOK": "before"}]
    assert failed_hook(results) is None


def test_a_failing_hook_fails_the_step_unless_told_to_continue(
    webhook: tuple[str, list[dict[str, str]]],
) -> None:
    url, _ = webhook
    hooks: list[dict[str, Any]] = [
        {"when": "after", "url": f"{url}/fail", "on_failure": "continue"},
        {"when": "after", "command": ["sh", "-c", "echo no quorum >&2; exit 3"]},
        {"when": "after", "command": ["sleep", "5"], "timeout_s": 0.2},
    ]
    results = asyncio.run(run_hooks(hooks, "after", ENV, LOOPBACK_OK))
    assert results[0]["status"] == 500 and not results[0]["ok"]
    assert results[1]["exit_code"] == 3 and results[1]["output"] == "no quorum\n"
    assert results[2]["exit_code"] is None and "timed out" in results[2]["output"]
    bad = failed_hook(results)
    assert bad is not None and bad["command"] == ["sh", "-c", "echo no quorum >&2; exit 3"]


def test_webhooks_and_tcp_checks_pass_the_egress_guard(webhook: tuple[str, list[dict[str, str]]]) -> None:
    """With the platform's policy a loopback webhook is refused before any request, a redirect or a
    rebinding cannot bring it back, and a closed port reads like a silent one."""
    url, received = webhook
    policy = netguard.EgressPolicy()
    port = int(url.rsplit(":", 1)[1])
    for target in (f"{url}/ok", f"http://2130706433:{port}/ok", f"http://localhost:{port}/ok"):
        (result,) = asyncio.run(run_hooks([{"url": target}], "before", ENV, policy))
        assert not result["ok"] and result["status"] is None and "refused" in result["output"]
    assert received == []
    with pytest.raises(StepFailed, match="refused"):
        asyncio.run(tcp_check("127.0.0.1", port, 0, policy))
    # allowed targets that fail: a listening port with no HTTP, and a closed one, say the same
    silent = socket.create_server(("127.0.0.1", 0))
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    outputs = []
    for p in (silent.getsockname()[1], closed_port):
        (result,) = asyncio.run(
            run_hooks([{"url": f"http://127.0.0.1:{p}/", "timeout_s": 1}], "before", ENV, LOOPBACK_OK)
        )
        outputs.append(result["output"])
    silent.close()
    assert outputs[0] == outputs[1] == WEBHOOK_FAILED

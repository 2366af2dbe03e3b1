"""Tokens travel only in the Authorization header; a browser opens a WebSocket or an event stream
with a single-use, short-lived ticket for that one path.

Real parts: a ``novacron-server`` with its embedded agent and a QEMU guest whose serial console
the ticket opens; the same server's SQLite database (to age a ticket past its 30 seconds).
"""

from __future__ import annotations

import asyncio
import sqlite3

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import (
    Guest,
    Server,
    import_guest_image,
    tenant_user,
    wait_console,
    wait_task,
)
from tests.integration.shared_server import server

__all__ = ["server"]  # the module-scoped server its tests share


def test_rest_calls_refuse_a_token_in_the_url_or_a_cookie(server: Server) -> None:
    token = server.token()
    base = f"{server.url}/v1/vms"
    assert httpx.get(base, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # the same valid token where logs, histories and Referer headers keep it: refused
    r = httpx.get(base, params={"access_token": token})
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    assert httpx.get(base, cookies={"novacron_token": token}).status_code == 401
    assert httpx.post(base, params={"access_token": token}, json={"name": "x"}).status_code == 401
    assert httpx.get(f"{server.url}/v1/events/stream", params={"access_token": token}).status_code == 401
    # a ticket is for a handshake only, and only a caller with a token gets one
    assert httpx.post(f"{server.url}/v1/tickets", json={"path": "/v1/events/ws"}).status_code == 401
    with server.client(token) as admin:
        r = admin.post("/v1/tickets", json={"path": "/v1/vms"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.path"
        ticket = admin.post("/v1/tickets", json={"path": "/v1/events/ws"}).json()["ticket"]
    assert httpx.get(base, params={"ticket": ticket}).status_code == 401


def test_a_ticket_opens_the_event_stream_once(server: Server) -> None:
    with server.client() as admin:
        ticket = admin.post("/v1/tickets", json={"path": "/v1/events/stream"}).json()["ticket"]
    url = f"{server.url}/v1/events/stream"
    # an EventSource has no header: the ticket in the URL opens the stream ...
    with httpx.stream("GET", url, params={"ticket": ticket}, timeout=10) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert next(r.iter_lines()).startswith(": following events")
    # ... once
    assert httpx.get(url, params={"ticket": ticket}, timeout=10).status_code == 401


async def _session(url: str) -> str:
    """Type a command into the console opened at ``url`` (no header: the ticket alone)."""
    seen = b""
    async with websockets.connect(url) as ws:
        await ws.send(b"echo answer-$((6*7))\n")
        async with asyncio.timeout(30):
            while b"answer-42" not in seen:
                data = await ws.recv()
                seen += data if isinstance(data, bytes) else data.encode()
    return seen.decode(errors="replace")


async def _refusal(url: str) -> int:
    """The close code a refused console handshake gets (accepted, then closed with 4000 + status)."""
    try:
        async with websockets.connect(url) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 20)
    except InvalidStatus as exc:
        return int(exc.response.status_code)
    assert closed.value.rcvd is not None
    return int(closed.value.rcvd.code)


def test_a_ticket_opens_the_console_once(server: Server, guest: Guest) -> None:
    with server.client() as admin:
        import_guest_image(admin, guest)
        alice, _ = tenant_user(admin, server, "alpha")
    with alice:
        r = alice.post(
            "/v1/vms", json={"name": "tk", "image": "test-guest", "flavor": "tiny", "user_data": "tk"}
        )
        assert r.status_code == 202, r.text
        vm_id = r.json()["vm"]["id"]
        assert wait_task(alice, r.json()["task_id"])["state"] == "succeeded"
        wait_console(alice, vm_id, "user-data: tk")
        path = f"/v1/vms/{vm_id}/console"
        ws_base = server.url.replace("http", "ws", 1) + path

        def ticket(for_path: str = path) -> str:
            r = alice.post("/v1/tickets", json={"path": for_path})
            assert r.status_code == 201 and r.json()["expires_in"] <= 30, r.text
            return str(r.json()["ticket"])

        once = ticket()
        assert "answer-42" in asyncio.run(_session(f"{ws_base}?ticket={once}"))
        # replayed (a copy from a log, a proxy, a history): refused
        assert asyncio.run(_refusal(f"{ws_base}?ticket={once}")) == 4401
        # a ticket opens only the path it was made for
        assert asyncio.run(_refusal(f"{ws_base}?ticket={ticket('/v1/events/ws')}")) == 4401
        # an expired one is refused (aged in the database rather than waiting 30 s)
        old = ticket()
        with sqlite3.connect(server.state_dir / "novacron.db") as db:
            db.execute("UPDATE access_tickets SET expires_at = '2000-01-01 00:00:00.000000'")
        assert asyncio.run(_refusal(f"{ws_base}?ticket={old}")) == 4401
        # the access token itself no longer opens it from the URL
        token = alice.headers["Authorization"].split()[1]
        assert asyncio.run(_refusal(f"{ws_base}?access_token={token}")) == 4401
        # signing out ends the tickets of that token too
        pending = ticket()
        assert alice.delete("/v1/tokens/current").status_code == 204
        assert asyncio.run(_refusal(f"{ws_base}?ticket={pending}")) == 4401


def test_a_node_credential_in_the_url_does_not_open_a_relay(server: Server) -> None:
    """Sibling: the agents' console dial-back took ``?access_token=`` too; only the header now."""
    with server.client() as admin:
        join = admin.post("/v1/hosts/join-tokens", json={}).json()["join_token"]
    r = httpx.post(f"{server.url}/v1/agents/join", json={"join_token": join, "name": "url-probe"})
    assert r.status_code == 200, r.text
    credential = r.json()["credential"]
    relay = server.url.replace("http", "ws", 1) + "/v1/agent/console/no-such-session"
    assert asyncio.run(_refusal(f"{relay}?access_token={credential}")) == 4401

    async def with_header() -> int:
        headers = {"Authorization": f"Bearer {credential}"}
        async with websockets.connect(relay, additional_headers=headers) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 20)
        assert closed.value.rcvd is not None
        return int(closed.value.rcvd.code)

    # the same credential in the header is recognised (and told the session does not exist)
    assert asyncio.run(with_header()) == 4404

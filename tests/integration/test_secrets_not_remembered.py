"""Endpoints that hand out a secret once keep no copy of it, even when the client sends an
``Idempotency-Key``: a stored idempotent response (``idempotency_keys.response_body``) or an audit
record with a fresh token in it would be a clear-text credential in a stolen database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, destroy_server, make_server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = make_server(NOVACRON_COMPUTE_DRIVER="simulated", NOVACRON_NETWORK_BACKEND="none")
    srv.start(timeout_s=120)
    try:
        yield srv
    finally:
        destroy_server(srv)


def _db_bytes(state: Path) -> bytes:
    base = state / "novacron.db"
    return b"".join(p.read_bytes() for p in (base, Path(f"{base}-wal")) if p.exists())


def test_tokens_join_tokens_and_tickets_are_not_stored_by_idempotency(server: Server) -> None:
    handed: list[str] = []
    with server.client() as c:
        login = {"username": "admin", "password": server.admin_password}
        for _ in range(2):  # the same key twice: a second secret, never the first one replayed
            r = c.post("/v1/tokens", json=login, headers={"Idempotency-Key": "login-1"})
            assert r.status_code == 200 and "idempotent-replayed" not in r.headers
            handed += [r.json()["access_token"], r.json()["refresh_token"]]
        assert handed[1] != handed[3]
        r = c.post("/v1/hosts/join-tokens", json={}, headers={"Idempotency-Key": "join-" + uuid.uuid4().hex})
        assert r.status_code == 201, r.text
        handed.append(r.json()["join_token"])
        r = c.post("/v1/tickets", json={"path": "/v1/events/ws"}, headers={"Idempotency-Key": "t-1"})
        assert r.status_code == 201, r.text
        handed.append(r.json()["ticket"])
    stored = _db_bytes(server.state_dir)
    assert not [s for s in handed if s.encode() in stored]

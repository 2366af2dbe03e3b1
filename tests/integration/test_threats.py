"""Threat detection in-process, through the real client-address resolution: the test client's peer
is a trusted proxy, so each request's ``X-Forwarded-For`` is its source. Credential stuffing from
one source is detected and blocked while a user elsewhere logs in; an admin lifts the block;
enumeration is detected; ``/metrics`` counts both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from novacron.cli import main as cli_main
from novacron.cli.client import Client
from novacron.cli.common import State
from tests.conftest import in_process_app
from tests.integration.test_api_identity import PW

ATTACKER, USER_SRC, ADMIN_SRC, SCANNER = "203.0.113.9", "198.51.100.20", "192.0.2.1", "203.0.113.77"
ALLOWED = "10.9.0.5"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    settings: dict[str, Any] = {
        "trusted_proxies": ("127.0.0.1/32",),
        "login_source_failures": 1000,  # the throttle's own per-source limit is not what is tested
        "threat_stuffing_accounts": 6,
        "threat_enumeration_404s": 6,
        "threat_delete_burst": 3,
        "threat_allowlist": ("10.9.0.0/16", "127.0.0.0/8"),
    }
    with in_process_app(tmp_path_factory.mktemp("threats"), **settings) as (client, password, _db):
        # the same app, reached through a proxy on 127.0.0.1 that reports each client's address
        yield TestClient(client.app, client=("127.0.0.1", 40000)), password


def _from(source: str, token: str | None = None) -> dict[str, str]:
    headers = {"X-Forwarded-For": source}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _login(c: TestClient, source: str, username: str, password: str) -> Any:
    return c.post("/v1/tokens", json={"username": username, "password": password}, headers=_from(source))


def _admin(c: TestClient, password: str) -> str:
    r = _login(c, ADMIN_SRC, "admin", password)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def _events(c: TestClient, token: str, type_: str) -> list[dict[str, Any]]:
    r = c.get("/v1/events", params={"types": type_, "limit": 1000}, headers=_from(ADMIN_SRC, token))
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def test_credential_stuffing_is_blocked_and_a_user_elsewhere_is_not(
    env: tuple[TestClient, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c, password = env
    admin = _admin(c, password)
    r = c.post("/v1/tenants", json={"name": "acme"}, headers=_from(ADMIN_SRC, admin))
    assert r.status_code == 201, r.text
    alice_spec = {"username": "alice", "password": PW, "tenant_id": r.json()["id"]}
    r = c.post("/v1/users", json=alice_spec, headers=_from(ADMIN_SRC, admin))
    assert r.status_code == 201, r.text
    # the allow-listed address may fail as it likes
    for i in range(8):
        assert _login(c, ALLOWED, f"office-{i}", "wrong-password-1").status_code == 401
    for i in range(6):
        assert _login(c, ATTACKER, f"victim-{i}", "wrong-password-1").status_code == 401
    # blocked now: even the right password of a real account is refused, with the reason
    r = _login(c, ATTACKER, "alice@acme", PW)
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
    assert "blocked" in r.json()["detail"] and "administrator" in r.json()["detail"]
    assert r.json()["blocked_until"]
    # a legitimate user from another address logs in; the allow-listed address was never blocked
    assert _login(c, USER_SRC, "alice@acme", PW).status_code == 200
    assert _login(c, ALLOWED, "alice@acme", PW).status_code == 200

    (event,) = _events(c, admin, "security.credential_stuffing")
    data = event["data"]
    assert data["source"] == ATTACKER and data["count"] == 6 and data["action"] == "blocked"
    assert set(data["sample"]) <= {f"victim-{i}" for i in range(6)} and len(data["sample"]) == 5
    blocks = c.get("/v1/security/blocks", headers=_from(ADMIN_SRC, admin)).json()["items"]
    (block,) = [b for b in blocks if b["source"] == ATTACKER]
    assert block["kind"] == "credential_stuffing" and block["id"] == data["block_id"]

    # only administrators see or lift blocks
    alice = _login(c, USER_SRC, "alice@acme", PW).json()["access_token"]
    assert c.delete(f"/v1/security/blocks/{block['id']}", headers=_from(USER_SRC, alice)).status_code == 403
    # the CLI lists and lifts it
    cli = Client(
        "http://testserver", token=admin, credentials_path=tmp_path / "c.json", transport=c._transport
    )
    monkeypatch.setattr(State, "client", lambda _self: cli)
    listed = CliRunner().invoke(cli_main.app, ["security", "blocks", "list"])
    assert listed.exit_code == 0 and ATTACKER in listed.output, listed.output
    lifted = CliRunner().invoke(cli_main.app, ["security", "blocks", "lift", block["id"]])
    assert lifted.exit_code == 0 and f"{ATTACKER} is served again" in lifted.output, lifted.output
    r = c.delete(f"/v1/security/blocks/{block['id']}", headers=_from(ADMIN_SRC, admin))
    assert r.status_code == 200 and r.json()["lifted_by"] == "admin"  # idempotent
    assert _login(c, ATTACKER, "alice@acme", PW).status_code == 200
    assert _events(c, admin, "security.block_lifted")[0]["data"]["source"] == ATTACKER


def test_enumeration_is_detected_and_counted(env: tuple[TestClient, str]) -> None:
    c, password = env
    admin = _admin(c, password)
    scanner = _login(c, SCANNER, "admin", password).json()["access_token"]
    for i in range(6):
        r = c.get(f"/v1/vms/vm-{i:016x}", headers=_from(SCANNER, scanner))
        assert r.status_code == 404, r.text
    r = c.get("/v1/vms", headers=_from(SCANNER, scanner))
    assert r.status_code == 403 and "blocked" in r.json()["detail"]
    (event,) = _events(c, admin, "security.enumeration")
    assert event["data"]["source"] == SCANNER and event["data"]["count"] == 6
    metrics = c.get("/metrics", headers=_from(ADMIN_SRC, admin)).text
    assert 'novacron_security_detections_total{kind="enumeration"} 1.0' in metrics
    assert 'novacron_security_detections_total{kind="credential_stuffing"} 1.0' in metrics


def test_token_misuse_and_destructive_bursts_are_reported(env: tuple[TestClient, str]) -> None:
    c, password = env
    admin = _admin(c, password)
    token = _login(c, "198.51.100.30", "admin", password).json()["access_token"]
    assert c.get("/v1/tokens/current", headers=_from("198.51.100.30", token)).status_code == 200
    # the same token from another network: reported, not refused (the owner may have moved)
    assert c.get("/v1/tokens/current", headers=_from("203.0.113.200", token)).status_code == 200
    (event,) = _events(c, admin, "security.token_misuse")
    assert event["data"]["sources"] == ["198.51.100.0/24", "203.0.113.0/24"]
    assert event["data"]["action"] == "reported"

    hdr = _from(ADMIN_SRC, admin)
    tenant = c.post("/v1/tenants", json={"name": "burst"}, headers=hdr).json()["id"]
    for i in range(3):
        spec = {"username": f"temp-{i}", "password": PW, "tenant_id": tenant}
        uid = c.post("/v1/users", json=spec, headers=hdr).json()["id"]
        assert c.delete(f"/v1/users/{uid}", headers=hdr).status_code == 204
    (burst,) = _events(c, admin, "security.destructive_burst")
    assert burst["data"]["actor"] == "admin" and burst["data"]["count"] == 3
    assert burst["data"]["action"] == "reported"


def test_thresholds_are_live_configuration(env: tuple[TestClient, str]) -> None:
    c, password = env
    admin = _admin(c, password)
    hdr = _from(ADMIN_SRC, admin)
    r = c.patch("/v1/config", json={"threats": {"stuffing_accounts": 2}}, headers=hdr)
    assert r.status_code == 200 and r.json()["effective"]["threats"]["stuffing_accounts"] == 2, r.text
    for name in ("x-1", "x-2"):
        assert _login(c, "203.0.113.150", name, "wrong-password-1").status_code == 401
    assert _login(c, "203.0.113.150", "admin", password).status_code == 403
    r = c.patch("/v1/config", json={"threats": {"stuffing_accounts": None}}, headers=hdr)
    assert r.json()["effective"]["threats"]["stuffing_accounts"] == 6

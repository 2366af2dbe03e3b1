"""WebAuthn passkeys as a second factor, in-process: a software authenticator (a P-256 key making
``none`` attestations and signed assertions, as a security key does) registers a passkey and signs
in with it; a reused challenge, an unknown credential, another user's credential and a cloned
authenticator (an older signature counter) are refused; the last factor under a policy stays."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import update
from webauthn.helpers import bytes_to_base64url as b64

from novacron.db.base import Database, utcnow
from novacron.db.models import MfaPasskey
from tests.conftest import in_process_app
from tests.integration.test_api_identity import PW, Env, _tenant_with_admin
from tests.integration.test_mfa import _bearer, _user

RP_ID, ORIGIN = "testserver", "http://testserver"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, Database]]:
    state = tmp_path_factory.mktemp("passkeys")
    with in_process_app(state, login_source_failures=1000) as (client, password, db):
        yield Env(client, password, state), db


class SoftAuthenticator:
    """A software authenticator: one P-256 credential, a signature counter."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cred_id = os.urandom(16)
        self.count = 0

    def _client_data(self, kind: str, options: dict[str, Any]) -> bytes:
        data = {"type": kind, "challenge": options["challenge"], "origin": ORIGIN, "crossOrigin": False}
        return json.dumps(data).encode()

    def create(self, options: dict[str, Any]) -> dict[str, Any]:
        nums = self.key.public_key().public_numbers()
        cose = cbor2.dumps(
            {1: 2, 3: -7, -1: 1, -2: nums.x.to_bytes(32, "big"), -3: nums.y.to_bytes(32, "big")}
        )
        attested = bytes(16) + len(self.cred_id).to_bytes(2, "big") + self.cred_id + cose
        auth = hashlib.sha256(RP_ID.encode()).digest() + bytes([0x45]) + (0).to_bytes(4, "big") + attested
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth})
        response = {"clientDataJSON": b64(self._client_data("webauthn.create", options))}
        response["attestationObject"] = b64(attestation)
        return {
            "id": b64(self.cred_id),
            "rawId": b64(self.cred_id),
            "type": "public-key",
            "response": response,
        }

    def get(self, options: dict[str, Any], count: int | None = None) -> dict[str, Any]:
        self.count = self.count + 1 if count is None else count
        client = self._client_data("webauthn.get", options)
        auth = hashlib.sha256(RP_ID.encode()).digest() + bytes([0x05]) + self.count.to_bytes(4, "big")
        sig = self.key.sign(auth + hashlib.sha256(client).digest(), ec.ECDSA(hashes.SHA256()))
        response = {"clientDataJSON": b64(client), "authenticatorData": b64(auth), "signature": b64(sig)}
        return {
            "id": b64(self.cred_id),
            "rawId": b64(self.cred_id),
            "type": "public-key",
            "response": response,
        }


def _register(env: Env, who: dict[str, str], device: SoftAuthenticator) -> dict[str, Any]:
    options = env.client.post("/v1/mfa/webauthn/register/options", headers=who)
    assert options.status_code == 200, options.text
    assert options.json()["rp"]["id"] == RP_ID
    body = {"credential": device.create(options.json()), "name": "laptop"}
    r = env.client.post("/v1/mfa/webauthn/register", json=body, headers=who)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _step(env: Env, username: str) -> tuple[str, dict[str, Any]]:
    first = env.login(username, PW)
    assert first["mfa_required"] is True and "access_token" not in first
    r = env.client.post("/v1/tokens/mfa/webauthn/options", json={"mfa_token": first["mfa_token"]})
    assert r.status_code == 200, r.text
    return str(first["mfa_token"]), dict(r.json())


def test_a_passkey_signs_in_and_refusals(shared: tuple[Env, Database]) -> None:
    env, _ = shared
    _, ta = _tenant_with_admin(env, env.headers(), "pk")
    _user(env, ta, "kim")
    _user(env, ta, "lee")
    kim, lee = env.headers("kim@pk", PW), env.headers("lee@pk", PW)
    device, other = SoftAuthenticator(), SoftAuthenticator()
    made = _register(env, kim, device)
    assert made["name"] == "laptop" and made["sign_count"] == 0
    # a registration's challenge is single use: the same credential sent again is refused
    options = env.client.post("/v1/mfa/webauthn/register/options", headers=lee).json()
    body = {"credential": other.create(options)}
    assert env.client.post("/v1/mfa/webauthn/register", json=body, headers=lee).status_code == 201
    again = env.client.post("/v1/mfa/webauthn/register", json=body, headers=lee)
    assert again.status_code == 422 and again.json()["errors"][0]["field"].endswith("credential"), again.text
    listed = env.client.get("/v1/mfa/webauthn/credentials", headers=kim).json()["items"]
    assert [p["id"] for p in listed] == [made["id"]]

    token, options = _step(env, "kim@pk")
    assert [c["id"] for c in options["allowCredentials"]] == [b64(device.cred_id)]
    signed = device.get(options)
    r = env.client.post("/v1/tokens/mfa/webauthn", json={"mfa_token": token, "credential": signed})
    assert r.status_code == 200, r.text
    assert env.client.get("/v1/tokens/current", headers=_bearer(r.json()["access_token"])).status_code == 200
    used = env.client.get("/v1/mfa/webauthn/credentials", headers=kim).json()["items"][0]
    assert used["sign_count"] == 1 and used["last_used_at"] is not None

    def refused(credential: dict[str, Any], mfa_token: str) -> None:
        r = env.client.post(
            "/v1/tokens/mfa/webauthn", json={"mfa_token": mfa_token, "credential": credential}
        )
        assert r.status_code == 401, r.text
        assert "passkey was refused" in r.json()["detail"]

    # the same assertion again: its challenge is spent
    token, _ = _step(env, "kim@pk")
    refused(signed, token)
    # an unknown credential (another authenticator, never registered)
    token, options = _step(env, "kim@pk")
    refused(SoftAuthenticator().get(options), token)
    # another user's credential, on kim's challenge
    token, options = _step(env, "kim@pk")
    refused(other.get(options), token)
    # a clone replaying an older counter
    token, options = _step(env, "kim@pk")
    refused(device.get(options, count=1), token)


def test_the_last_passkey_under_a_policy_stays(shared: tuple[Env, Database]) -> None:
    env, _ = shared
    tid, ta = _tenant_with_admin(env, env.headers(), "pk2")
    _user(env, ta, "max")
    who = env.headers("max@pk2", PW)
    made = _register(env, who, SoftAuthenticator())
    r = env.client.patch(f"/v1/mfa/webauthn/credentials/{made['id']}", json={"name": "key"}, headers=who)
    assert r.status_code == 200 and r.json()["name"] == "key", r.text
    r = env.client.put(f"/v1/tenants/{tid}/mfa-policy", json={"require": "everyone"}, headers=ta)
    assert r.status_code == 200, r.text
    # the passkey satisfies the policy: the password step asks for it (no enrol-only token)
    _, options = _step(env, "max@pk2")
    assert options["allowCredentials"]
    r = env.client.delete(f"/v1/mfa/webauthn/credentials/{made['id']}", headers=who)
    assert r.status_code == 409 and "last second factor" in r.json()["detail"], r.text
    r = env.client.put(f"/v1/tenants/{tid}/mfa-policy", json={"require": "none"}, headers=ta)
    assert env.client.delete(f"/v1/mfa/webauthn/credentials/{made['id']}", headers=who).status_code == 204
    assert "access_token" in env.login("max@pk2", PW)


def test_a_passkey_proves_step_up(shared: tuple[Env, Database]) -> None:
    env, db = shared
    c = env.client
    _, ta = _tenant_with_admin(env, env.headers(), "pk3")
    uid = _user(env, ta, "ned")
    device = SoftAuthenticator()
    _register(env, env.headers("ned@pk3", PW), device)
    token, options = _step(env, "ned@pk3")
    r = c.post("/v1/tokens/mfa/webauthn", json={"mfa_token": token, "credential": device.get(options)})
    ned = _bearer(r.json()["access_token"])
    # the login's passkey counts as a step-up for five minutes
    assert c.post("/v1/api-keys", json={"name": "fresh"}, headers=ned).status_code == 201
    with db.session() as s:  # six minutes later
        stale = utcnow() - timedelta(minutes=6)
        s.execute(update(MfaPasskey).where(MfaPasskey.user_id == uid).values(stepup_at=stale))
    r = c.post("/v1/api-keys", json={"name": "late"}, headers=ned)
    assert r.status_code == 403 and r.json()["title"] == "Step-up required", r.text
    options = c.post("/v1/mfa/webauthn/verify/options", headers=ned).json()
    signed = device.get(options)
    r = c.post("/v1/mfa/webauthn/verify", json={"credential": signed}, headers=ned)
    assert r.status_code == 200 and r.json()["step_up_until"] is not None, r.text
    assert c.post("/v1/api-keys", json={"name": "late"}, headers=ned).status_code == 201
    # the step-up's challenge was single use
    r = c.post("/v1/mfa/webauthn/verify", json={"credential": signed}, headers=ned)
    assert r.status_code == 422 and "passkey was refused" in r.text, r.text

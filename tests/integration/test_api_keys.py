"""API keys end to end, in-process: a key does exactly its scope, never more than its owner, is
shown once and stored hashed, and stops at its expiry, its revocation or its owner's disabling."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from novacron.cli import apikey
from novacron.cli.client import Client
from novacron.db.base import Database, utcnow
from novacron.db.models import ApiKey
from tests.conftest import in_process_app
from tests.integration.test_api_identity import PW, Env, _tenant_with_admin


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, Database]]:
    state = tmp_path_factory.mktemp("apikeys")
    with in_process_app(state) as (client, password, db):
        yield Env(client, password, state), db


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _member(env: Env, tenant: str, username: str) -> tuple[dict[str, str], dict[str, str], str]:
    """A tenant, its admin's headers, and a member's headers and user id."""
    _, ta = _tenant_with_admin(env, env.headers(), tenant)
    r = env.client.post("/v1/users", json={"username": username, "password": PW}, headers=ta)
    assert r.status_code == 201, r.text
    return ta, env.headers(f"{username}@{tenant}", PW), r.json()["id"]


def _key(env: Env, who: dict[str, str], **body: Any) -> dict[str, Any]:
    r = env.client.post("/v1/api-keys", json=body, headers=who)
    assert r.status_code == 201, r.text
    assert r.json()["token"].startswith("nck_")
    return dict(r.json())


def test_a_key_does_exactly_its_scope_and_its_secret_is_shown_once(shared: tuple[Env, Database]) -> None:
    env, _db = shared
    c = env.client
    _, dev, _ = _member(env, "acme", "dev")
    body = {"name": "ci", "permissions": ["vm:read", "image:read"]}
    r = c.post("/v1/api-keys", json=body, headers=dev | {"Idempotency-Key": "k1"})
    assert r.status_code == 201, r.text
    key, token = r.json(), r.json()["token"]
    assert key["permissions"] == ["image:read", "vm:read"] and key["state"] == "active"
    # a retry gets the key again, never its secret; there is still one key
    again = c.post("/v1/api-keys", json=body, headers=dev | {"Idempotency-Key": "k1"})
    assert again.status_code == 201 and again.json()["id"] == key["id"] and again.json()["token"] is None
    assert [k["name"] for k in c.get("/v1/api-keys", headers=dev).json()["items"]] == ["ci"]
    assert "token" not in c.get(f"/v1/api-keys/{key['id']}", headers=dev).json()
    # it may read VMs and images, nothing else its owner may do
    as_key = _bearer(token)
    assert c.get("/v1/vms", headers=as_key).status_code == 200
    assert c.get("/v1/images", headers=as_key).status_code == 200
    r = c.post("/v1/vms", json={"name": "x", "image": "test-guest", "flavor": "tiny"}, headers=as_key)
    assert r.status_code == 403 and "vm:create" in r.json()["detail"]
    assert c.get("/v1/networks", headers=as_key).status_code == 403
    me = c.get("/v1/tokens/current", headers=as_key).json()
    assert me["username"] == "dev" and sorted(me["permissions"]) == ["image:read", "vm:read"]
    # its use is recorded; the secret is nowhere in the database, only its hash
    used = c.get(f"/v1/api-keys/{key['id']}", headers=dev).json()
    assert used["last_used_at"] is not None and used["last_used_from"] == "testclient"
    secret = token.split("_", 2)[2]  # nck_<id>_<secret>; the secret may hold "_" itself
    assert secret.encode() not in (env.state_dir / "nc.db").read_bytes()
    # a key is not a session to sign out, and cannot make keys
    assert c.delete("/v1/tokens/current", headers=as_key).status_code == 403
    r = c.post("/v1/api-keys", json={"name": "child"}, headers=as_key)
    assert r.status_code == 403 and "cannot create API keys" in r.json()["detail"]


def test_a_key_never_does_more_than_its_owner_now(shared: tuple[Env, Database]) -> None:
    env, _db = shared
    c = env.client
    ta, dev, dev_id = _member(env, "bolt", "ops")
    r = c.post("/v1/api-keys", json={"name": "x", "permissions": ["user:write"]}, headers=dev)
    assert r.status_code == 403 and r.json()["errors"][0]["field"] == "body.permissions[0]", r.text
    r = c.post("/v1/api-keys", json={"name": "x", "permissions": ["vm:read", "nonsense:do"]}, headers=dev)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.permissions[1]", r.text
    r = c.post("/v1/api-keys", json={"name": "BAD NAME"}, headers=dev)
    assert r.status_code == 422 and "name" in r.json()["errors"][0]["field"]
    token = _key(env, dev, name="deploy", permissions=["vm:read", "network:write"])["token"]
    assert c.post("/v1/networks", json={"name": "n1"}, headers=_bearer(token)).status_code != 403
    # the owner demoted to viewer: the key keeps only what a viewer holds
    assert c.patch(f"/v1/users/{dev_id}", json={"role": "viewer"}, headers=ta).status_code == 200
    r = c.post("/v1/networks", json={"name": "n2"}, headers=_bearer(token))
    assert r.status_code == 403 and "network:write" in r.json()["detail"]
    assert c.get("/v1/vms", headers=_bearer(token)).status_code == 200
    # the owner disabled: the key stops
    assert c.patch(f"/v1/users/{dev_id}", json={"disabled": True}, headers=ta).status_code == 200
    r = c.get("/v1/vms", headers=_bearer(token))
    assert r.status_code == 401 and "disabled" in r.json()["detail"]


def test_revoked_expired_and_other_tenants_keys(shared: tuple[Env, Database]) -> None:
    env, db = shared
    c = env.client
    ta, dev, _ = _member(env, "cove", "bot")
    revoked = _key(env, dev, name="one", permissions=["vm:read"])
    expiring = _key(env, dev, name="two", permissions=["vm:read"], expires_in_days=1)
    # the tenant's admin sees and revokes its users' keys; another tenant's admin sees none of them
    mine = {k["name"] for k in c.get("/v1/api-keys", params={"everyone": True}, headers=ta).json()["items"]}
    assert {"one", "two"} <= mine
    _, other = _tenant_with_admin(env, env.headers(), "dune")
    assert c.get(f"/v1/api-keys/{revoked['id']}", headers=other).status_code == 404
    assert c.delete(f"/v1/api-keys/{revoked['id']}", headers=other).status_code == 404
    assert not c.get("/v1/api-keys", params={"everyone": True}, headers=other).json()["items"]
    assert c.delete(f"/v1/api-keys/{revoked['id']}", headers=ta).status_code == 204
    r = c.get("/v1/vms", headers=_bearer(revoked["token"]))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert c.get(f"/v1/api-keys/{revoked['id']}", headers=dev).json()["state"] == "revoked"
    # a day later (the row's expiry moved to the past), the other key is refused too
    assert c.get("/v1/vms", headers=_bearer(expiring["token"])).status_code == 200
    with db.session() as s:
        s.execute(
            update(ApiKey)
            .where(ApiKey.id == expiring["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    r = c.get("/v1/vms", headers=_bearer(expiring["token"]))
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    assert c.get(f"/v1/api-keys/{expiring['id']}", headers=dev).json()["state"] == "expired"
    # a wrong secret for a real key id is refused like an unknown key
    forged = expiring["token"][:-4] + "AAAA"
    assert c.get("/v1/vms", headers=_bearer(forged)).status_code == 401


def test_the_cli_makes_lists_and_revokes_keys(
    shared: tuple[Env, Database], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, _db = shared
    admin, user, _ = _member(env, "echo", "cli-user")
    assert env.client.post("/v1/projects", json={"name": "nightly-builds"}, headers=admin).status_code == 201
    token = user["Authorization"].removeprefix("Bearer ")
    client = Client(
        "http://testserver",
        token=token,
        credentials_path=tmp_path / "c.json",
        transport=env.client._transport,
    )
    monkeypatch.setattr(apikey, "client_of", lambda _ctx: client)
    made = CliRunner().invoke(apikey.app, ["create", "nightly", "-p", "vm:read", "--expires-in-days", "7"])
    assert made.exit_code == 0, made.output
    assert "shown only now" in made.output and "nck_" in made.output
    listed = CliRunner().invoke(apikey.app, ["list"])
    assert listed.exit_code == 0 and "nightly" in listed.output and "vm:read" in listed.output
    assert "never" in listed.output  # not used yet
    assert "(whole tenant)" in listed.output
    key_id = env.client.get("/v1/api-keys", headers=user).json()["items"][0]["id"]
    assert CliRunner().invoke(apikey.app, ["revoke", key_id]).exit_code == 0
    assert env.client.get(f"/v1/api-keys/{key_id}", headers=user).json()["state"] == "revoked"
    # limited to one project, named as the user knows it
    scoped_args = ["create", "builds", "-p", "vm:read", "--project", "nightly-builds"]
    scoped = CliRunner().invoke(apikey.app, scoped_args)
    assert scoped.exit_code == 0 and "only its VMs" in scoped.output, scoped.output
    keys = {k["name"]: k for k in env.client.get("/v1/api-keys", headers=user).json()["items"]}
    assert keys["builds"]["project_id"] and keys["builds"]["project_id"] in scoped.output
    refused = CliRunner().invoke(apikey.app, ["create", "nowhere", "--project", "no-such-project"])
    # (the CLI's group turns the API's refusal into its message; this sub-app alone raises it)
    assert refused.exit_code != 0 and "no project 'no-such-project'" in str(refused.exception)

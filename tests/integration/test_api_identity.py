"""The identity API end to end, in-process: a real app on a temporary SQLite state dir."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from tests.conftest import in_process_app

PW = "Correct-Horse-42!"
PW2 = "Another-Horse-43!"


@dataclass
class Env:
    client: TestClient
    admin_password: str
    state_dir: Path

    def login(self, username: str, password: str, **extra: str) -> dict[str, Any]:
        r = self.client.post("/v1/tokens", json={"username": username, "password": password, **extra})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def headers(self, username: str = "admin", password: str | None = None) -> dict[str, str]:
        token = self.login(username, password or self.admin_password)["access_token"]
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with in_process_app(tmp_path) as (client, password, _db):
        yield Env(client, password, tmp_path)


def _tenant_with_admin(env: Env, admin: dict[str, str], name: str) -> tuple[str, dict[str, str]]:
    c = env.client
    r = c.post("/v1/tenants", json={"name": name}, headers=admin)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    r = c.post(
        "/v1/users",
        json={"username": f"{name}-admin", "password": PW, "role": "tenant-admin", "tenant_id": tid},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return tid, env.headers(f"{name}-admin@{name}", PW)


def test_bootstrap_password_file(env: Env) -> None:
    path = env.state_dir / "admin-password"
    assert path.read_text().strip() == env.admin_password
    assert path.stat().st_mode & 0o777 == 0o600


def test_login_whoami_and_bad_login(env: Env) -> None:
    c = env.client
    tokens = env.login("admin", env.admin_password)
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900
    r = c.get("/v1/tokens/current", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["username"] == "admin" and me["role"] == "admin" and me["tenant_id"] is None
    assert "global" in me["permissions"]
    r = c.post("/v1/tokens", json={"username": "admin", "password": "wrong"})
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    assert "Wrong username or password" in r.json()["detail"]
    r = c.get("/v1/tokens/current")
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]
    r = c.get("/v1/tokens/current", headers={"Authorization": "Bearer garbage"})
    assert r.status_code == 401


def test_refresh_flow(env: Env) -> None:
    c = env.client
    t = env.login("admin", env.admin_password)
    r = c.post("/v1/tokens/refresh", json={"refresh_token": t["refresh_token"]})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    r2 = c.post("/v1/tokens/refresh", json={"refresh_token": t["refresh_token"]})
    assert r2.status_code == 401 and "already used" in r2.json()["detail"]


def test_tenant_admin_creates_project_and_user_member_cannot(env: Env) -> None:
    c = env.client
    admin = env.headers()
    tid, ta = _tenant_with_admin(env, admin, "acme")
    r = c.post("/v1/projects", json={"name": "web"}, headers=ta)
    assert r.status_code == 201, r.text
    assert r.json()["tenant_id"] == tid
    pid = r.json()["id"]
    r = c.post("/v1/users", json={"username": "bob", "password": PW}, headers=ta)
    assert r.status_code == 201, r.text
    assert r.json()["tenant_id"] == tid and r.json()["role"] == "member"
    # a tenant-admin cannot mint admins
    r = c.post("/v1/users", json={"username": "evil", "password": PW, "role": "admin"}, headers=ta)
    assert r.status_code == 403
    member = env.headers("bob@acme", PW)
    r = c.post("/v1/users", json={"username": "carol", "password": PW}, headers=member)
    assert r.status_code == 403 and "user:write" in r.json()["detail"]
    # members read their tenant's projects
    r = c.get("/v1/projects", headers=member)
    assert r.status_code == 200 and [p["id"] for p in r.json()["items"]] == [pid]
    # ETag on GET, If-Match on PATCH
    r = c.get(f"/v1/projects/{pid}", headers=ta)
    etag = r.headers["etag"]
    r = c.patch(f"/v1/projects/{pid}", json={"description": "x"}, headers=ta | {"If-Match": etag})
    assert r.status_code == 200, r.text
    r = c.patch(f"/v1/projects/{pid}", json={"description": "y"}, headers=ta | {"If-Match": etag})
    assert r.status_code == 412


def test_other_tenants_resources_are_404(env: Env) -> None:
    c = env.client
    admin = env.headers()
    _, a = _tenant_with_admin(env, admin, "alpha")
    tid_b, b = _tenant_with_admin(env, admin, "beta")
    pid_b = c.post("/v1/projects", json={"name": "secret"}, headers=b).json()["id"]
    uid_b = c.post("/v1/users", json={"username": "bee", "password": PW}, headers=b).json()["id"]
    for path in (f"/v1/projects/{pid_b}", f"/v1/users/{uid_b}", f"/v1/tenants/{tid_b}"):
        r = c.get(path, headers=a)
        assert r.status_code == 404, (path, r.text)
    assert c.patch(f"/v1/projects/{pid_b}", json={"description": "x"}, headers=a).status_code == 404
    assert c.delete(f"/v1/users/{uid_b}", headers=a).status_code == 404
    r = c.post("/v1/projects", json={"name": "sneaky", "tenant_id": tid_b}, headers=a)
    assert r.status_code == 404
    assert all(p["id"] != pid_b for p in c.get("/v1/projects", headers=a).json()["items"])
    assert [t["name"] for t in c.get("/v1/tenants", headers=a).json()["items"]] == ["alpha"]


def test_revoked_token_refused_at_once(env: Env) -> None:
    c = env.client
    h = env.headers()
    assert c.get("/v1/tokens/current", headers=h).status_code == 200
    assert c.delete("/v1/tokens/current", headers=h).status_code == 204
    r = c.get("/v1/tokens/current", headers=h)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_disabled_user_refused_at_once(env: Env) -> None:
    c = env.client
    admin = env.headers()
    _, ta = _tenant_with_admin(env, admin, "gamma")
    uid = c.post("/v1/users", json={"username": "dan", "password": PW}, headers=ta).json()["id"]
    dan = env.headers("dan@gamma", PW)
    assert c.get("/v1/projects", headers=dan).status_code == 200
    r = c.patch(f"/v1/users/{uid}", json={"disabled": True}, headers=ta)
    assert r.status_code == 200 and r.json()["disabled"] is True
    r = c.get("/v1/projects", headers=dan)
    assert r.status_code == 401 and "disabled" in r.json()["detail"]
    r = c.post("/v1/tokens", json={"username": "dan@gamma", "password": PW})
    assert r.status_code == 401


def test_password_change_ends_sessions(env: Env) -> None:
    c = env.client
    admin = env.headers()
    _, ta = _tenant_with_admin(env, admin, "delta")
    uid = c.post("/v1/users", json={"username": "eve", "password": PW}, headers=ta).json()["id"]
    eve = env.headers("eve@delta", PW)
    r = c.post(f"/v1/users/{uid}/password", json={"password": "short"}, headers=eve)
    assert r.status_code == 422
    r = c.post(f"/v1/users/{uid}/password", json={"password": PW2}, headers=eve)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.current_password"
    body = {"password": PW2, "current_password": PW}
    assert c.post(f"/v1/users/{uid}/password", json=body, headers=eve).status_code == 204
    assert c.get("/v1/tokens/current", headers=eve).status_code == 401
    assert c.get("/v1/tokens/current", headers=env.headers("eve@delta", PW2)).status_code == 200


def test_key_rotation_keeps_old_tokens_and_jwks_lists_both(env: Env) -> None:
    c = env.client
    admin = env.headers()
    old_kid = jwt.get_unverified_header(admin["Authorization"].split()[1])["kid"]
    r = c.post("/v1/signing-keys/rotate", json={"alg": "RS256"}, headers=admin)
    assert r.status_code == 201, r.text
    new_kid = r.json()["kid"]
    assert c.get("/v1/tokens/current", headers=admin).status_code == 200
    fresh = env.headers()
    assert jwt.get_unverified_header(fresh["Authorization"].split()[1])["kid"] == new_kid
    for path in ("/.well-known/jwks.json", "/v1/jwks"):
        keys = c.get(path).json()["keys"]
        assert {k["kid"] for k in keys} == {old_kid, new_kid}
        assert all("d" not in k for k in keys)
    # a token verifies with nothing but the published JWKS
    jwk = next(k for k in c.get("/v1/jwks").json()["keys"] if k["kid"] == new_kid)
    claims = jwt.decode(fresh["Authorization"].split()[1], jwt.PyJWK(jwk).key, algorithms=["RS256"])
    assert claims["iss"] == "novacron"
    # members may not rotate
    _, ta = _tenant_with_admin(env, admin, "eps")
    assert c.post("/v1/signing-keys/rotate", headers=ta).status_code == 403


def test_audit_records_mutations(env: Env) -> None:
    c = env.client
    admin = env.headers()
    tid, ta = _tenant_with_admin(env, admin, "zeta")
    pid = c.post("/v1/projects", json={"name": "audited"}, headers=ta).json()["id"]
    assert c.post("/v1/users", json={"username": "x", "password": "x"}, headers=ta).status_code == 422
    r = c.get("/v1/audit", params={"action": "project.create"}, headers=ta)
    assert r.status_code == 200, r.text
    [rec] = r.json()["items"]
    assert rec["actor_name"] == "zeta-admin" and rec["outcome"] == "success" and rec["resource_id"] == pid
    assert rec["tenant_id"] == tid and rec["status_code"] == 201 and rec["method"] == "POST"
    failed = c.get("/v1/audit", params={"outcome": "failed"}, headers=ta).json()["items"]
    assert [f["action"] for f in failed] == ["user.create"]
    # the tenant-admin sees only its tenant's records; the platform admin sees all
    own = c.get("/v1/audit", params={"limit": 500}, headers=ta).json()["items"]
    assert own and all(rec["tenant_id"] == tid for rec in own)
    everything = c.get("/v1/audit", params={"actor": "admin"}, headers=admin).json()["items"]
    assert any(rec["action"] == "tenant.create" for rec in everything)
    logins = c.get("/v1/audit", params={"action": "token.create", "outcome": "denied"}, headers=admin)
    c.post("/v1/tokens", json={"username": "admin", "password": "nope"})
    logins2 = c.get("/v1/audit", params={"action": "token.create", "outcome": "denied"}, headers=admin)
    assert len(logins2.json()["items"]) == len(logins.json()["items"]) + 1
    # members cannot read the audit log
    c.post("/v1/users", json={"username": "mem", "password": PW}, headers=ta)
    assert c.get("/v1/audit", headers=env.headers("mem@zeta", PW)).status_code == 403
    # pagination
    p1 = c.get("/v1/audit", params={"limit": 1}, headers=admin).json()
    p2 = c.get("/v1/audit", params={"limit": 1, "cursor": p1["next_cursor"]}, headers=admin).json()
    assert p1["items"][0]["id"] > p2["items"][0]["id"]


def test_problem_json_names_the_field(env: Env) -> None:
    c = env.client
    admin = env.headers()
    r = c.post("/v1/tenants", json={"name": "Bad Name!"}, headers=admin)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == "body.name"
    r = c.post("/v1/tenants", json={"name": "ok", "color": "red"}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.color"
    assert c.post("/v1/tenants", json={"name": "dup"}, headers=admin).status_code == 201
    r = c.post("/v1/tenants", json={"name": "dup"}, headers=admin)
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "body.name"
    r = c.post("/v1/projects", json={"name": "p"}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.tenant_id"
    r = c.post("/v1/users", json={"username": "admin", "password": "long-enough-pass"}, headers=admin)
    assert r.status_code in (409, 422)


def test_idempotent_project_create(env: Env) -> None:
    c = env.client
    admin = env.headers()
    tid, ta = _tenant_with_admin(env, admin, "eta")
    h = ta | {"Idempotency-Key": "create-web-1"}
    r1 = c.post("/v1/projects", json={"name": "web"}, headers=h)
    r2 = c.post("/v1/projects", json={"name": "web"}, headers=h)
    assert r1.status_code == r2.status_code == 201
    assert r1.json()["id"] == r2.json()["id"]
    assert r2.headers.get("idempotent-replayed") == "true"
    r3 = c.post("/v1/projects", json={"name": "other"}, headers=h)
    assert r3.status_code == 422
    assert len(c.get("/v1/projects", params={"name": "web"}, headers=ta).json()["items"]) == 1


# -- finding 16: logins do not tell one tenant which names another tenant uses ----------------------


def _answer(r: Any) -> tuple[int, str, str | None]:
    body = dict(r.json())
    body.pop("instance", None)
    return r.status_code, repr(sorted(body.items())), r.headers.get("www-authenticate")


def test_a_tenant_admin_cannot_learn_other_tenants_usernames_by_logging_in(env: Env) -> None:
    """The oracle: A's admin creates ``bob`` in A and logs in as ``bob`` without a tenant; a
    refusal used to mean "another tenant has a bob too". Now a login without a tenant never
    looks at tenants other than ``default``, so the answer is the same with or without B's bob."""
    c = env.client
    admin = env.headers()
    _, a = _tenant_with_admin(env, admin, "ta")
    tid_b, _ = _tenant_with_admin(env, admin, "tb")
    assert c.post("/v1/users", json={"username": "bob", "password": PW}, headers=a).status_code == 201

    def login(username: str, password: str = PW, **extra: str) -> Any:
        return c.post("/v1/tokens", json={"username": username, "password": password, **extra})

    before = login("bob")  # no bob in B yet
    r = c.post("/v1/users", json={"username": "bob", "password": PW2, "tenant_id": tid_b}, headers=admin)
    assert r.status_code == 201, r.text
    after = login("bob")
    assert _answer(before) == _answer(after) == _answer(login("no-such-user"))
    assert before.status_code == 401 and "name@tenant" in before.json()["detail"]
    # A's bob by the @ form and by the tenant field (name or id); B's bob with B's password
    for who, password, extra in (("bob@ta", PW, {}), ("bob", PW, {"tenant": "ta"}), ("bob@tb", PW2, {})):
        r = login(who, password, **extra)
        assert r.status_code == 200, r.text
        me = c.get("/v1/tokens/current", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
        assert me.json()["tenant_name"] == ("tb" if who == "bob@tb" else "ta")
    r = login("bob", PW2, tenant=tid_b)
    assert r.status_code == 200, r.text
    # an unknown tenant is answered exactly like an unknown user, by every spelling
    unknown = _answer(login("nobody"))
    for attempt in (login("bob@no-such-tenant"), login("bob", tenant="no-such-tenant"), login("bob@tb")):
        assert _answer(attempt) == unknown
    # the platform administrator needs no tenant
    assert login("admin", env.admin_password).status_code == 200


def test_default_tenant_users_sign_in_without_a_tenant(env: Env) -> None:
    c = env.client
    admin = env.headers()
    default = c.get("/v1/tenants", params={"name": "default"}, headers=admin).json()["items"]
    [tid] = [t["id"] for t in default if t["name"] == "default"]
    body = {"username": "opsie", "password": PW, "tenant_id": tid}
    assert c.post("/v1/users", json=body, headers=admin).status_code == 201
    for extra in ({}, {"tenant": "default"}, {"tenant": tid}):
        assert env.login("opsie", PW, **extra)["access_token"]
    assert env.login("opsie@default", PW)["access_token"]
    # a name with "@" signs in as name@tenant (split on the last "@"), or with the tenant field
    body = {"username": "carla@example.com", "password": PW, "tenant_id": tid}
    assert c.post("/v1/users", json=body, headers=admin).status_code == 201
    assert env.login("carla@example.com@default", PW)["access_token"]
    assert env.login("carla@example.com", PW, tenant="default")["access_token"]
    # a platform user named like an address (no tenant "corp.example"): by its whole name
    body = {"username": "ops@corp.example", "password": PW, "role": "admin"}
    r = c.post("/v1/users", json=body, headers=admin)
    assert r.status_code == 201 and r.json()["tenant_id"] is None, r.text
    assert env.login("ops@corp.example", PW)["access_token"]


def test_the_throttle_counts_every_spelling_of_a_tenant_login_as_one_account(tmp_path: Path) -> None:
    """Spelling the tenant by name, by id, as ``@`` or in another case must not earn fresh
    tries, and an unknown tenant is throttled exactly like a known one."""
    with in_process_app(tmp_path, login_account_failures=3, login_source_failures=1000) as (c, password, _db):
        env = Env(c, str(password), tmp_path)
        tid, _ = _tenant_with_admin(env, env.headers(), "thr")
        for spellings in (
            [("thr-admin@thr", None), ("thr-admin", "thr"), ("thr-admin", tid), ("thr-admin@THR ", None)],
            [("ghost@nope", None), ("ghost", "nope"), ("ghost@NOPE", None), ("ghost", " Nope")],
        ):
            codes = []
            for username, tenant in spellings:
                body = {"username": username, "password": "wrong-guess-123"}
                codes.append(
                    c.post("/v1/tokens", json={**body, **({"tenant": tenant} if tenant else {})}).status_code
                )
            assert codes == [401, 401, 401, 429], (spellings, codes)


def test_a_node_credential_is_not_signed_out_but_revoked_by_an_admin(env: Env) -> None:
    """``DELETE /v1/tokens/current`` with a node credential answered 204 and the credential went
    on working: whoever "signed out" a leaked credential believed it dead. Now it is refused with
    what to do instead, and the admin's revoke does end it."""
    c = env.client
    admin = env.headers()
    join = c.post("/v1/hosts/join-tokens", json={}, headers=admin).json()["join_token"]
    r = c.post("/v1/agents/join", json={"join_token": join, "name": "leaky-node"})
    assert r.status_code in (200, 201), r.text
    node = {"Authorization": f"Bearer {r.json()['credential']}"}
    host_id = r.json()["host_id"]
    r = c.delete("/v1/tokens/current", headers=node)
    assert r.status_code == 403 and f"/v1/hosts/{host_id}/revoke" in r.json()["detail"], r.text
    assert c.get("/v1/tokens/current", headers=node).status_code == 200  # not silently half-done
    assert c.post(f"/v1/hosts/{host_id}/revoke", headers=admin).status_code == 204
    r = c.get("/v1/tokens/current", headers=node)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]

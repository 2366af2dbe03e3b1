"""Second factor end to end, in-process: TOTP enrolment (secret sealed, shown once), the login's
second step, replayed and wrong codes, recovery codes, the tenant policy, an admin's reset, and
step-up for sensitive actions; and ``novacron login`` asking for the code."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from novacron.cli import main as cli_main
from novacron.cli.client import Client
from novacron.cli.common import State
from novacron.db.base import Database, utcnow
from novacron.db.models import MfaTotp
from novacron.identity import totp
from tests.conftest import in_process_app
from tests.integration.test_api_identity import PW, Env, _tenant_with_admin


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, Database]]:
    state = tmp_path_factory.mktemp("mfa")
    # the tests share the client's address: its own limit must not end the module early
    with in_process_app(state, login_source_failures=1000) as (client, password, db):
        yield Env(client, password, state), db


@dataclass
class Authenticator:
    """What a user's authenticator app does: a code per 30 s step, each step used once."""

    secret: str
    used: int = field(default=0)

    def code(self) -> str:
        """A code of a step not used yet, within the server's window (waits when all are used)."""
        while True:
            now_step = int(time.time() // totp.STEP_S)
            step = max(self.used + 1, now_step - totp.WINDOW)
            if step <= now_step + totp.WINDOW:
                self.used = step
                return totp.code_at(self.secret, step * totp.STEP_S)
            time.sleep(1)  # the next step opens within 30 s; only reached by a burst of codes


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _user(env: Env, ta: dict[str, str], username: str, role: str = "member") -> str:
    r = env.client.post("/v1/users", json={"username": username, "password": PW, "role": role}, headers=ta)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _enrol(env: Env, who: dict[str, str]) -> tuple[Authenticator, list[str]]:
    r = env.client.post("/v1/mfa/totp", headers=who)
    assert r.status_code == 201, r.text
    app = Authenticator(r.json()["secret"])
    r = env.client.post("/v1/mfa/totp/confirm", json={"code": app.code()}, headers=who)
    assert r.status_code == 200, r.text
    return app, list(r.json()["recovery_codes"])


def _login(env: Env, username: str, code: str) -> dict[str, Any]:
    first = env.login(username, PW)
    assert first["mfa_required"] is True and "access_token" not in first
    r = env.client.post("/v1/tokens/mfa", json={"mfa_token": first["mfa_token"], "code": code})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_enrol_then_log_in_with_a_code_that_cannot_be_replayed(shared: tuple[Env, Database]) -> None:
    env, _db = shared
    c = env.client
    _, ta = _tenant_with_admin(env, env.headers(), "acme")
    _user(env, ta, "dev")
    dev = env.headers("dev@acme", PW)
    # the secret is shown once: a retry with the same Idempotency-Key gets nulls
    r = c.post("/v1/mfa/totp", headers=dev | {"Idempotency-Key": "e1"})
    assert r.status_code == 201 and r.json()["otpauth_uri"].startswith("otpauth://totp/NovaCron:dev%40acme?")
    secret = r.json()["secret"]
    assert secret in r.json()["otpauth_uri"]
    again = c.post("/v1/mfa/totp", headers=dev | {"Idempotency-Key": "e1"})
    assert again.status_code == 201 and again.json()["secret"] is None
    assert secret.encode() not in (env.state_dir / "nc.db").read_bytes()  # sealed at rest
    assert c.get("/v1/mfa", headers=dev).json()["totp"] == "pending"
    # a wrong first code is a problem naming the field; the right one confirms and gives 10 codes
    r = c.post("/v1/mfa/totp/confirm", json={"code": "000000"}, headers=dev)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"] == "body.code"
    app = Authenticator(secret)
    confirm_code = app.code()
    r = c.post("/v1/mfa/totp/confirm", json={"code": confirm_code}, headers=dev)
    assert r.status_code == 200, r.text
    recovery = r.json()["recovery_codes"]
    assert len(recovery) == 10 and len(set(recovery)) == 10
    assert recovery[0].encode() not in (env.state_dir / "nc.db").read_bytes()  # stored hashed
    assert c.get("/v1/mfa", headers=dev).json() | {"step_up_until": None} == {
        "totp": "enrolled",
        "recovery_codes_left": 10,
        "required": False,
        "step_up_until": None,
    }
    # the password alone gives no token, only a challenge; the confirm code is not accepted again
    first = env.login("dev@acme", PW)
    assert first["mfa_required"] and "access_token" not in first
    r = c.post("/v1/tokens/mfa", json={"mfa_token": first["mfa_token"], "code": confirm_code})
    assert r.status_code == 401 and "wrong or already used" in r.json()["detail"]
    code = app.code()
    r = c.post("/v1/tokens/mfa", json={"mfa_token": first["mfa_token"], "code": code})
    assert r.status_code == 200, r.text
    assert c.get("/v1/tokens/current", headers=_bearer(r.json()["access_token"])).json()["username"] == "dev"
    # the same code on a new challenge: a replay within its window, refused
    again_first = env.login("dev@acme", PW)
    r = c.post("/v1/tokens/mfa", json={"mfa_token": again_first["mfa_token"], "code": code})
    assert r.status_code == 401
    # a recovery code works once
    assert _login(env, "dev@acme", recovery[0].lower())["access_token"]
    first = env.login("dev@acme", PW)
    r = c.post("/v1/tokens/mfa", json={"mfa_token": first["mfa_token"], "code": recovery[0]})
    assert r.status_code == 401
    # disabling needs a right code; then the password alone logs in again
    r = c.post("/v1/mfa/totp/disable", json={"code": "123456"}, headers=dev)
    assert r.status_code == 422
    assert c.post("/v1/mfa/totp/disable", json={"code": recovery[1]}, headers=dev).status_code == 204
    r = c.post("/v1/mfa/verify", json={"code": app.code()}, headers=dev)
    assert r.status_code == 409 and "no confirmed second factor" in r.json()["detail"]
    assert "access_token" in env.login("dev@acme", PW)


def test_wrong_codes_count_towards_the_login_throttle(shared: tuple[Env, Database]) -> None:
    env, _db = shared
    c = env.client
    _, ta = _tenant_with_admin(env, env.headers(), "bravo")
    ops_id = _user(env, ta, "ops")
    ops = env.headers("ops@bravo", PW)
    app, _ = _enrol(env, ops)
    statuses = []
    for _ in range(6):  # five failures are free (NOVACRON_LOGIN_ACCOUNT_FAILURES), then a block
        first = c.post("/v1/tokens", json={"username": "ops@bravo", "password": PW})
        if first.status_code == 429:  # blocked: even the right password, before any hashing
            statuses.append(429)
            break
        r = c.post("/v1/tokens/mfa", json={"mfa_token": first.json()["mfa_token"], "code": "999999"})
        statuses.append(r.status_code)
    assert statuses == [401] * 5 + [429], statuses
    # the right code does not get through the block either
    r = c.post("/v1/mfa/verify", json={"code": app.code()}, headers=ops)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    # each refused code is audited with its account, so the tenant's admin sees them
    audit = c.get("/v1/audit", params={"limit": 500}, headers=ta).json()["items"]
    refused = [a for a in audit if a["path"] == "/v1/tokens/mfa" and a["status_code"] == 401]
    assert len(refused) == 5 and {a["actor_id"] for a in refused} == {ops_id}


def test_step_up_guards_sensitive_actions(shared: tuple[Env, Database]) -> None:
    env, db = shared
    c = env.client
    _, ta = _tenant_with_admin(env, env.headers(), "charlie")
    uid = _user(env, ta, "sec")
    app, _ = _enrol(env, env.headers("sec@charlie", PW))
    sec = _bearer(_login(env, "sec@charlie", app.code())["access_token"])
    # the login's code counts as a step-up for five minutes
    assert c.post("/v1/api-keys", json={"name": "fresh"}, headers=sec).status_code == 201
    with db.session() as s:  # six minutes later
        s.execute(
            update(MfaTotp).where(MfaTotp.user_id == uid).values(stepup_at=utcnow() - timedelta(minutes=6))
        )
    for path, body in (("/v1/api-keys", {"name": "late"}), ("/v1/mfa/recovery-codes", {})):
        r = c.post(path, json=body, headers=sec)
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json", r.text
        assert r.json()["title"] == "Step-up required" and "POST /v1/mfa/verify" in r.json()["detail"]
    r = c.post("/v1/mfa/verify", json={"code": app.code()}, headers=sec)
    assert r.status_code == 200 and r.json()["step_up_until"] is not None
    assert c.post("/v1/api-keys", json={"name": "late"}, headers=sec).status_code == 201
    r = c.post("/v1/mfa/recovery-codes", json={}, headers=sec | {"Idempotency-Key": "rc"})
    assert r.status_code == 201 and len(r.json()["recovery_codes"]) == 10
    replay = c.post("/v1/mfa/recovery-codes", json={}, headers=sec | {"Idempotency-Key": "rc"})
    assert replay.status_code == 201 and replay.json()["recovery_codes"] is None
    # a platform admin with a factor is asked too, before deleting a tenant
    admin = env.headers()
    doomed = c.post("/v1/tenants", json={"name": "doomed"}, headers=admin).json()["id"]
    admin_app, _ = _enrol(env, admin)
    with db.session() as s:
        s.execute(update(MfaTotp).values(stepup_at=utcnow() - timedelta(minutes=6)))
    r = c.delete(f"/v1/tenants/{doomed}", headers=admin)
    assert r.status_code == 403 and r.json()["title"] == "Step-up required"
    assert c.post("/v1/mfa/verify", json={"code": admin_app.code()}, headers=admin).status_code == 200
    assert c.delete(f"/v1/tenants/{doomed}", headers=admin).status_code == 204
    # leave the admin without a factor for the other tests
    assert c.post("/v1/mfa/totp/disable", json={"code": admin_app.code()}, headers=admin).status_code == 204


def test_a_tenant_policy_makes_its_users_enrol_and_an_admin_resets_a_factor(
    shared: tuple[Env, Database],
) -> None:
    env, _db = shared
    c = env.client
    tid, ta = _tenant_with_admin(env, env.headers(), "delta")
    uid = _user(env, ta, "eve")
    r = c.put(f"/v1/tenants/{tid}/mfa-policy", json={"require": "sometimes"}, headers=ta)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.require"
    eve = env.headers("eve@delta", PW)
    assert (
        c.put(f"/v1/tenants/{tid}/mfa-policy", json={"require": "everyone"}, headers=eve).status_code == 403
    )
    r = c.put(f"/v1/tenants/{tid}/mfa-policy", json={"require": "everyone"}, headers=ta)
    assert r.status_code == 200 and r.json() == {"tenant_id": tid, "require": "everyone"}
    # eve logs in with her password, but may only enrol
    tokens = env.login("eve@delta", PW)
    eve = _bearer(tokens["access_token"])
    r = c.get("/v1/vms", headers=eve)
    assert r.status_code == 403 and r.json()["title"] == "Second factor required", r.text
    assert c.get("/v1/mfa", headers=eve).json()["required"] is True
    app, _ = _enrol(env, eve)
    # once enrolled, a refreshed token reaches the API
    fresh = c.post("/v1/tokens/refresh", json={"refresh_token": tokens["refresh_token"]}).json()
    assert c.get("/v1/vms", headers=_bearer(fresh["access_token"])).status_code == 200
    # a platform admin resets her factor (a lost phone): audited; she must enrol again
    assert c.delete(f"/v1/users/{uid}/mfa", headers=ta).status_code == 403
    admin = env.headers()
    r = c.delete(f"/v1/users/{uid}/mfa", headers=admin | {"Idempotency-Key": "reset-eve"})
    assert r.status_code == 204
    audit = c.get("/v1/audit", params={"limit": 500}, headers=admin).json()["items"]
    reset = [a for a in audit if a["path"] == f"/v1/users/{uid}/mfa"]
    assert sorted((a["status_code"], a["actor_name"]) for a in reset) == [
        (204, "admin"),
        (403, "delta-admin"),
    ]
    again = env.login("eve@delta", PW)
    assert "access_token" in again
    assert c.get("/v1/vms", headers=_bearer(again["access_token"])).status_code == 403


def test_the_cli_login_asks_for_the_code(
    shared: tuple[Env, Database], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, _db = shared
    _, ta = _tenant_with_admin(env, env.headers(), "echo")
    _user(env, ta, "cli")
    app, _ = _enrol(env, env.headers("cli@echo", PW))
    client = Client(
        "http://testserver", credentials_path=tmp_path / "c.json", transport=env.client._transport
    )
    monkeypatch.setattr(State, "client", lambda _self: client)
    args = ["login", "-u", "cli@echo", "--password-stdin"]
    done = CliRunner().invoke(cli_main.app, args, input=f"{PW}\n{app.code()}\n")
    assert done.exit_code == 0, done.output
    assert "Code from your authenticator app" in done.output and "Logged in" in done.output
    assert client.get("/v1/tokens/current")["username"] == "cli"
    # --otp gives it up front; a wrong one is refused with the server's words
    bad = CliRunner().invoke(cli_main.app, [*args, "--otp", "000000"], input=f"{PW}\n")
    assert bad.exit_code != 0 and "wrong or already used code" in bad.output

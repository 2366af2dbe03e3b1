"""Issue 11, findings 5, 6, 11, 12, 13: what an attacker tried against logins, tokens and the
audit log, now refused. In-process tests run the real app on a temporary SQLite state dir;
the throttle, flood and forwarded-address tests run a real ``novacron-server`` (uvicorn)."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from novacron.db.base import Database
from tests.conftest import Server, destroy_server, in_process_app, make_server

PW = "Correct-Horse-42!"
PW2 = "Another-Horse-43!"
WEAK = ("password1234", "passwordpassword", "123456789012")


class Env:
    def __init__(self, client: TestClient, admin_password: str, db: Database) -> None:
        self.client = client
        self.admin_password = admin_password
        self.db = db

    def login(self, username: str, password: str) -> dict[str, Any]:
        r = self.client.post("/v1/tokens", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def headers(self, username: str = "admin", password: str | None = None) -> dict[str, str]:
        token = self.login(username, password or self.admin_password)["access_token"]
        return {"Authorization": f"Bearer {token}"}

    def tenant(self, name: str) -> tuple[str, dict[str, str]]:
        """A tenant with a tenant-admin ``<name>-admin``: its id and that admin's headers."""
        c, admin = self.client, self.headers()
        tid = c.post("/v1/tenants", json={"name": name}, headers=admin).json()["id"]
        user = {"username": f"{name}-admin", "password": PW, "role": "tenant-admin", "tenant_id": tid}
        assert c.post("/v1/users", json=user, headers=admin).status_code == 201
        return tid, self.headers(f"{name}-admin@{name}", PW)


def _make_env(tmp_path: Path, **overrides: Any) -> Iterator[Env]:
    with in_process_app(tmp_path, **overrides) as (client, password, db):
        yield Env(client, password, db)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    # failures are throttled from the 6th on; these tests fail a few times on purpose
    yield from _make_env(tmp_path, login_account_failures=50, login_source_failures=50)


@pytest.fixture
def strict_env(tmp_path: Path) -> Iterator[Env]:
    yield from _make_env(tmp_path, login_account_failures=2, login_source_failures=50, login_backoff_s=60)


def _whoami(c: TestClient | httpx.Client, token: str) -> int:
    return c.get("/v1/tokens/current", headers={"Authorization": f"Bearer {token}"}).status_code


def _audit(env: Env, headers: dict[str, str], **params: str) -> list[dict[str, Any]]:
    r = env.client.get("/v1/audit", params={"limit": "500", **params}, headers=headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


# -- finding 6: password policy ---------------------------------------------------------------


def test_weak_passwords_refused_wherever_a_password_is_set(env: Env) -> None:
    c = env.client
    admin = env.headers()
    tid, ta = env.tenant("pol")
    for weak in WEAK:
        for who, body in (
            (admin, {"username": "weak-a", "password": weak, "tenant_id": tid}),  # an admin creating
            (ta, {"username": "weak-b", "password": weak}),  # a tenant-admin creating
        ):
            r = c.post("/v1/users", json=body, headers=who)
            assert r.status_code == 422, (weak, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            [error] = r.json()["errors"]
            assert error["field"] == "body.password" and "passphrase" in error["reason"], error
    uid = c.post("/v1/users", json={"username": "good", "password": PW}, headers=ta).json()["id"]
    me = env.headers("good@pol", PW)
    for weak in WEAK:  # changing one's own password, and an admin resetting it
        r = c.post(f"/v1/users/{uid}/password", json={"password": weak, "current_password": PW}, headers=me)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.password", r.text
        r = c.post(f"/v1/users/{uid}/password", json={"password": weak}, headers=admin)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.password", r.text
    good = "lantern violet kettle marsh"
    r = c.post(f"/v1/users/{uid}/password", json={"password": good, "current_password": PW}, headers=me)
    assert r.status_code == 204, r.text
    assert env.login("good@pol", good)["access_token"]


# -- finding 5: the same answer for unknown users and wrong passwords ---------------------------


def test_unknown_user_and_wrong_password_answer_alike(env: Env) -> None:
    c = env.client
    answers: dict[str, set[Any]] = {"admin": set(), "no-such-user": set()}
    times: dict[str, list[float]] = {"admin": [], "no-such-user": []}
    for _ in range(5):  # interleaved, so the machine's load drifts alike for both
        for username in answers:
            t0 = time.perf_counter()
            r = c.post("/v1/tokens", json={"username": username, "password": "wrong-password-1"})
            times[username].append(time.perf_counter() - t0)
            body = r.json()
            body.pop("instance", None)
            answers[username].add(
                (r.status_code, repr(sorted(body.items())), r.headers.get("www-authenticate"))
            )
    assert answers["admin"] == answers["no-such-user"] and len(answers["admin"]) == 1
    assert next(iter(answers["admin"]))[0] == 401
    # both verify one argon2 hash (~0.35 s here): the medians differ by far less than one hash
    medians = {u: statistics.median(t) for u, t in times.items()}
    assert abs(medians["admin"] - medians["no-such-user"]) < 0.5 * max(medians.values()), medians


def test_lone_surrogates_are_a_422_not_a_500(env: Env) -> None:
    c = env.client
    raw = b'{"username": "admin", "password": "\\ud800\\ud800"}'
    r = c.post("/v1/tokens", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.password", r.text
    raw = b'{"username": "\\udfff", "password": "whatever-it-is"}'
    r = c.post("/v1/tokens", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.username", r.text


def test_current_password_guesses_go_through_the_login_throttle(strict_env: Env) -> None:
    """A sibling of finding 5: with a stolen access token, "change my password" checked the
    current password without any throttle: an unlimited guessing oracle."""
    c = strict_env.client
    _, ta = strict_env.tenant("oracle")
    uid = c.post("/v1/users", json={"username": "oracle-user", "password": PW}, headers=ta).json()["id"]
    stolen = strict_env.headers("oracle-user@oracle", PW)
    for guess in ("guess-number-one", "guess-number-two"):
        body = {"password": PW2, "current_password": guess}
        r = c.post(f"/v1/users/{uid}/password", json=body, headers=stolen)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.current_password"
    body = {"password": PW2, "current_password": PW}  # even the right one, now
    r = c.post(f"/v1/users/{uid}/password", json=body, headers=stolen)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 1, r.text
    r = c.post("/v1/tokens", json={"username": "oracle-user", "password": PW, "tenant": "oracle"})
    assert r.status_code == 429  # the same account key as the login


# -- finding 12: what the audit log shows --------------------------------------------------------


def test_tenant_admin_sees_its_users_failed_logins_never_others(env: Env) -> None:
    c = env.client
    tid_a, ta_a = env.tenant("aud-a")
    _, ta_b = env.tenant("aud-b")
    assert (
        c.post("/v1/tokens", json={"username": "aud-a-admin@aud-a", "password": "not-it-at-all"}).status_code
        == 401
    )
    assert (
        c.post("/v1/tokens", json={"username": "aud-b-admin@aud-b", "password": "not-it-either"}).status_code
        == 401
    )
    failed_a = _audit(env, ta_a, action="token.create", outcome="denied")
    assert [r["actor_name"] for r in failed_a] == ["aud-a-admin@aud-a"]
    assert failed_a[0]["tenant_id"] == tid_a and failed_a[0]["source_ip"]
    failed_b = _audit(env, ta_b, action="token.create", outcome="denied")
    assert [r["actor_name"] for r in failed_b] == ["aud-b-admin@aud-b"]


def test_forged_token_get_is_audited_and_a_flood_is_bounded(env: Env) -> None:
    c = env.client
    admin = env.headers()
    claims = {"sub": "user-x", "role": "admin", "iss": "novacron", "jti": "at-x", "iat": 1, "exp": 2**33}
    forged = jwt.encode(claims, "a-symmetric-secret-of-32-bytes!!", algorithm="HS256", headers={"kid": "x"})
    r = c.get("/v1/vms", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    [rec] = _audit(env, admin, action="vm.get")
    assert rec["outcome"] == "denied" and rec["status_code"] == 401 and rec["method"] == "GET"
    assert "unknown or retired key" in rec["detail"] and rec["actor_id"] is None
    # a WebSocket refused for its token is audited too
    with c.websocket_connect("/v1/events/ws", headers={"Authorization": "Bearer not-a-jwt"}) as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 4401
    [rec] = _audit(env, admin, action="event.ws")
    assert rec["method"] == "WS" and rec["outcome"] == "denied" and "well-formed" in rec["detail"]
    # an anonymous flood: 200 refused GETs from one address leave at most 20 records a minute
    for _ in range(200):
        c.get("/v1/projects", headers={"Authorization": "Bearer not-a-jwt"})
    assert len(_audit(env, admin, action="project.get")) <= 20
    # a request without any credential is not a refused credential: not audited
    c.get("/v1/flavors")
    assert _audit(env, admin, action="flavor.get") == []


# -- findings 12 and 13: refresh-token families --------------------------------------------------


def test_refresh_reuse_ends_only_its_family_and_is_audited_with_the_user(env: Env) -> None:
    c = env.client
    tid, ta = env.tenant("fam")
    uid = c.post("/v1/users", json={"username": "fam-user", "password": PW}, headers=ta).json()["id"]
    laptop = env.login("fam-user@fam", PW)
    phone = env.login("fam-user@fam", PW)  # another session of the same user
    r = c.post("/v1/tokens/refresh", json={"refresh_token": laptop["refresh_token"]})
    assert r.status_code == 200
    stolen_copy = laptop["refresh_token"]  # already used: whoever presents it copied it
    r = c.post("/v1/tokens/refresh", json={"refresh_token": stolen_copy})
    assert r.status_code == 401 and "already used" in r.json()["detail"]
    # the laptop's family is over, the phone's session goes on
    assert _whoami(c, laptop["access_token"]) == 401
    assert _whoami(c, phone["access_token"]) == 200
    assert c.post("/v1/tokens/refresh", json={"refresh_token": phone["refresh_token"]}).status_code == 200
    # the reuse is audited with the user it belongs to, in its tenant
    [rec] = _audit(env, ta, action="token.refresh", outcome="denied")
    assert rec["actor_id"] == uid and rec["actor_name"] == "fam-user" and rec["tenant_id"] == tid
    assert "already used" in rec["detail"]
    # and so is every successful refresh (it was recorded without any actor)
    ok = _audit(env, ta, action="token.refresh", outcome="success")
    assert len(ok) == 2 and {r["actor_id"] for r in ok} == {uid}


def test_stale_refresh_token_after_password_change_does_not_end_the_new_session(env: Env) -> None:
    """The issue's scenario: change the password, log in again, replay the pre-change refresh
    token: it used to answer "every session revoked" and kill the new session, every time."""
    c = env.client
    _, ta = env.tenant("stale")
    uid = c.post("/v1/users", json={"username": "stale-user", "password": PW}, headers=ta).json()["id"]
    before = env.login("stale-user@stale", PW)
    body = {"password": PW2, "current_password": PW}
    hdr = {"Authorization": f"Bearer {before['access_token']}"}
    assert c.post(f"/v1/users/{uid}/password", json=body, headers=hdr).status_code == 204
    after = env.login("stale-user@stale", PW2)
    for _ in range(3):  # again and again
        r = c.post("/v1/tokens/refresh", json={"refresh_token": before["refresh_token"]})
        assert r.status_code == 401 and "Unknown refresh token" in r.json()["detail"]
    assert _whoami(c, after["access_token"]) == 200
    r = c.post("/v1/tokens/refresh", json={"refresh_token": after["refresh_token"]})
    assert r.status_code == 200, r.text
    # the pre-change session itself is over
    assert c.get("/v1/tokens/current", headers=hdr).status_code == 401


# -- real servers: throttling, the flood, forwarded addresses ------------------------------------


@pytest.fixture
def start() -> Iterator[Any]:
    """Start a real novacron-server (no embedded agent, no agent listener) with extra settings."""
    started: list[Server] = []

    def run(**env: str) -> Server:
        srv = make_server(NOVACRON_EMBEDDED_AGENT="0", NOVACRON_AGENT_PORT="0", **env)
        started.append(srv)
        srv.start()
        return srv

    yield run
    for srv in started:
        destroy_server(srv)


def _login(srv: Server, username: str, password: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{srv.url}/v1/tokens", json={"username": username, "password": password}, headers=headers, timeout=30
    )


def _tenant_user(srv: Server, admin: httpx.Client, username: str) -> str:
    tid = admin.post("/v1/tenants", json={"name": f"t-{username}"}).json()["id"]
    r = admin.post("/v1/users", json={"username": username, "password": PW, "tenant_id": tid})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _retry_after(r: httpx.Response) -> int:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "Too many failed logins" in r.json()["detail"]
    return int(r.headers["retry-after"])


def test_account_throttle_backs_off_exponentially_even_for_the_right_password(start: Any) -> None:
    srv = start(
        NOVACRON_LOGIN_ACCOUNT_FAILURES="3",
        NOVACRON_LOGIN_SOURCE_FAILURES="1000",
        NOVACRON_LOGIN_BACKOFF_S="2",
        NOVACRON_LOGIN_BACKOFF_MAX_S="16",
    )
    with srv.client() as admin:
        uid = _tenant_user(srv, admin, "victim")
        for username in ("victim@t-victim", "ghost@t-victim"):  # a real account and an unknown one: alike
            for _ in range(3):
                assert _login(srv, username, "wrong-guess-123").status_code == 401
            # the 4th try is refused before its password is even checked: the right one too
            assert _retry_after(_login(srv, username, PW)) == 2
        time.sleep(2.1)
        assert _login(srv, "victim@t-victim", "wrong-guess-456").status_code == 401  # one more try, and...
        wait = _retry_after(_login(srv, "victim@t-victim", PW))
        assert wait == 4  # ...the wait doubles
        time.sleep(wait + 0.1)
        assert _login(srv, "victim@t-victim", PW).status_code == 200  # after the backoff, the user gets in
        # the lockout is a security event and an audit record, in the user's tenant
        lockouts = admin.get("/v1/audit", params={"action": "account.lockout"}).json()["items"]
        assert {r["actor_name"] for r in lockouts} == {"victim@t-victim", "ghost@t-victim"}
        [mine] = [r for r in lockouts if r["actor_name"] == "victim@t-victim"]
        assert mine["actor_id"] == uid and mine["tenant_id"] and mine["source_ip"] == "127.0.0.1"
        events = admin.get("/v1/events", params={"types": "login.locked_out"}).json()["items"]
        assert {e["data"]["username"] for e in events} == {"victim@t-victim", "ghost@t-victim"}


def test_a_parallel_burst_gets_no_more_guesses_than_the_throttle_allows(start: Any) -> None:
    """The throttle counted a failure only after its hash, so 40 wrong passwords sent at once were
    all checked before the first was counted: 33 hashed (the pool's limit) where 5 were allowed,
    and a burst again after every backoff. Now past the free tries one guess at a time."""
    import asyncio

    srv = start(
        NOVACRON_LOGIN_ACCOUNT_FAILURES="5",
        NOVACRON_LOGIN_SOURCE_FAILURES="1000",
        NOVACRON_LOGIN_BACKOFF_S="1",
        NOVACRON_LOGIN_BACKOFF_MAX_S="4",
    )

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(base_url=srv.url, timeout=60, limits=limits) as c:
            body = [{"username": "admin", "password": f"wrong-{i}"} for i in range(40)]
            answers = await asyncio.gather(*(c.post("/v1/tokens", json=b) for b in body))
            return [r.status_code for r in answers]

    codes = asyncio.run(burst())
    assert codes.count(401) == 5 and codes.count(429) == 35, codes
    time.sleep(1.1)  # the first backoff is over: one more guess, not another burst
    codes = asyncio.run(burst())
    assert codes.count(401) == 1, codes


def test_source_throttle_and_forged_forwarded_for(start: Any) -> None:
    srv = start(
        NOVACRON_LOGIN_ACCOUNT_FAILURES="1000",
        NOVACRON_LOGIN_SOURCE_FAILURES="4",
        NOVACRON_LOGIN_BACKOFF_S="1",
    )
    password = srv.admin_password
    # four users guessed from one address, each claiming another address: the claims are ignored
    for i in range(4):
        r = _login(srv, f"user-{i}", "wrong-guess-123", **{"X-Forwarded-For": f"203.0.113.{i}"})
        assert r.status_code == 401
    assert _retry_after(_login(srv, "admin", password, **{"X-Forwarded-For": "198.51.100.7"})) == 1
    time.sleep(1.1)
    token = _login(srv, "admin", password).json()["access_token"]
    with srv.client(token) as admin:
        # the audit log records the real peer, not the forged header (finding 11)
        r = admin.post(
            "/v1/tenants",
            json={"name": "forged"},
            headers={"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9"},
        )
        assert r.status_code == 201
        [rec] = admin.get("/v1/audit", params={"action": "tenant.create"}).json()["items"]
        assert rec["source_ip"] == "127.0.0.1"
        assert admin.get("/v1/audit", params={"action": "source.lockout"}).json()["items"]


def test_forwarded_for_believed_from_a_configured_proxy_only(start: Any) -> None:
    srv = start(NOVACRON_TRUSTED_PROXIES="127.0.0.1/32")
    with srv.client() as admin:
        # the proxy (127.0.0.1) appended the client it saw; what the client wrote left of it is not
        # believed
        r = admin.post(
            "/v1/tenants", json={"name": "proxied"}, headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}
        )
        assert r.status_code == 201
        [rec] = admin.get("/v1/audit", params={"action": "tenant.create"}).json()["items"]
        assert rec["source_ip"] == "203.0.113.9"


def test_wrong_password_flood_does_not_stall_other_users(start: Any) -> None:
    """Finding 5: a wrong-password flood over 16 connections used to stall other users' requests
    for up to 33 s. Throttling is out of the way here (a distributed attacker): the bounded
    hashing pool alone must keep the platform answering. Figures: bench/bench_login_flood.py."""
    srv = start(NOVACRON_LOGIN_ACCOUNT_FAILURES="100000", NOVACRON_LOGIN_SOURCE_FAILURES="100000")
    stop = threading.Event()
    answers: list[int] = []

    def attacker() -> None:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            while not stop.is_set():
                r = c.post("/v1/tokens", json={"username": "admin", "password": "wrong-guess-123"})
                answers.append(r.status_code)

    with srv.client() as user:
        project = user.get("/v1/projects", params={"name": "default"}).json()["items"][0]["id"]
        threads = [threading.Thread(target=attacker, daemon=True) for _ in range(16)]
        for t in threads:
            t.start()
        time.sleep(1.0)  # let the flood build its queue
        latencies = []
        deadline = time.monotonic() + 6.0
        try:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                assert user.get(f"/v1/projects/{project}").status_code == 200
                r = user.patch(f"/v1/projects/{project}", json={"description": f"at {t0}"})
                assert r.status_code == 200, r.text
                latencies.append(time.perf_counter() - t0)
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
    assert answers and set(answers) <= {401, 503}, set(answers)
    median, worst = statistics.median(latencies) * 1000, max(latencies) * 1000
    print(f"GET+PATCH during the flood: median {median:.0f} ms, max {worst:.0f} ms, n={len(latencies)}")
    assert max(latencies) < 1.5, latencies

"""Single sign-on against a real OpenID provider (panva's ``oidc-provider``, ``tests/services/oidc``):
the dashboard's sign-in through Chromium (authorization code + PKCE), the CLI's device sign-in
(RFC 8628, its user-code step done in Chromium), users created just in time with the role of their
groups, a user disabled at the provider losing access at the next refresh, and a bad provider
configuration refused by field. One provider process and one server for the module; the provider
listens on 127.0.0.2, opened by NOVACRON_EGRESS_ALLOW (the egress guard checks every request).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, destroy_server, make_server
from tests.e2e.browser import Browser, page_problems
from tests.e2e.conftest import DESKTOP, PASSWORD
from tests.services.oidc import CLIENT_ID, CLIENT_SECRET, OidcProvider, oidc_provider

TENANT = "acme"


@dataclass
class World:
    server: Server
    provider: OidcProvider
    #: a tenant-admin of TENANT
    admin: httpx.Client
    #: the platform administrator
    root: httpx.Client


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    srv = make_server(
        NOVACRON_EGRESS_ALLOW="127.0.0.2/32",
        NOVACRON_COMPUTE_DRIVER="simulated",
        NOVACRON_NETWORK_BACKEND="none",
    )
    log = tmp_path_factory.mktemp("oidc") / "oidc-provider.log"
    with oidc_provider(f"{srv.url}/v1/sso/callback", log) as provider:
        srv.start(timeout_s=120)
        try:
            root = srv.client()
            tenant = root.post("/v1/tenants", json={"name": TENANT}).json()
            body = {"username": "boss", "password": PASSWORD, "role": "tenant-admin"}
            r = root.post("/v1/users", json={**body, "tenant_id": tenant["id"]})
            assert r.status_code == 201, r.text
            token = httpx.post(
                f"{srv.url}/v1/tokens",
                json={"username": "boss", "password": body["password"], "tenant": TENANT},
            ).json()["access_token"]
            with httpx.Client(
                base_url=srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as admin:
                yield World(srv, provider, admin, root)
            root.close()
        finally:
            destroy_server(srv)


def _provider_body(world: World, **changes: Any) -> dict[str, Any]:
    body = {
        "name": "corp",
        "display_name": "Corp SSO",
        "issuer": world.provider.issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scopes": ["openid", "profile", "email", "groups"],
        "group_roles": [{"group": "ops-admins", "role": "tenant-admin"}, {"group": "devs", "role": "member"}],
        "default_role": "viewer",
    }
    return {**body, **changes}


@pytest.fixture(scope="module")
def corp(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The provider, added by the tenant-admin with the CLI."""
    config = tmp_path_factory.mktemp("boss") / "credentials.json"
    login = ["login", "--server", world.server.url, "-u", "boss", "-t", TENANT, "--password-stdin"]
    _run(config, login, PASSWORD)
    create = [
        "identity-provider",
        "create",
        "corp",
        "--issuer",
        world.provider.issuer,
        "--client-id",
        CLIENT_ID,
    ]
    create += ["--client-secret-stdin", "--display-name", "Corp SSO", "--default-role", "viewer"]
    create += ["--scope", "openid", "--scope", "profile", "--scope", "email", "--scope", "groups"]
    create += ["--group-role", "ops-admins=tenant-admin", "--group-role", "devs=member"]
    _run(config, create, CLIENT_SECRET)
    listed = _run(config, ["identity-provider", "list"], "")
    assert "corp" in listed and "ops-admins=tenant-admin" in listed, listed
    provider = world.admin.get("/v1/identity-providers/corp").json()
    assert "client_secret" not in provider and provider["client_secret_set"] is True
    return dict(provider)


def _cli(config: Path, *args: str, stdin: int = subprocess.PIPE) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVACRON_")}
    env.update(NOVACRON_CONFIG=str(config), COLUMNS="200")
    argv = [sys.executable, "-m", "novacron.cli.main", *args]
    return subprocess.Popen(
        argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _run(config: Path, args: list[str], stdin: str) -> str:
    p = _cli(config, *args)
    out, err = p.communicate(stdin + "\n", timeout=60)
    assert p.returncode == 0, f"novacron {' '.join(args)}: {out}{err}"
    return out


def _field(r: httpx.Response) -> str:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return str(r.json()["errors"][0]["field"]).removeprefix("body.")


def test_bad_provider_config_refused_by_field(world: World, corp: dict[str, Any]) -> None:
    create = world.admin.post
    # 127.0.0.1 is the platform's own address: the egress guard refuses it, named on the issuer
    r = create("/v1/identity-providers", json=_provider_body(world, name="own", issuer="http://127.0.0.1:1"))
    assert _field(r) == "issuer" and "platform" in r.text
    wrong_issuer = world.provider.issuer + "/elsewhere"  # no discovery document there
    assert (
        _field(create("/v1/identity-providers", json=_provider_body(world, name="x", issuer=wrong_issuer)))
        == "issuer"
    )
    no_openid = _provider_body(world, name="x", scopes=["profile"])
    assert _field(create("/v1/identity-providers", json=no_openid)) == "scopes"
    platform_role = _provider_body(world, name="x", group_roles=[{"group": "g", "role": "admin"}])
    assert _field(create("/v1/identity-providers", json=platform_role)) == "group_roles[0].role"
    entra = _provider_body(world, name="x", preset="entra", issuer="https://login.example.com/v2.0")
    assert _field(create("/v1/identity-providers", json=entra)) == "issuer"
    assert [p["name"] for p in world.admin.get("/v1/identity-providers").json()["items"]] == ["corp"]
    # a create retried with its Idempotency-Key is answered again, not done twice
    key = {"Idempotency-Key": "spare-1"}
    first = create("/v1/identity-providers", json=_provider_body(world, name="spare"), headers=key)
    again = create("/v1/identity-providers", json=_provider_body(world, name="spare"), headers=key)
    assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
    assert world.admin.delete("/v1/identity-providers/spare").status_code == 204
    # audited, refusals included, in the tenant's own audit log
    audit = world.admin.get("/v1/audit", params={"limit": 100}).json()["items"]
    done = {(r["method"], r["path"], r["status_code"]) for r in audit if "identity-providers" in r["path"]}
    assert ("POST", "/v1/identity-providers", 201) in done and ("POST", "/v1/identity-providers", 422) in done
    assert ("DELETE", "/v1/identity-providers/spare", 204) in done


def _sign_in_at_provider(page: Any, account: str) -> None:
    """oidc-provider's development login form: any password."""
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", account)
    page.fill("input[name=password]", "whatever")
    page.click("button[type=submit]")


def test_dashboard_sign_in_creates_user_with_group_role(
    world: World, corp: dict[str, Any], browser: Any
) -> None:
    b = Browser(browser, world.server.url, DESKTOP)
    try:
        b.page.goto(f"{world.server.url}/")
        b.page.fill("#tenant", TENANT)
        b.page.dispatch_event("#tenant", "change")
        b.page.wait_for_selector("text=Sign in with Corp SSO")
        problems = page_problems(b, "/", "sso-sign-in", "desktop", "light")
        b.page.click("text=Sign in with Corp SSO")
        _sign_in_at_provider(b.page, "alice")
        b.page.wait_for_selector("[data-testid=who]", state="attached")
        who = b.page.text_content("[data-testid=who]") or ""
        assert "alice" in who and "tenant-admin" in who and TENANT in who, who
        b.go("/identity-providers")  # alice (tenant-admin) sees the page with the provider
        assert b.page.locator("[data-provider=corp]").count() == 1
        assert "ops-admins → tenant-admin" in (b.page.text_content("[data-provider=corp]") or "")
        problems += page_problems(b, "/identity-providers", "identity-providers", "desktop", "light")
        assert problems == []
        # sign out: the session ends here, then at the provider (RP-initiated logout)
        b.page.click("text=Sign out")
        b.page.wait_for_url(f"{world.provider.issuer}/session/end**")
        # a callback this browser did not begin (login CSRF): back at the sign-in page, saying why
        b.page.goto(f"{world.server.url}/v1/sso/callback?state=forged&code=x")
        b.page.wait_for_selector("#login-error >> text=Single sign-on failed")
        assert "not begun in this browser" in (b.page.text_content("#login-error") or "")
        assert b.errors == []
    finally:
        b.context.close()
    users = {u["username"]: u for u in world.admin.get("/v1/users").json()["items"]}
    assert users["alice"]["role"] == "tenant-admin"
    events = world.admin.get("/v1/events", params={"types": "user.signed_on", "tail": True}).json()["items"]
    signed_on = [e for e in events if e["resource_id"] == users["alice"]["id"]]
    assert signed_on and signed_on[0]["data"]["identity_provider"] == "corp"


def test_cli_device_sign_in_then_disabled_user_loses_access(
    world: World, corp: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    config = tmp_path / "credentials.json"
    cli = _cli(
        config, "login", "--server", world.server.url, "--sso", "--tenant", TENANT, "--provider", "corp"
    )
    assert cli.stdout is not None
    line = cli.stdout.readline()
    url = re.search(r"open (\S+) and enter the code (\S+)", line)
    assert url, line
    b = Browser(browser, world.server.url, DESKTOP)
    try:
        b.page.goto(url.group(1))  # verification_uri_complete: the code is filled in
        b.page.click("button[type=submit]")  # "Continue": confirm the code
        _sign_in_at_provider(b.page, "bob")
        b.page.wait_for_selector("text=/Sign-in Success|signed in/i")
    finally:
        b.context.close()
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 0, f"{line}{out}{err}"
    import json

    creds = json.loads(config.read_text())
    me = httpx.get(
        f"{world.server.url}/v1/tokens/current", headers={"Authorization": f"Bearer {creds['access_token']}"}
    )
    assert me.json()["username"] == "bob" and me.json()["role"] == "member"  # group devs -> member
    # the client secret and bob's provider tokens are sealed at rest, and re-wrapped by a KEK rotation
    state = world.server.state_dir
    stored = b"".join(
        p.read_bytes() for p in (state / "novacron.db", state / "novacron.db-wal") if p.exists()
    )
    assert CLIENT_SECRET.encode() not in stored
    assert world.root.post("/v1/key-encryption-keys/rotate", json={}).json()["retired"]
    # a refresh re-checks bob at the provider (secret and tokens opened under the new KEK): still fine
    r = httpx.post(f"{world.server.url}/v1/tokens/refresh", json={"refresh_token": creds["refresh_token"]})
    assert r.status_code == 200, r.text
    refresh = r.json()["refresh_token"]
    world.provider.disable("bob")
    r = httpx.post(f"{world.server.url}/v1/tokens/refresh", json={"refresh_token": refresh})
    assert r.status_code == 401 and "identity provider" in r.json()["detail"], r.text
    # the session ended: its refresh token is gone, not merely refused once
    r = httpx.post(f"{world.server.url}/v1/tokens/refresh", json={"refresh_token": refresh})
    assert r.status_code == 401

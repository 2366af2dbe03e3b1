"""The dashboard's login session in a cookie (issue 17 item 13), in-process: a real app on SQLite.

The refresh token is an HttpOnly, Secure, SameSite=Strict cookie for /v1/tokens/refresh only; the
cookie refresh needs the custom header and a same-site origin; the JSON body keeps working."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import in_process_app

SAME_SITE = {"X-Requested-With": "novacron-dashboard"}
PATH = "/v1/tokens/refresh"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    with in_process_app(tmp_path) as (client, password, _db):
        yield client, password


def _cookie_of(set_cookie: str) -> str:
    name_value = set_cookie.split(";", 1)[0]
    assert name_value.startswith("novacron_refresh=")
    return name_value.split("=", 1)[1]


def _login(client: TestClient, password: str) -> tuple[str, str]:
    r = client.post("/v1/tokens", json={"username": "admin", "password": password}, headers=SAME_SITE)
    assert r.status_code == 200, r.text
    return r.json()["access_token"], _cookie_of(r.headers["set-cookie"])


def _refresh(client: TestClient, cookie: str, **headers: str) -> httpx.Response:
    client.cookies.clear()  # the test client keeps cookies: each request names its own
    resp: httpx.Response = client.post(PATH, headers={"Cookie": f"novacron_refresh={cookie}", **headers})
    return resp


def test_login_sets_the_exact_cookie_and_no_token_in_the_body(app: tuple[TestClient, str]) -> None:
    client, password = app
    r = client.post("/v1/tokens", json={"username": "admin", "password": password}, headers=SAME_SITE)
    assert r.status_code == 200, r.text
    assert r.json()["refresh_token"] is None and r.json()["access_token"]
    token = _cookie_of(r.headers["set-cookie"])
    assert token.startswith("ncr_")
    assert r.headers["set-cookie"] == (
        f"novacron_refresh={token}; HttpOnly; Max-Age=604800; Path=/v1/tokens/refresh; "
        "SameSite=strict; Secure"
    )
    # the CLI and API clients, without the header: the token in the body, no cookie
    r = client.post("/v1/tokens", json={"username": "admin", "password": password})
    assert r.json()["refresh_token"] and "set-cookie" not in r.headers


def test_cookie_refresh_works_once_rotates_and_reuse_ends_the_family(app: tuple[TestClient, str]) -> None:
    client, password = app
    _, first = _login(client, password)
    r = _refresh(client, first, **SAME_SITE, Origin="http://testserver", **{"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 200, r.text
    second = _cookie_of(r.headers["set-cookie"])
    assert second != first and r.json()["refresh_token"] is None
    access = r.json()["access_token"]
    assert client.get("/v1/tokens/current", headers={"Authorization": f"Bearer {access}"}).status_code == 200
    # the rotated cookie presented again (a stolen copy): refused, and the whole login session ends
    r = _refresh(client, first, **SAME_SITE)
    assert r.status_code == 401 and "already used" in r.json()["detail"]
    r = _refresh(client, second, **SAME_SITE)
    assert r.status_code == 401
    assert client.get("/v1/tokens/current", headers={"Authorization": f"Bearer {access}"}).status_code == 401


def test_cross_site_cookie_refresh_is_refused(app: tuple[TestClient, str]) -> None:
    client, password = app
    _, cookie = _login(client, password)
    r = _refresh(client, cookie)  # no custom header: a form post or an <img> from anywhere
    assert r.status_code == 403 and "X-Requested-With" in r.json()["detail"]
    r = _refresh(client, cookie, **SAME_SITE, Origin="https://evil.example")
    assert r.status_code == 403 and "evil.example" in r.json()["detail"]
    r = _refresh(client, cookie, **SAME_SITE, **{"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    # none of the refused tries spent the token
    r = _refresh(client, cookie, **SAME_SITE)
    assert r.status_code == 200, r.text
    r = _refresh(client, "", **SAME_SITE)
    assert r.status_code == 401


def test_logout_clears_the_cookie_and_ends_the_session(app: tuple[TestClient, str]) -> None:
    client, password = app
    access, cookie = _login(client, password)
    r = client.delete("/v1/tokens/current", headers={"Authorization": f"Bearer {access}"})
    assert r.status_code == 204
    assert r.headers["set-cookie"].startswith('novacron_refresh=""; expires=')
    assert "Max-Age=0; Path=/v1/tokens/refresh; SameSite=strict; Secure" in r.headers["set-cookie"]
    r = _refresh(client, cookie, **SAME_SITE)
    assert r.status_code == 401

"""CLI client logic against an httpx MockTransport: name resolution, token refresh, credentials file."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from novacron.cli.client import ApiError, Client, CliError, ConnectError, Credentials, resolve

VMS = [
    {"id": "vm-aaa", "name": "web", "project_id": "project-1"},
    {"id": "vm-bbb", "name": "db", "project_id": "project-1"},
    {"id": "vm-ccc", "name": "db", "project_id": "project-2"},
]


def not_found(path: str) -> httpx.Response:
    return httpx.Response(
        404,
        json={
            "type": "about:blank",
            "title": "Not Found",
            "status": 404,
            "detail": "No vm exists",
            "instance": path,
        },
        headers={"content-type": "application/problem+json"},
    )


def ambiguous(path: str, ids: list[str]) -> httpx.Response:
    return httpx.Response(
        409,
        json={
            "type": "about:blank",
            "title": "Ambiguous name",
            "status": 409,
            "detail": f"More than one vm exists with the name 'db' ({', '.join(ids)}); use an id.",
            "instance": path,
            "errors": [{"field": "path.vm_id", "reason": f"2 vms are named 'db': {', '.join(ids)}"}],
            "candidates": ids,
        },
        headers={"content-type": "application/problem+json"},
    )


def vm_api(request: httpx.Request) -> httpx.Response:
    """The server's resolver: by id, else by a name only one VM has (a 409 listing them otherwise)."""
    ref = request.url.path.rsplit("/", 1)[-1]
    found = [v for v in VMS if v["id"] == ref] or [v for v in VMS if v["name"] == ref]
    if len(found) > 1:
        return ambiguous(request.url.path, [v["id"] for v in found])
    if found:
        return httpx.Response(200, json=found[0])
    return not_found(request.url.path)


def make_client(tmp_path: Path, handler: Callable[[httpx.Request], httpx.Response], **creds: str) -> Client:
    path = tmp_path / "credentials.json"
    if creds:
        Credentials(creds["server"], "admin", creds["access_token"], creds["refresh_token"]).save(path)
    return Client("http://api.test", credentials_path=path, transport=httpx.MockTransport(handler))


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NOVACRON_URL", "NOVACRON_TOKEN", "NOVACRON_CONFIG"):
        monkeypatch.delenv(var, raising=False)


def test_resolve_by_name_then_id(tmp_path: Path) -> None:
    client = make_client(tmp_path, vm_api)
    assert resolve(client, "vms", "web", "vm")["id"] == "vm-aaa"
    assert resolve(client, "vms", "vm-bbb", "vm")["name"] == "db"


def test_resolve_ambiguous_and_missing(tmp_path: Path) -> None:
    client = make_client(tmp_path, vm_api)
    with pytest.raises(CliError) as ambiguous:
        resolve(client, "vms", "db", "vm")
    assert "2 vms are named 'db'" in ambiguous.value.message and "vm-ccc" in ambiguous.value.message
    assert not isinstance(ambiguous.value, ApiError) and "id" in ambiguous.value.hint
    with pytest.raises(CliError) as missing:
        resolve(client, "vms", "nope", "vm")
    assert not isinstance(missing.value, ApiError)
    assert missing.value.message == "no vm named 'nope' (and no vm with that id)"
    assert missing.value.exit_code == 1


def test_refresh_on_401_and_retry_once(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("authorization", "")))
        if request.url.path == "/v1/tokens/refresh":
            assert json.loads(request.content) == {"refresh_token": "r1"}
            return httpx.Response(
                200,
                json={"access_token": "a2", "refresh_token": "r2", "token_type": "bearer", "expires_in": 900},
            )
        if request.headers.get("authorization") != "Bearer a2":
            return httpx.Response(401, json={"title": "Unauthorized", "status": 401, "detail": "expired"})
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    client = make_client(tmp_path, handler, server="http://api.test", access_token="a1", refresh_token="r1")
    assert client.get("/v1/vms") == {"items": [], "next_cursor": None}
    assert seen == [("/v1/vms", "Bearer a1"), ("/v1/tokens/refresh", ""), ("/v1/vms", "Bearer a2")]
    stored = Credentials.load(tmp_path / "credentials.json")
    assert (stored.access_token, stored.refresh_token) == ("a2", "r2")


def test_refused_refresh_gives_login_hint(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"title": "Unauthorized", "status": 401, "detail": "token expired"})

    client = make_client(tmp_path, handler, server="http://api.test", access_token="a1", refresh_token="r1")
    with pytest.raises(ApiError) as exc:
        client.get("/v1/vms")
    assert exc.value.status == 401 and "novacron login" in exc.value.hint


def test_env_token_overrides_and_is_never_refreshed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOVACRON_TOKEN", "envtok")
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        assert request.headers["authorization"] == "Bearer envtok"
        return httpx.Response(401, json={"title": "Unauthorized", "status": 401, "detail": "bad"})

    client = make_client(tmp_path, handler, server="http://api.test", access_token="a1", refresh_token="r1")
    with pytest.raises(ApiError):
        client.get("/v1/vms")
    assert paths == ["/v1/vms"]


def test_tokens_of_another_server_are_not_sent(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers
        return httpx.Response(200, json={})

    client = make_client(tmp_path, handler, server="http://other:8080", access_token="a1", refresh_token="r1")
    client.get("/v1/flavors")


def test_connection_error_is_exit_2_with_hint(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    client = make_client(tmp_path, handler)
    with pytest.raises(ConnectError) as exc:
        client.get("/v1/vms")
    assert exc.value.exit_code == 2 and "novacron-server" in exc.value.hint


def test_list_all_follows_cursors(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("cursor") == "c1":
            return httpx.Response(200, json={"items": [{"id": 2}], "next_cursor": None})
        return httpx.Response(200, json={"items": [{"id": 1}], "next_cursor": "c1"})

    client = make_client(tmp_path, handler)
    assert client.list_all("/v1/vms") == {"items": [{"id": 1}, {"id": 2}], "next_cursor": None}
    assert client.list_all("/v1/vms", limit=1) == {"items": [{"id": 1}], "next_cursor": "c1"}


def test_credentials_file_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "credentials.json"
    Credentials(server="http://x", username="admin", access_token="a", refresh_token="r").save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Credentials.load(path).refresh_token == "r"
    path.write_text("{not json")
    with pytest.raises(CliError):
        Credentials.load(path)


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("localhost", True),
        ("LocalHost", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("localhost.example", False),
    ],
)
def test_one_loopback_test_for_server_and_cli(host: str, local: bool) -> None:
    """The server (plain HTTP only on loopback) and the CLI (the local node's CA) ask the same."""
    from novacron import server
    from novacron.cli import client
    from novacron.config import is_loopback

    assert is_loopback(host) is local
    # the test is about these very re-exports, which mypy sees as private
    assert server.is_loopback is client.is_loopback is is_loopback  # type: ignore[attr-defined]


def test_an_ambiguous_name_in_a_body_is_printed_with_the_ids(tmp_path: Path) -> None:
    from novacron.cli import output

    client = make_client(tmp_path, lambda request: ambiguous(request.url.path, ["vm-bbb", "vm-ccc"]))
    with pytest.raises(ApiError) as refused:
        client.post("/v1/backups", {"vm": "db"})
    text = output.format_problem(refused.value)
    assert "Ambiguous name (409)" in text and "vm-bbb, vm-ccc" in text
    assert "Give the id of the one you mean" in refused.value.hint

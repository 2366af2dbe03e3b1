"""What the dashboard relies on from the server: the shell and its CSP, the vendor whitelist, roles,
and the newest events, each scoped like the rest of the API."""

from __future__ import annotations

import httpx

from tests.conftest import Server, require
from tests.e2e.conftest import VENDOR
from tests.integration.shared_server import server

__all__ = ["server"]  # the module-scoped server its tests share


def test_shell_vendor_files_and_csp(server: Server) -> None:
    r = httpx.get(f"{server.url}/")
    assert r.status_code == 200 and '<script type="module" src="/static/js/main.js">' in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert httpx.get(f"{server.url}/static/js/registry.js").text.startswith("// The page registry")
    require((VENDOR / "@xterm" / "xterm").exists(), "dashboard vendor files missing: run scripts/setup.sh")
    js = httpx.get(f"{server.url}/vendor/xterm.mjs")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "Terminal" in js.text
    # only the whitelisted files: nothing else of node_modules, no path tricks
    for name in ("axe.min.js", "..%2F..%2Fpackage.json", "package.json"):
        assert httpx.get(f"{server.url}/vendor/{name}").status_code == 404
    # noVNC's ES modules, by relative path under /vendor/novnc/: its core and vendor trees, .js only
    rfb = httpx.get(f"{server.url}/vendor/novnc/core/rfb.js")
    assert rfb.status_code == 200 and rfb.headers["content-type"].startswith("text/javascript")
    assert "export default class RFB" in rfb.text
    assert httpx.get(f"{server.url}/vendor/novnc/vendor/pako/lib/zlib/inflate.js").status_code == 200
    for rel in ("package.json", "core/..%2F..%2F..%2Faxe-core%2Faxe.min.js", "LICENSE.txt", "docs/API.md"):
        assert httpx.get(f"{server.url}/vendor/novnc/{rel}").status_code == 404


def test_roles_and_newest_events(server: Server) -> None:
    assert httpx.get(f"{server.url}/v1/roles").status_code == 401
    with server.client() as admin:
        roles = {r["name"]: r["permissions"] for r in admin.get("/v1/roles").json()}
        assert "vm:create" in roles["member"] and "vm:create" not in roles["viewer"]
        for i in range(3):
            assert admin.post("/v1/tenants", json={"name": f"t{i}"}).status_code == 201
        newest = admin.get("/v1/events", params={"tail": "true", "limit": 2}).json()["items"]
        everything = admin.get("/v1/events", params={"limit": 1000}).json()["items"]
        assert [e["seq"] for e in newest] == [e["seq"] for e in everything[-2:]]
        tenant = admin.get("/v1/tenants", params={"name": "t0"}).json()["items"][0]
        admin.post("/v1/projects", json={"name": "main", "tenant_id": tenant["id"]}).raise_for_status()
        r = admin.post(
            "/v1/users",
            json={"username": "t0-user", "password": "correct-horse-battery-9", "tenant_id": tenant["id"]},
        )
        assert r.status_code == 201, r.text
    # a tenant's newest events are its own: the platform's tenant and host events are not among them
    with server.client(server.token("t0-user", "correct-horse-battery-9", "t0")) as user:
        assert user.post("/v1/images", json={"name": "t0-image"}).status_code == 201
        tail = user.get("/v1/events", params={"tail": "true", "limit": 50}).json()["items"]
        assert [e["type"] for e in tail] == ["image.created"]
        assert tail[0]["tenant_id"] == tenant["id"]

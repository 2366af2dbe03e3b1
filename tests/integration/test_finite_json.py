"""NaN and Infinity in request bodies are a 422 naming the field, on every route (issue 11, a
residual of finding 13): Python's JSON parser takes them, and a VM's placement hints or a
quota stored with one made every later answer about it a 500. In-process app on a temporary
SQLite state dir, bodies sent as raw bytes (no client library writes NaN on purpose)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def admin(in_process_admin: TestClient) -> TestClient:
    return in_process_admin


def _send(c: TestClient, method: str, path: str, raw: str) -> tuple[int, list[dict[str, str]]]:
    r = c.request(method, path, content=raw.encode(), headers={"Content-Type": "application/json"})
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return r.status_code, r.json().get("errors") or []


def test_nan_and_infinity_are_refused_naming_the_field(admin: TestClient) -> None:
    tenant = admin.get("/v1/tenants", params={"name": "default"}).json()["items"][0]["id"]
    cases = [
        # a backup target's free-form config (dict[str, Any]: nothing to check a float there)
        (
            "POST",
            "/v1/backup-targets",
            '{"name": "t", "type": "local", "config": {"path": "/x", "n": [1, Infinity]}}',
            "body.config.n.1",
        ),
        # a policy rule's parameters (checked by range too, now named the same way)
        (
            "POST",
            "/v1/policy-rules",
            '{"name": "r", "kind": "threshold", "params": {"warn_pct": NaN}}',
            "body.params.warn_pct",
        ),
        # quota limits and a plain float field: refused by their types too, now named the same way
        ("PATCH", f"/v1/quota/nodes/tenant:{tenant}", '{"limits": {"vms": Infinity}}', "body.limits.vms"),
        ("POST", "/v1/vms/vm-x/actions/stop", '{"timeout_s": -Infinity}', "body.timeout_s"),
    ]
    for method, path, raw, field in cases:
        status, errors = _send(admin, method, path, raw)
        assert status == 422 and errors[0]["field"] == field, (path, status, errors)
        assert "finite" in errors[0]["reason"]


def test_the_words_nan_and_infinity_inside_strings_are_fine(admin: TestClient) -> None:
    r = admin.post(
        "/v1/tenants",
        content=b'{"name": "nan-infinity", "description": "NaN and Infinity, as text"}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["description"] == "NaN and Infinity, as text"

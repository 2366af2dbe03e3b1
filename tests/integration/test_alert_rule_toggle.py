"""PATCH /v1/alert-rules/{id}: a rule turned off and on again, by its tenant only, under If-Match,
audited and published; a disabled rule leaves the engines' rule file (checked on a real node by
tests/e2e/test_dashboard_alerts.py, where a firing alert goes away when its rule is disabled)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import in_process_app

PASSWORD = "correct-horse-battery-9"
RULE = {
    "name": "mem-low",
    "kind": "threshold",
    "metric": "novacron_vm_guest_memory_available_bytes",
    "op": "<",
    "value": 100e6,
}


def _tenant_client(admin: TestClient, name: str) -> TestClient:
    tenant_id = admin.post("/v1/tenants", json={"name": name}).json()["id"]
    user = {"username": f"{name}-ops", "password": PASSWORD, "role": "member", "tenant_id": tenant_id}
    assert admin.post("/v1/users", json=user).status_code == 201
    r = admin.post("/v1/tokens", json={"username": f"{name}-ops", "password": PASSWORD, "tenant": name})
    return TestClient(admin.app, headers={"Authorization": f"Bearer {r.json()['access_token']}"})


def test_a_rule_is_disabled_and_enabled_by_its_tenant_only(tmp_path: Path) -> None:
    with in_process_app(tmp_path) as (admin, password, _db):
        r = admin.post("/v1/tokens", json={"username": "admin", "password": password})
        admin.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        alpha, beta = _tenant_client(admin, "alpha"), _tenant_client(admin, "beta")
        r = alpha.post("/v1/alert-rules", json=RULE)
        assert r.status_code == 201, r.text
        rule_id = r.json()["id"]
        etag = alpha.get(f"/v1/alert-rules/{rule_id}").headers["etag"]

        # another tenant neither changes nor learns of it
        r = beta.patch(f"/v1/alert-rules/{rule_id}", json={"enabled": False})
        assert r.status_code == 404, r.text
        # a stale version is refused; the current one is taken
        r = alpha.patch(f"/v1/alert-rules/{rule_id}", json={"enabled": False}, headers={"If-Match": '"999"'})
        assert r.status_code == 412, r.text
        r = alpha.patch(f"/v1/alert-rules/{rule_id}", json={"enabled": False}, headers={"If-Match": etag})
        assert r.status_code == 200, r.text
        assert r.json()["enabled"] is False and r.headers["etag"] != etag
        assert alpha.get(f"/v1/alert-rules/{rule_id}").json()["enabled"] is False
        # only `enabled` may be changed
        r = alpha.patch(f"/v1/alert-rules/{rule_id}", json={"enabled": True, "expr": "vector(1)"})
        assert r.status_code == 422 and "body.expr" in {e["field"] for e in r.json()["errors"]}
        r = alpha.patch(f"/v1/alert-rules/{rule_id}", json={"enabled": True})
        assert r.status_code == 200 and r.json()["enabled"] is True

        changes = alpha.get("/v1/events", params={"types": "alert-rule.updated"}).json()["items"]
        assert [e["data"]["enabled"] for e in changes] == [False, True]
        assert beta.get("/v1/events", params={"types": "alert-rule.*"}).json()["items"] == []
        audited = admin.get("/v1/audit", params={"resource_id": rule_id}).json()["items"]
        assert sum(1 for row in audited if row["method"] == "PATCH") >= 2, audited

"""Bad input gets a clear problem+json naming the field, and leaves nothing half-created."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import jsonschema
from fastapi.testclient import TestClient

from tests.conftest import Server, default_project
from tests.integration.shared_server import server

__all__ = ["server"]  # the module-scoped server its tests share


PROBLEM = "application/problem+json"


def _fields(r: httpx.Response) -> set[str]:
    assert r.headers["content-type"].startswith(PROBLEM), r.text
    body = r.json()
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == r.status_code
    return {e["field"] for e in body.get("errors", [])}


def test_vm_create_validation_names_fields_and_creates_nothing(server: Server) -> None:
    with server.client() as c:
        pid = default_project(c)
        r = c.post("/v1/vms", json={})
        assert r.status_code == 422 and {"body.name", "body.flavor"} <= _fields(r)
        # the image may be left out only for a boot volume
        r = c.post("/v1/vms", json={"name": "ok", "flavor": "tiny", "project_id": pid})
        assert r.status_code == 422 and _fields(r) == {"body.image"}, r.text
        r = c.post("/v1/vms", json={"name": "Bad_Name", "image": "x", "flavor": "tiny", "project_id": pid})
        assert r.status_code == 422 and _fields(r) == {"body.name"}
        r = c.post("/v1/vms", json={"name": "ok", "image": "x", "flavor": "tiny", "colour": "red"})
        assert r.status_code == 422 and _fields(r) == {"body.colour"}
        r = c.post("/v1/vms", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and _fields(r)
        r = c.post(
            "/v1/vms", json={"name": "ok", "image": "no-such-image", "flavor": "tiny", "project_id": pid}
        )
        assert r.status_code == 422 and _fields(r) == {"body.image"} and "no-such-image" in r.json()["detail"]
        assert c.get("/v1/vms").json()["items"] == []
        assert c.get("/v1/tasks").json()["items"] == []


def test_lists_reject_bad_paging(server: Server) -> None:
    with server.client() as c:
        assert _fields(c.get("/v1/vms", params={"limit": 0})) == {"query.limit"}
        r = c.get("/v1/vms", params={"cursor": "garbage!"})
        assert r.status_code == 400 and _fields(r) == {"query.cursor"}
        r = c.get("/v1/vms", params={"sort": "password"})
        assert r.status_code == 400 and _fields(r) == {"query.sort"}


def test_unauthenticated_requests_are_told_how_to_log_in(server: Server) -> None:
    r = httpx.get(f"{server.url}/v1/vms")
    assert r.status_code == 401 and r.headers["content-type"].startswith(PROBLEM)
    assert "novacron login" in r.json()["detail"]
    r = httpx.get(f"{server.url}/v1/vms", headers={"Authorization": "Bearer not.a.jwt"})
    assert r.status_code == 401


def test_image_of_unsupported_format_is_refused_and_not_kept(server: Server, tmp_path: Path) -> None:
    vmdk = tmp_path / "disk.vmdk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(vmdk), "16M"], check=True)
    with server.client() as c:
        image = c.post("/v1/images", json={"name": "vm-ware", "project_id": default_project(c)}).json()
        r = c.put(f"/v1/images/{image['id']}/file", content=vmdk.read_bytes())
        assert r.status_code == 422 and _fields(r) == {"body"}
        assert "vmdk" in r.json()["detail"] and "qcow2" in r.json()["detail"]
        assert c.get(f"/v1/images/{image['id']}").json()["status"] == "queued"
        assert not (server.state_dir / "images" / image["id"] / "disk").exists()


def test_idempotent_create_is_created_once(server: Server) -> None:
    with server.client() as c:
        body = {"name": "m1", "vcpus": 1, "ram_mb": 128, "disk_gb": 1}
        first = c.post("/v1/flavors", json=body, headers={"Idempotency-Key": "abc-1"})
        again = c.post("/v1/flavors", json=body, headers={"Idempotency-Key": "abc-1"})
        assert first.status_code == again.status_code == 201
        assert first.json()["id"] == again.json()["id"]
        assert again.headers.get("idempotent-replayed") == "true"
        assert [f["name"] for f in c.get("/v1/flavors", params={"name": "m1"}).json()["items"]] == ["m1"]
        other = c.post("/v1/flavors", json={**body, "vcpus": 2}, headers={"Idempotency-Key": "abc-1"})
        assert other.status_code == 422 and _fields(other) == {"header.Idempotency-Key"}


def test_refusals_are_declared_by_the_openapi_document(in_process_admin: TestClient) -> None:
    """Each refusal below is a status its operation documents, with a body of the Problem schema."""
    c = in_process_admin
    doc = c.get("/openapi.json").json()
    problem = doc["components"]["schemas"]["Problem"]
    problem_schema = jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/Problem", "components": doc["components"]}
    )
    assert problem["additionalProperties"] is True
    cases = [
        ("delete", "/v1/aggregates/{aggregate_id}", c.delete("/v1/aggregates/nope"), 404),
        ("get", "/v1/flavors", c.get("/v1/flavors", params={"cursor": "garbage!"}), 400),
        ("get", "/v1/flavors", c.get("/v1/flavors", params={"limit": 0}), 422),
        ("post", "/v1/flavors", c.post("/v1/flavors", json={"name": "x"}), 422),
        (
            "post",
            "/v1/flavors",
            c.post("/v1/flavors", json={}, headers={"Idempotency-Key": "k" * 256}),
            400,
        ),
        ("post", "/v1/flavors", c.post("/v1/flavors", content=b"x" * (2 << 20)), 413),
        ("get", "/v1/vms", c.get("/v1/vms", headers={"Authorization": "Bearer not.a.jwt"}), 401),
        ("post", "/v1/tokens", c.post("/v1/tokens", json={"username": "admin", "password": "wrong"}), 401),
    ]
    flavor = {"name": "declared", "vcpus": 1, "ram_mb": 64, "disk_gb": 0}
    assert c.post("/v1/flavors", json=flavor).status_code == 201
    cases.append(("post", "/v1/flavors", c.post("/v1/flavors", json=flavor), 409))
    aggregate = c.post("/v1/aggregates", json={"name": "declared"}).json()
    stale = c.patch(f"/v1/aggregates/{aggregate['id']}", json={}, headers={"If-Match": '"old.v0"'})
    cases.append(("patch", "/v1/aggregates/{aggregate_id}", stale, 412))
    for method, path, r, status in cases:
        assert r.status_code == status, (method, path, r.text)
        declared = doc["paths"][path][method]["responses"]
        assert str(status) in declared, (method, path, status)
        assert r.headers["content-type"].startswith(PROBLEM)
        problem_schema.validate(r.json())

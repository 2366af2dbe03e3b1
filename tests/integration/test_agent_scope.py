"""A compromised node agent: its credential acts for its own host only.

The agent's credential is used here as an attacker who copied it off a host would: straight
against the API, with no agent process behind it.
"""

from __future__ import annotations

import httpx

from tests.conftest import Server, tenant_user
from tests.integration.shared_server import server

__all__ = ["server"]  # the module-scoped server its tests share


def _node_client(server: Server, admin: httpx.Client, name: str) -> httpx.Client:
    """A joined host's credential, as a client (the host runs no VM)."""
    token = admin.post("/v1/hosts/join-tokens", json={}).json()["join_token"]
    r = httpx.post(f"{server.url}/v1/agents/join", json={"join_token": token, "name": name}, timeout=10)
    assert r.status_code == 200, r.text
    return server.client(r.json()["credential"])


def _image(client: httpx.Client, project_id: str, name: str, data: bytes, public: bool = False) -> str:
    r = client.post("/v1/images", json={"name": name, "project_id": project_id, "public": public})
    assert r.status_code == 201, r.text
    image_id = str(r.json()["id"])
    r = client.put(
        f"/v1/images/{image_id}/file", content=data, headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 200, r.text
    return image_id


def test_node_credential_cannot_read_other_hosts_tenant_images(server: Server) -> None:
    admin = server.client()
    tenant, project = tenant_user(admin, server, "victim")
    secret = b"\x00\xfftenant secret disk\x00" * 4096
    private = _image(tenant, project, "private-disk", secret)
    node = _node_client(server, admin, "evil-node")

    r = node.get(f"/v1/images/{private}/file")
    # before: 200 with the tenant's disk, byte for byte
    assert r.status_code == 404, r.status_code
    assert secret not in r.content
    assert node.get(f"/v1/images/{private}").status_code == 404
    assert private not in node.get("/v1/images").text

    # a public image is any host's to fetch (every tenant may boot it anywhere)
    admin_project = str(admin.get("/v1/projects").json()["items"][0]["id"])
    public = _image(admin, admin_project, "pub", b"\x01" * 65536, True)
    r = node.get(f"/v1/images/{public}/file")
    assert r.status_code == 200 and r.content == b"\x01" * 65536


def test_node_bodies_with_nan_are_422_naming_the_field(server: Server) -> None:
    """Python's JSON parser takes NaN and Infinity; an agent's samples, progress or result holding
    one were stored, and the tenant's metrics or task could then not be rendered (a 500). The JSON
    edge (api/transport.py) now names the exact place."""
    node = _node_client(server, server.client(), "nan-node")
    cases = {
        "/v1/agent/report": (b'{"samples": {"vm-x": {"cpu": NaN}}}', "body.samples.vm-x.cpu"),
        "/v1/agent/progress": (b'{"id": "op-x", "detail": {"fraction": Infinity}}', "body.detail.fraction"),
        "/v1/agent/complete": (b'{"id": "op-x", "result": {"bytes": -Infinity}}', "body.result.bytes"),
    }
    for path, (body, field) in cases.items():
        r = node.post(path, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in r.json()["errors"]] == [field], r.text
        assert "finite" in r.text


def test_heartbeats_are_not_audited_but_refused_ones_are(server: Server) -> None:
    """A host's reports and claims (its heartbeat, every second) leave no audit record; a refused
    credential still does (bench/bench_scale.py: audited heartbeats serialised on the chain head)."""
    admin = server.client()
    node = _node_client(server, admin, "beat-host")
    facts = {"cpus": 2, "ram_mb": 2048, "accelerator": "none"}
    assert node.post("/v1/agent/register", json={"driver": "simulated", "facts": facts}).status_code == 200
    assert node.post("/v1/agent/report", json={}).status_code == 200
    assert node.post("/v1/agent/claim", json={"wait_s": 0}).status_code == 200
    stranger = server.client("not-a-credential")
    assert stranger.post("/v1/agent/report", json={}).status_code == 401
    done = admin.get("/v1/audit", params={"limit": 100, "outcome": "success"}).json()["items"]
    assert any(e["action"] == "agent.register" for e in done)
    beats = [e for e in done if e["path"] in ("/v1/agent/report", "/v1/agent/claim")]
    assert beats == [], beats
    refused = admin.get("/v1/audit", params={"limit": 50, "outcome": "denied"}).json()["items"]
    assert any(e["path"] == "/v1/agent/report" for e in refused), refused

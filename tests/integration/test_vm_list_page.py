"""GET /v1/vms, served from rows (api/rowpage.py): paging, tenant scoping, each item as the VM's own
answer says, and the same bytes gzipped or not.

Real parts: the API app in this process on a real SQLite store (``in_process_app``: no agent, no
background workers). The VM rows are written to the store directly: creating them through the API
needs a host and an image, which this listing check does not exercise (bench/bench_list_vms.py and
the VM lifecycle tests create theirs through the API).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from novacron.db.base import Database, new_id
from novacron.db.models import VM, Project
from novacron.db.models.guestinfo import VMGuestInfo
from tests.conftest import TENANT_PASSWORD, in_process_app

#: the fields a list item carries as the VM's own answer does (the rest are in one VM's answer only)
SAME = ("id", "name", "project_id", "tenant_id", "state", "desired_state", "metadata", "labels", "placement")


def _seed(db: Database, project_id: str, prefix: str, n: int) -> None:
    with db.session() as s:
        tenant_id = s.get(Project, project_id).tenant_id  # type: ignore[union-attr]
        for i in range(n):
            vm_id = new_id("vm")
            s.add(
                VM(
                    id=vm_id,
                    project_id=project_id,
                    tenant_id=tenant_id,
                    name=f"{prefix}{i}",
                    vcpus=1,
                    ram_mb=512,
                    disk_gb=1,
                    state="running" if i % 2 else "stopped",
                    meta={"n": str(i), "note": "Zoë \u2603"},
                    placement={"aggregate": None, "labels": {"rack": f"r{i}"}, "weight": 0.5}
                    if i == 2
                    else {},
                    labels={"tier": "web"} if i % 3 == 0 else {},
                )
            )
            if i % 2:  # half of them reported addresses; the rest have none (no ports either)
                s.flush()
                s.add(VMGuestInfo(vm_id=vm_id, ips=[f"10.0.0.{i}/24"], source="agent"))


def _login(client: TestClient, username: str, password: str, tenant: str | None = None) -> dict[str, str]:
    body = {"username": username, "password": password} | ({"tenant": tenant} if tenant else {})
    r = client.post("/v1/tokens", json=body)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _all_pages(client: TestClient, headers: dict[str, str], limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/vms", params=params, headers=headers).json()
        items += page["items"]
        if not (cursor := page.get("next_cursor")):
            return items


def test_vm_list_pages_scoping_and_bytes(tmp_path: Path) -> None:
    with in_process_app(tmp_path) as (client, password, db):
        admin = _login(client, "admin", password)
        default = client.get("/v1/projects", params={"name": "default"}, headers=admin).json()["items"][0]
        tenant = client.post("/v1/tenants", json={"name": "alpha"}, headers=admin).json()
        project = client.post("/v1/projects", json={"name": "main", "tenant_id": tenant["id"]}, headers=admin)
        user = {
            "username": "alpha-user",
            "password": TENANT_PASSWORD,
            "role": "member",
            "tenant_id": tenant["id"],
        }
        assert client.post("/v1/users", json=user, headers=admin).status_code == 201
        _seed(db, project.json()["id"], "a", 7)
        _seed(db, default["id"], "d", 5)
        alpha = _login(client, "alpha-user", TENANT_PASSWORD, "alpha")

        # the tenant sees its 7 only, in created_at order across pages of 3, none twice
        mine = _all_pages(client, alpha, 3)
        assert [v["name"] for v in mine] == [f"a{i}" for i in range(7)]
        assert len(_all_pages(client, admin, 5)) == 12
        state = client.get("/v1/vms", params={"state": "running"}, headers=alpha).json()["items"]
        assert [v["name"] for v in state] == ["a1", "a3", "a5"]

        for item in mine:
            one = client.get(f"/v1/vms/{item['id']}", headers=alpha).json()
            assert {k: item[k] for k in SAME} == {k: one[k] for k in SAME}
            assert (item["ips"], item["ip_source"]) == (one["ips"], one["ip_source"])
            assert item["guest"] is None and item["hardware"] == {}

        # a page gzipped (level 1 now) decodes to the very bytes of the page sent as it is
        plain = client.get("/v1/vms", params={"limit": 500}, headers=admin | {"Accept-Encoding": "identity"})
        zipped = client.get("/v1/vms", params={"limit": 500}, headers=admin | {"Accept-Encoding": "gzip"})
        assert "content-encoding" not in plain.headers
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.content == plain.content and len(plain.content) > 2048

"""Names resolve from the target project's point of view, and a name two usable resources share is
an ambiguity answer listing both ids (issue 23). In-process: a real app on a fresh SQLite state dir.

Tenants beta and gamma each have a project "main" and a member; the admin works in the default
project. A public image and a shared network of the admin's share their names with beta's private
ones: that changes nothing for the admin or for gamma, and is an ambiguity for beta.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TENANT_PASSWORD, in_process_app

Headers = dict[str, str]


@dataclass
class Cloud:
    client: TestClient
    admin: Headers
    default_project: str
    flavor: str

    def login(self, username: str, password: str) -> Headers:
        r = self.client.post("/v1/tokens", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def tenant(self, name: str) -> tuple[Headers, str]:
        """A tenant with a project "main" and a member: the member's headers and the project's id."""
        c, admin = self.client, self.admin
        tenant = c.post("/v1/tenants", json={"name": name}, headers=admin).json()
        r = c.post("/v1/projects", json={"name": "main", "tenant_id": tenant["id"]}, headers=admin)
        assert r.status_code == 201, r.text
        user = {
            "username": f"{name}-user",
            "password": TENANT_PASSWORD,
            "role": "member",
            "tenant_id": tenant["id"],
        }
        assert c.post("/v1/users", json=user, headers=admin).status_code == 201
        return self.login(f"{name}-user@{name}", TENANT_PASSWORD), str(r.json()["id"])

    def image(self, headers: Headers, name: str, project_id: str, *, public: bool = False) -> str:
        """An active image (a small raw disk) named ``name`` in the project: its id."""
        body = {"name": name, "public": public, "project_id": project_id}
        r = self.client.post("/v1/images", json=body, headers=headers)
        assert r.status_code == 201, r.text
        image_id = str(r.json()["id"])
        r = self.client.put(
            f"/v1/images/{image_id}/file",
            content=b"\0" * (1 << 20),
            headers={**headers, "Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 200 and r.json()["status"] == "active", r.text
        return image_id

    def create_vm(self, headers: Headers, name: str, image: str, project_id: str | None = None) -> Any:
        body = {"name": name, "image": image, "flavor": self.flavor, "project_id": project_id}
        return self.client.post("/v1/vms", json=body, headers=headers)

    def network(self, headers: Headers, name: str, project_id: str, *, shared: bool = False) -> str:
        body = {"name": name, "project_id": project_id, "shared": shared}
        r = self.client.post("/v1/networks", json=body, headers=headers)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    with in_process_app(tmp_path) as (client, password, _db):
        r = client.post("/v1/tokens", json={"username": "admin", "password": password})
        admin = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = client.get("/v1/projects", params={"name": "default"}, headers=admin)
        default_project = str(r.json()["items"][0]["id"])
        flavor = {"name": "tiny", "vcpus": 1, "ram_mb": 128, "disk_gb": 1}
        assert client.post("/v1/flavors", json=flavor, headers=admin).status_code == 201
        yield Cloud(client, admin, default_project, "tiny")


def _assert_ambiguous(r: Any, field: str, ids: list[str]) -> None:
    """A 409 problem naming ``field``, with every candidate's id in its detail and ``candidates``."""
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["title"] == "Ambiguous name"
    assert sorted(problem["candidates"]) == sorted(ids)
    assert all(i in problem["detail"] for i in ids) and "More than one" in problem["detail"]
    assert [e["field"] for e in problem["errors"]] == [field]


def test_another_tenants_private_image_changes_nothing_for_the_admin_or_other_tenants(cloud: Cloud) -> None:
    public = cloud.image(cloud.admin, "guest", cloud.default_project, public=True)
    beta, beta_project = cloud.tenant("beta")
    gamma, gamma_project = cloud.tenant("gamma")
    private = cloud.image(beta, "guest", beta_project)

    # the admin, in the default project and in gamma's, gets the public image: beta's can't be used there
    for n, project in enumerate((cloud.default_project, gamma_project)):
        r = cloud.create_vm(cloud.admin, f"admin-vm-{n}", "guest", project)
        assert r.status_code == 202, r.text
        assert r.json()["vm"]["image_id"] == public
    r = cloud.create_vm(gamma, "gamma-vm", "guest")
    assert r.status_code == 202, r.text
    assert r.json()["vm"]["image_id"] == public

    # nor can beta's private image be used there by its id, even by the admin who sees it
    r = cloud.create_vm(cloud.admin, "stolen", private, cloud.default_project)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "body.image"
    assert "for use in project 'default'" in r.json()["detail"]
    r = cloud.create_vm(gamma, "stolen", private)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.image", r.text


def test_two_usable_images_of_one_name_are_ambiguous_and_ids_still_work(cloud: Cloud) -> None:
    public = cloud.image(cloud.admin, "guest", cloud.default_project, public=True)
    beta, beta_project = cloud.tenant("beta")
    private = cloud.image(beta, "guest", beta_project)

    # beta sees both: the create, and the image's own path, say so with both ids
    _assert_ambiguous(cloud.create_vm(beta, "web", "guest"), "body.image", [public, private])
    _assert_ambiguous(cloud.client.get("/v1/images/guest", headers=beta), "path.image_id", [public, private])
    # so does the admin acting in beta's project, where both can be used
    r = cloud.create_vm(cloud.admin, "web", "guest", beta_project)
    _assert_ambiguous(r, "body.image", [public, private])

    # an id picks one; a unique name still resolves
    r = cloud.create_vm(beta, "web", private)
    assert r.status_code == 202 and r.json()["vm"]["image_id"] == private, r.text
    unique = cloud.image(beta, "only-mine", beta_project)
    r = cloud.create_vm(beta, "db", "only-mine")
    assert r.status_code == 202 and r.json()["vm"]["image_id"] == unique, r.text
    r = cloud.client.get("/v1/images/only-mine", headers=beta)
    assert r.status_code == 200 and r.json()["id"] == unique


def test_networks_resolve_from_the_ports_project(cloud: Cloud) -> None:
    shared = cloud.network(cloud.admin, "net", cloud.default_project, shared=True)
    beta, beta_project = cloud.tenant("beta")
    gamma, gamma_project = cloud.tenant("gamma")
    own = cloud.network(beta, "net", beta_project)

    def port(headers: Headers, network: str, project_id: str | None = None) -> Any:
        body = {"network": network, "project_id": project_id}
        return cloud.client.post("/v1/ports", json=body, headers=headers)

    # gamma, and the admin for gamma's project, get the shared network; beta's is not theirs
    for headers, project in (
        (gamma, None),
        (cloud.admin, gamma_project),
        (cloud.admin, cloud.default_project),
    ):
        r = port(headers, "net", project)
        assert r.status_code == 201 and r.json()["network_id"] == shared, r.text
    r = port(cloud.admin, own, gamma_project)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.network", r.text

    # beta may use both: ambiguous, on the port and on a VM's NIC; the id picks one
    _assert_ambiguous(port(beta, "net"), "body.network", [shared, own])
    image = cloud.image(beta, "guest", beta_project)
    body = {"name": "web", "image": image, "flavor": cloud.flavor, "networks": [{"network": "net"}]}
    _assert_ambiguous(
        cloud.client.post("/v1/vms", json=body, headers=beta), "body.networks.0.network", [shared, own]
    )
    r = port(beta, own)
    assert r.status_code == 201 and r.json()["network_id"] == own, r.text


def test_security_groups_of_two_projects_are_ambiguous_for_a_port(cloud: Cloud) -> None:
    beta, beta_project = cloud.tenant("beta")
    gamma, gamma_project = cloud.tenant("gamma")
    tenant_id = cloud.client.get(f"/v1/projects/{beta_project}", headers=beta).json()["tenant_id"]
    r = cloud.client.post("/v1/projects", json={"name": "other", "tenant_id": tenant_id}, headers=cloud.admin)
    assert r.status_code == 201, r.text
    other_project = r.json()["id"]
    groups = []
    for headers, project in ((beta, beta_project), (beta, other_project), (gamma, gamma_project)):
        r = cloud.client.post(
            "/v1/security-groups", json={"name": "web", "project_id": project}, headers=headers
        )
        assert r.status_code == 201, r.text
        groups.append(r.json()["id"])
    network = cloud.network(beta, "net", beta_project)
    gamma_network = cloud.network(gamma, "net", gamma_project)

    body = {"network": network, "security_groups": ["web"], "project_id": beta_project}
    _assert_ambiguous(
        cloud.client.post("/v1/ports", json=body, headers=beta), "body.security_groups.0", groups[:2]
    )
    body = {"network": gamma_network, "security_groups": ["web"]}
    r = cloud.client.post("/v1/ports", json=body, headers=gamma)
    assert r.status_code == 201 and r.json()["security_groups"] == [groups[2]], r.text

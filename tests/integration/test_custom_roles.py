"""Custom roles, role assignments per tenant and project, label conditions on VMs, explained
decisions and project-scoped API keys, end to end in-process (VM rows only: no guest is needed to
decide who may act on one)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from novacron.cli import roles as roles_cli
from novacron.cli.client import Client
from novacron.db.base import Database, new_id, utcnow
from novacron.db.models import VM, ApiKey
from tests.conftest import in_process_app
from tests.integration.test_api_identity import PW, Env, _tenant_with_admin


@dataclass
class World:
    env: Env
    db: Database
    ta: dict[str, str]
    #: project name -> id
    projects: dict[str, str]
    #: VM name -> id
    vms: dict[str, str]

    def user(self, username: str, role: str = "none") -> dict[str, str]:
        body = {"username": username, "password": PW, "role": role}
        r = self.env.client.post("/v1/users", json=body, headers=self.ta)
        assert r.status_code == 201, r.text
        return self.env.headers(f"{username}@acme", PW)

    def assign(self, **body: Any) -> str:
        r = self.env.client.post("/v1/role-assignments", json=body, headers=self.ta)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def names(self, headers: dict[str, str]) -> set[str]:
        r = self.env.client.get("/v1/vms", headers=headers)
        assert r.status_code == 200, r.text
        return {v["name"] for v in r.json()["items"]}


def _vm(db: Database, project_id: str, tenant_id: str, name: str, labels: dict[str, str]) -> str:
    with db.session() as s:
        vm = VM(
            id=new_id("vm"),
            project_id=project_id,
            tenant_id=tenant_id,
            name=name,
            vcpus=1,
            ram_mb=512,
            disk_gb=1,
            state="stopped",
            desired_state="stopped",
            labels=labels,
        )
        s.add(vm)
        return vm.id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    state = tmp_path_factory.mktemp("roles")
    with in_process_app(state) as (client, password, db):
        env = Env(client, password, state)
        tid, ta = _tenant_with_admin(env, env.headers(), "acme")
        projects = {}
        for name in ("alpha", "beta"):
            r = client.post("/v1/projects", json={"name": name}, headers=ta)
            assert r.status_code == 201, r.text
            projects[name] = r.json()["id"]
        vms = {
            "blue-1": _vm(db, projects["alpha"], tid, "blue-1", {"team": "blue"}),
            "red-1": _vm(db, projects["alpha"], tid, "red-1", {"team": "red"}),
            "blue-2": _vm(db, projects["beta"], tid, "blue-2", {"team": "blue", "tier": "web"}),
            "plain-2": _vm(db, projects["beta"], tid, "plain-2", {}),
            "spare-2": _vm(db, projects["beta"], tid, "spare-2", {}),
        }
        yield World(env, db, ta, projects, vms)


def test_custom_roles_are_checked_against_the_catalogue(world: World) -> None:
    c, ta = world.env.client, world.ta
    builtin = {r["name"]: r for r in c.get("/v1/roles", headers=ta).json()}
    assert builtin["viewer"]["builtin"] and "vm:read" in builtin["viewer"]["permissions"]
    bad = {"name": "oops", "permissions": ["vm:read", "vm:fly"]}
    r = c.post("/v1/roles", json=bad, headers=ta)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.permissions[1]", r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    r = c.post("/v1/roles", json={"name": "boss", "permissions": ["host:write"]}, headers=ta)
    assert r.status_code == 403 and r.json()["errors"][0]["field"] == "body.permissions[0]", r.text
    r = c.patch("/v1/roles/viewer", json={"permissions": ["vm:read"]}, headers=ta)
    assert r.status_code == 403 and "read-only" in r.json()["detail"]
    made = c.post("/v1/roles", json={"name": "tmp", "permissions": ["vm:read"]}, headers=ta)
    assert made.status_code == 201, made.text
    r = c.patch("/v1/roles/tmp", json={"permissions": ["vm:read", "vm:power"]}, headers=ta)
    assert r.status_code == 200 and r.json()["permissions"] == ["vm:power", "vm:read"]
    assert c.delete("/v1/roles/tmp", headers=ta).status_code == 204
    assert c.get("/v1/roles/tmp", headers=ta).status_code == 404


def test_a_label_conditioned_role_acts_on_blue_vms_only_and_explains_why(world: World) -> None:
    c, ta, vms = world.env.client, world.ta, world.vms
    body = {
        "name": "blue-ops",
        "permissions": ["vm:read", "vm:power", "vm:delete"],
        "labels": {"team": "blue"},
    }
    assert c.post("/v1/roles", json=body, headers=ta).status_code == 201
    bob = world.user("bob")
    assert c.get("/v1/vms", headers=bob).status_code == 403  # role none: nothing yet
    ra = world.assign(role="blue-ops", user="bob")
    assert world.names(bob) == {"blue-1", "blue-2"}
    assert c.get(f"/v1/vms/{vms['blue-1']}", headers=bob).status_code == 200
    assert c.post(f"/v1/vms/{vms['blue-1']}/actions/start", headers=bob).status_code == 202
    for how in (c.get, c.delete):
        r = how(f"/v1/vms/{vms['red-1']}", headers=bob)
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "team=red" in r.json()["detail"] and ra in r.json()["detail"]
    # relabelling a blue VM out of the role's reach is refused too (no vm:update anyway)
    r = c.patch(f"/v1/vms/{vms['blue-1']}", json={"labels": {"team": "red"}}, headers=bob)
    assert r.status_code == 403
    # explain: the admin asks about bob, bob about himself, never about the admin
    q = {"user": "bob", "action": "vm:delete"}
    denied = c.get("/v1/auth/explain", params=q | {"resource": "vm/red-1"}, headers=ta).json()
    assert denied["decision"] == "deny" and denied["allowed_by"] is None
    assert any(ra in why and "team=red" in why for why in denied["reasons"]), denied
    allowed = c.get("/v1/auth/explain", params=q | {"resource": "vm/blue-1"}, headers=bob).json()
    assert allowed["decision"] == "allow" and allowed["allowed_by"] == ra
    r = c.get(
        "/v1/auth/explain",
        params={"user": "acme-admin", "action": "vm:read", "resource": "tenant"},
        headers=bob,
    )
    assert r.status_code == 403
    r = c.get("/v1/auth/explain", params=q | {"action": "vm:fly", "resource": "vm/red-1"}, headers=ta)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.action"
    assert c.delete(f"/v1/vms/{vms['blue-2']}", headers=bob).status_code == 202
    # the role in use cannot be deleted
    assert c.delete("/v1/roles/blue-ops", headers=ta).status_code == 409


def test_project_assignments_and_several_roles_union(world: World) -> None:
    c, vms = world.env.client, world.vms
    carol = world.user("carol")
    world.assign(role="member", user="carol", project="beta")
    assert world.names(carol) == {"blue-2", "plain-2", "spare-2"}
    assert c.post(f"/v1/vms/{vms['plain-2']}/actions/start", headers=carol).status_code == 202
    r = c.post(f"/v1/vms/{vms['red-1']}/actions/start", headers=carol)
    assert r.status_code == 403 and "is in project" in r.json()["detail"]
    # a second role: blue VMs anywhere, on top of the project
    world.assign(role="blue-ops", user="carol")
    assert world.names(carol) == {"blue-1", "blue-2", "plain-2", "spare-2"}
    assert c.get(f"/v1/vms/{vms['red-1']}", headers=carol).status_code == 403
    # a tenant-wide assignment with no condition widens the user's own permissions
    world.assign(role="viewer", user="carol")
    assert world.names(carol) == {"blue-1", "red-1", "blue-2", "plain-2", "spare-2"}
    assert c.delete(f"/v1/vms/{vms['red-1']}", headers=carol).status_code == 403
    me = c.get("/v1/tokens/current", headers=carol).json()
    assert "vm:read" in me["permissions"] and "vm:delete" not in me["permissions"]


def test_a_project_scoped_api_key_does_exactly_its_scope(world: World) -> None:
    c, vms = world.env.client, world.vms
    dev = world.user("dev", role="member")
    body = {"name": "beta-ci", "permissions": ["vm:read", "vm:power", "image:read"], "project": "beta"}
    r = c.post("/v1/api-keys", json=body, headers=dev)
    assert r.status_code == 201, r.text
    key = r.json()
    assert key["project_id"] == world.projects["beta"]
    as_key = {"Authorization": f"Bearer {key['token']}"}
    assert world.names(as_key) == {"plain-2", "spare-2"} | ({"blue-2"} & world.names(dev))
    assert c.post(f"/v1/vms/{vms['spare-2']}/actions/start", headers=as_key).status_code == 202
    assert c.get(f"/v1/vms/{vms['blue-1']}", headers=as_key).status_code == 403
    assert c.delete(f"/v1/vms/{vms['plain-2']}", headers=as_key).status_code == 403  # not given
    assert c.get("/v1/images", headers=as_key).status_code == 200
    assert c.get("/v1/volumes", headers=as_key).status_code == 403  # only its project's VMs
    r = c.post("/v1/api-keys", json=body | {"name": "x", "project": "nope"}, headers=dev)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.project"
    # a key of a user whose roles are label-limited stays within them
    bob = world.env.headers("bob@acme", PW)
    r = c.post("/v1/api-keys", json={"name": "bob-ci", "permissions": ["vm:read"]}, headers=bob)
    assert r.status_code == 201, r.text
    bob_key = {"Authorization": f"Bearer {r.json()['token']}"}
    assert world.names(bob_key) == world.names(bob) and "red-1" not in world.names(bob_key)
    with world.db.session() as s:
        s.execute(
            update(ApiKey).where(ApiKey.id == key["id"]).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    r = c.get("/v1/vms", headers=as_key)
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_the_cli_manages_roles_and_explains(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = world.ta["Authorization"].removeprefix("Bearer ")
    client = Client(
        "http://testserver",
        token=token,
        credentials_path=tmp_path / "c.json",
        transport=world.env.client._transport,
    )
    monkeypatch.setattr(roles_cli, "client_of", lambda _ctx: client)
    run = CliRunner()
    made = run.invoke(
        roles_cli.role_app, ["create", "green-ops", "-p", "vm:read", "-p", "vm:power", "-l", "team=green"]
    )
    assert made.exit_code == 0, made.output
    listed = run.invoke(roles_cli.role_app, ["list"])
    assert listed.exit_code == 0 and "green-ops" in listed.output and "built-in" in listed.output
    world.user("erin")
    got = run.invoke(roles_cli.assignment_app, ["create", "green-ops", "--user", "erin", "-l", "team=green"])
    assert got.exit_code == 0, got.output
    deny = run.invoke(roles_cli.auth_app, ["explain", "erin", "vm:power", "vm/red-1"])
    assert deny.exit_code == 0 and "DENY" in deny.output and "team=red" in deny.output, deny.output
    world.assign(role="blue-ops", user="erin")
    allow = run.invoke(roles_cli.auth_app, ["explain", "erin", "vm:read", "vm/blue-1"])
    assert allow.exit_code == 0 and "ALLOW" in allow.output and "blue-ops" in allow.output, allow.output
    assert run.invoke(roles_cli.role_app, ["update", "green-ops", "-p", "vm:read"]).exit_code == 0
    shown = run.invoke(roles_cli.role_app, ["show", "green-ops"])
    assert shown.exit_code == 0 and "vm:power" not in shown.output

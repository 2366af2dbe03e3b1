"""Placement through a real server: host PATCH (maintenance, labels, traits, If-Match), aggregates,
server groups (CRUD, idempotent create, tenant scoping) and the create path refusing bad references."""

from __future__ import annotations

import httpx

from tests.conftest import Guest, Server, import_guest_image, tenant_user, wait_task


def _problem(r: httpx.Response, status: int, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if field is not None:
        assert field in [e["field"] for e in r.json()["errors"]], r.text


def test_hosts_aggregates_server_groups(server: Server, guest: Guest) -> None:
    with server.client() as admin:
        import_guest_image(admin, guest)
        alice, _ = tenant_user(admin, server, "alpha")
        bob, _ = tenant_user(admin, server, "beta")
        [host] = admin.get("/v1/hosts").json()["items"]
        assert host["state"] == "up" and host["vcpus_used"] == 0 and host["traits"] == []

        # host PATCH: admin only, validated, If-Match
        r = admin.get(f"/v1/hosts/{host['id']}")
        etag = r.headers["ETag"]
        _problem(admin.patch(f"/v1/hosts/{host['id']}", json={"labels": {"Bad Key": "x"}}), 422, None)
        _problem(admin.patch(f"/v1/hosts/{host['id']}", json={"state": "down"}), 422, "body.state")
        _problem(admin.patch(f"/v1/hosts/{host['id']}", json={"colour": "red"}), 422, "body.colour")
        _problem(alice.patch(f"/v1/hosts/{host['id']}", json={"state": "maintenance"}), 403)
        r = admin.patch(
            f"/v1/hosts/{host['id']}",
            json={"state": "maintenance", "labels": {"zone": "a"}, "traits": ["gpu", "hw:avx512", "gpu"]},
            headers={"If-Match": etag},
        )
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "maintenance" and r.json()["traits"] == ["gpu", "hw:avx512"]
        assert r.headers["ETag"] != etag
        _problem(
            admin.patch(f"/v1/hosts/{host['id']}", json={"state": "up"}, headers={"If-Match": etag}), 412
        )

        # a create while the only host is in maintenance fails at placement, saying why
        r = alice.post("/v1/vms", json={"name": "early", "image": "test-guest", "flavor": "tiny"})
        assert r.status_code == 202, r.text
        task = wait_task(alice, r.json()["task_id"], 60)
        assert task["state"] == "failed" and "in maintenance" in str(task["error"]), task
        vm = alice.get(f"/v1/vms/{r.json()['vm']['id']}").json()
        assert vm["state"] == "error" and vm["host_id"] is None

        # aggregates: admins write, everyone who reads hosts reads them
        _problem(alice.post("/v1/aggregates", json={"name": "fast"}), 403)
        _problem(admin.post("/v1/aggregates", json={"name": "fast", "hosts": ["nope"]}), 422, "body.hosts.0")
        r = admin.post(
            "/v1/aggregates", json={"name": "fast", "hosts": [host["name"]], "metadata": {"ssd": "1"}}
        )
        assert r.status_code == 201, r.text
        assert r.json()["hosts"] == [host["name"]]
        assert [a["name"] for a in alice.get("/v1/aggregates").json()["items"]] == ["fast"]
        assert admin.get(f"/v1/hosts/{host['id']}").json()["aggregates"] == [r.json()["id"]]

        # server groups: tenant-scoped, idempotent create, validated
        key = {"Idempotency-Key": "sg-1"}
        r = alice.post("/v1/server-groups", json={"name": "web", "policy": "anti-affinity"}, headers=key)
        assert r.status_code == 201, r.text
        group = r.json()
        assert group["hard"] is True and group["members"] == []
        again = alice.post("/v1/server-groups", json={"name": "web", "policy": "anti-affinity"}, headers=key)
        assert again.json()["id"] == group["id"] and again.headers.get("Idempotent-Replayed") == "true"
        _problem(alice.post("/v1/server-groups", json={"name": "web", "policy": "anti-affinity"}), 409)
        _problem(
            alice.post("/v1/server-groups", json={"name": "x", "policy": "together"}), 422, "body.policy"
        )
        _problem(bob.get(f"/v1/server-groups/{group['id']}"), 404)
        _problem(bob.get("/v1/server-groups/web"), 404)
        _problem(bob.delete(f"/v1/server-groups/{group['id']}"), 404)
        assert bob.get("/v1/server-groups").json()["items"] == []
        assert [g["id"] for g in alice.get("/v1/server-groups").json()["items"]] == [group["id"]]
        assert alice.get(f"/v1/server-groups/{group['id']}").headers["ETag"]

        # back in service: the host takes VMs again (its labels still say zone=a)
        r = admin.patch(f"/v1/hosts/{host['id']}", json={"state": "up"})
        assert r.status_code == 200 and r.json()["state"] == "up", r.text

        # the create path names the bad reference
        base = {"image": "test-guest", "flavor": "tiny"}
        _problem(
            bob.post("/v1/vms", json={**base, "name": "b1", "server_group": group["id"]}),
            422,
            "body.server_group",
        )
        _problem(
            alice.post("/v1/vms", json={**base, "name": "a1", "placement": {"aggregate": "slow"}}),
            422,
            "body.placement.aggregate",
        )
        _problem(
            alice.post("/v1/vms", json={**base, "name": "a2", "placement": {"zone": "a"}}),
            422,
            "body.placement.zone",
        )
        r = alice.post(
            "/v1/vms",
            json={
                **base,
                "name": "a3",
                "server_group": "web",
                "placement": {"aggregate": "fast", "labels": {"zone": "b"}},
            },
        )
        assert r.status_code == 202, r.text
        vm = r.json()["vm"]
        assert vm["server_group_id"] == group["id"]
        assert vm["placement"]["labels"] == {"zone": "b"}
        task = wait_task(alice, r.json()["task_id"], 60)
        assert task["state"] == "failed" and "label zone=a, zone=b requested" in str(task["error"]), task

        # a group with members cannot be deleted; without, it can (If-Match honoured)
        _problem(alice.delete(f"/v1/server-groups/{group['id']}"), 409)
        alice.delete(f"/v1/vms/{vm['id']}")
        for _ in range(100):
            if alice.get(f"/v1/vms/{vm['id']}").status_code == 404:
                break
            import time

            time.sleep(0.1)
        etag = alice.get(f"/v1/server-groups/{group['id']}").headers["ETag"]
        _problem(alice.delete(f"/v1/server-groups/{group['id']}", headers={"If-Match": '"stale"'}), 412)
        assert alice.delete(f"/v1/server-groups/{group['id']}", headers={"If-Match": etag}).status_code == 204
        alice.close()
        bob.close()

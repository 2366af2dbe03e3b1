"""Tenant B can neither see nor touch tenant A's VM through any endpoint: every answer is 404."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import (
    TENANT_PASSWORD,
    Guest,
    Server,
    default_project,
    import_guest_image,
    tenant_user,
    wait_console,
    wait_task,
)


def test_other_tenant_gets_404_everywhere(server: Server, guest: Guest) -> None:
    with server.client() as admin:
        import_guest_image(admin, guest)
        alice, alice_project = tenant_user(admin, server, "alpha")
        bob, _ = tenant_user(admin, server, "beta")
    with alice, bob:
        private = alice.post("/v1/images", json={"name": "alpha-private"}).json()
        r = alice.post(
            "/v1/vms",
            json={"name": "secret", "image": "test-guest", "flavor": "tiny", "user_data": "alpha only"},
        )
        assert r.status_code == 202, r.text
        vm_id, task_id = r.json()["vm"]["id"], r.json()["task_id"]
        assert wait_task(alice, task_id)["state"] == "succeeded"
        wait_console(alice, vm_id, "user-data: alpha only")

        assert bob.get("/v1/vms").json()["items"] == []
        assert bob.get("/v1/vms", params={"project_id": alice_project}).json()["items"] == []
        assert bob.get("/v1/tasks").json()["items"] == []
        assert all(e["resource_id"] != vm_id for e in bob.get("/v1/events").json()["items"])
        assert [i["name"] for i in bob.get("/v1/images").json()["items"]] == ["test-guest"]
        probes = [
            bob.get(f"/v1/vms/{vm_id}"),
            bob.get("/v1/vms/secret"),
            bob.patch(f"/v1/vms/{vm_id}", json={"vcpus": 2}),
            bob.delete(f"/v1/vms/{vm_id}"),
            *(
                bob.post(f"/v1/vms/{vm_id}/actions/{a}")
                for a in ("stop", "pause", "reboot", "start", "resume")
            ),
            bob.post(f"/v1/vms/{vm_id}/snapshot", json={"image_name": "stolen"}),
            bob.get(f"/v1/vms/{vm_id}/console-log"),
            bob.get(f"/v1/vms/{vm_id}/metrics"),
            bob.get(f"/v1/tasks/{task_id}"),
            bob.get(f"/v1/images/{private['id']}"),
            bob.put(f"/v1/images/{private['id']}/file", content=b"x"),
            bob.delete(f"/v1/images/{private['id']}"),
            bob.post(
                "/v1/vms",
                json={"name": "x", "image": "test-guest", "flavor": "tiny", "project_id": alice_project},
            ),
        ]
        for r in probes:
            assert r.status_code == 404, (r.request.method, r.request.url, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            # the answer is the same as for an id that never existed: nothing of the VM leaks
            assert '"state"' not in r.text and "alpha only" not in r.text

        token = bob.headers["Authorization"].split()[1]

        async def open_console() -> int:
            url = server.url.replace("http", "ws") + f"/v1/vms/{vm_id}/console"
            async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd is not None
            return int(closed.value.rcvd.code)

        assert asyncio.run(open_console()) == 4404

        # its owner does get an interactive console: a command typed in runs in the guest
        owner_token = alice.headers["Authorization"].split()[1]

        async def owner_console() -> str:
            url = server.url.replace("http", "ws") + f"/v1/vms/{vm_id}/console"
            seen = b""
            async with websockets.connect(
                url, additional_headers={"Authorization": f"Bearer {owner_token}"}
            ) as ws:
                await ws.send(b"echo answer-$((6*7))\n")
                while b"answer-42" not in seen:
                    data = await asyncio.wait_for(ws.recv(), 20)
                    seen += data if isinstance(data, bytes) else data.encode()
            return seen.decode(errors="replace")

        assert "answer-42" in asyncio.run(owner_console())

        # and the VM is untouched: still running, still alpha's
        vm = alice.get(f"/v1/vms/{vm_id}").json()
        assert vm["state"] == "running" and vm["task_state"] is None and vm["vcpus"] == 1


def _same_problem(a: httpx.Response, b: httpx.Response, a_id: str = "", b_id: str = "") -> None:
    """Two refusals a client cannot tell apart: same status, same body but for the request path
    (and the id each one asked about, ``a_id`` and ``b_id``)."""
    assert a.status_code == b.status_code, (a.text, b.text)
    body_a, body_b = a.json(), b.json()
    body_a.pop("instance", None)
    body_b.pop("instance", None)
    if a_id:
        body_a = json.loads(json.dumps(body_a).replace(a_id, "ID"))
        body_b = json.loads(json.dumps(body_b).replace(b_id, "ID"))
    assert body_a == body_b


def test_shared_views_and_identities_do_not_leak_across_tenants(server: Server) -> None:
    """Issue 11 finding 16: quota lookups, host groups, hosts and usernames tell one tenant nothing
    about another."""
    with server.client() as admin:
        alice, alice_project = tenant_user(admin, server, "alpha")
        bob, bob_project = tenant_user(admin, server, "beta", role="tenant-admin")
        tenants = {t["name"]: t["id"] for t in admin.get("/v1/tenants").json()["items"]}
        [alice_user] = admin.get("/v1/users", params={"username": "alpha-user"}).json()["items"]

        # a foreign user id in a quota lookup: answered as a nonexistent one, and nothing is created
        nodes_before = admin.get("/v1/quota/nodes", params={"limit": 500}).json()["items"]
        foreign = bob.get("/v1/quota", params={"project_id": bob_project, "user_id": alice_user["id"]})
        missing = bob.get("/v1/quota", params={"project_id": bob_project, "user_id": "user-0000000000000000"})
        assert foreign.status_code == 404 and "alpha-user" not in foreign.text
        assert foreign.text.replace(alice_user["id"], "X") == missing.text.replace(
            "user-0000000000000000", "X"
        )
        # reading one's own tenant, project and user nodes writes nothing either
        for params in ({}, {"project_id": bob_project}):
            assert bob.get("/v1/quota", params=params).status_code == 200
        assert admin.get("/v1/quota/nodes", params={"limit": 500}).json()["items"] == nodes_before
        assert all(n["tenant_id"] != tenants["alpha"] for n in bob.get("/v1/quota/nodes").json()["items"])
        # a node not created yet is made by an explicit write (its PATCH), for its own tenant only
        alpha_node = f"project:{alice_project}"
        unborn = bob.get("/v1/quota", params={"node_id": f"project:{bob_project}"})
        assert unborn.status_code == 200 and unborn.headers["ETag"] == f'"project:{bob_project}.v0"'
        _same_problem(
            bob.get("/v1/quota", params={"node_id": alpha_node}),
            bob.get("/v1/quota", params={"node_id": "project:project-0000000000000000"}),
            alice_project,
            "project-0000000000000000",
        )
        r = bob.patch(f"/v1/quota/nodes/{alpha_node}", json={"limits": {"vms": 5}})
        nowhere = "project-0000000000000000"
        r2 = bob.patch(f"/v1/quota/nodes/project:{nowhere}", json={"limits": {"vms": 5}})
        _same_problem(r, r2, alice_project, nowhere)
        assert r.status_code == 404
        assert admin.get("/v1/quota", params={"node_id": alpha_node}).json()["version"] == 0  # not created
        r = admin.patch(
            f"/v1/quota/nodes/{alpha_node}",
            json={"limits": {"vms": 5}},
            headers={"If-Match": f'"{alpha_node}.v0"'},
        )
        assert r.status_code == 200, r.text
        assert {x["resource"]: x["limit"] for x in r.json()["resources"]}["vms"] == 5
        # a policy rule scoped to alpha's project is alpha's business, not beta's
        rule = {
            "name": "alpha-cap",
            "kind": "max_size",
            "resource": "vcpus",
            "node_id": alpha_node,
            "params": {"max": 4},
        }
        assert admin.post("/v1/policy-rules", json=rule).status_code == 201
        assert [x["name"] for x in alice.get("/v1/policy-rules").json()["items"]] == ["alpha-cap"]
        assert bob.get("/v1/policy-rules").json()["items"] == []

        # a host group reserved for some tenants: each tenant sees only whether it is one of them
        r = admin.post(
            "/v1/aggregates",
            json={
                "name": "reserved",
                "metadata": {"tenants": f"{tenants['alpha']},{tenants['default']}", "ssd": "1"},
            },
        )
        assert r.status_code == 201, r.text
        agg = r.json()
        assert admin.get(f"/v1/aggregates/{agg['id']}").json()["metadata"]["tenants"].count(",") == 1
        seen_by_alice = alice.get(f"/v1/aggregates/{agg['id']}").json()["metadata"]
        assert seen_by_alice == {"tenants": tenants["alpha"], "ssd": "1"}, seen_by_alice
        [seen_by_bob] = bob.get("/v1/aggregates").json()["items"]
        assert seen_by_bob["metadata"] == {"ssd": "1"}
        assert tenants["alpha"] not in bob.get("/v1/aggregates").text

        # hosts: a capacity summary for tenant roles, the allocation counters for administrators
        [host] = admin.get("/v1/hosts").json()["items"]
        assert "vcpus_used" in host and "ram_mb_used" in host
        for view in (bob.get("/v1/hosts").json()["items"][0], bob.get(f"/v1/hosts/{host['id']}").json()):
            for counter in (
                "vcpus_used",
                "ram_mb_used",
                "last_heartbeat",
                "underlay_ip",
                "cpu_allocation_ratio",
            ):
                assert counter not in view, view
            assert view["vcpus_free_percent"] in (0, 25, 50, 75, 100) and view["cpus"] == host["cpus"]

        # a shared subnet's used addresses are mostly other tenants' ports: not shown to tenants
        r = admin.post(
            "/v1/networks", json={"name": "pub", "shared": True, "project_id": default_project(admin)}
        )
        assert r.status_code == 201, r.text
        r = admin.post(
            "/v1/subnets", json={"network": r.json()["id"], "name": "pub-v4", "cidr": "10.77.0.0/24"}
        )
        assert r.status_code == 201, r.text
        assert isinstance(admin.get(f"/v1/subnets/{r.json()['id']}").json()["used_ips"], int)
        assert bob.get(f"/v1/subnets/{r.json()['id']}").json()["used_ips"] is None
        assert [x["used_ips"] for x in bob.get("/v1/subnets").json()["items"]] == [None]

        # usernames are unique per tenant: a name used elsewhere is neither refused nor revealed
        twin = {"username": "alpha-user", "password": "another-horse-battery-7", "role": "member"}
        r = bob.post("/v1/users", json=twin)
        assert r.status_code == 201, r.text
        assert r.json()["tenant_id"] == tenants["beta"]
        r = bob.post("/v1/users", json={**twin, "username": "beta-user"})
        assert r.status_code == 409 and r.json()["errors"][0]["field"] == "body.username"
        # by name, a tenant admin finds its own user of that name, never the other tenant's
        assert bob.get("/v1/users/alpha-user").json()["tenant_id"] == tenants["beta"]

        def login(username: str, password: str, tenant: str | None = None) -> httpx.Response:
            body = {"username": username, "password": password, **({"tenant": tenant} if tenant else {})}
            return httpx.post(f"{server.url}/v1/tokens", json=body, timeout=30)

        # a tenant user's name needs its tenant; without one the answer is that of an unknown user
        ambiguous = login("alpha-user", TENANT_PASSWORD)
        _same_problem(ambiguous, login("no-such-user", TENANT_PASSWORD))
        _same_problem(ambiguous, login("beta-user", "wrong-password-123"))
        for tenant, password in ((tenants["alpha"], TENANT_PASSWORD), ("beta", twin["password"])):
            r = login("alpha-user", password, tenant)
            assert r.status_code == 200, r.text
            me = server.client(r.json()["access_token"]).get("/v1/tokens/current").json()
            assert me["tenant_id"] == (tenants["alpha"] if password == TENANT_PASSWORD else tenants["beta"])
        _same_problem(
            login("alpha-user", TENANT_PASSWORD, "beta"), login("no-such-user", TENANT_PASSWORD, "beta")
        )
        # a tenant user names its tenant even when its name is unique (nothing to learn from a
        # refusal); the platform administrator needs none
        _same_problem(login("beta-user", TENANT_PASSWORD), login("no-such-user", TENANT_PASSWORD))
        assert login("beta-user@beta", TENANT_PASSWORD).status_code == 200
        assert login("admin", server.admin_password).status_code == 200

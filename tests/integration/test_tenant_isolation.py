"""Tenant B can neither see nor touch tenant A's VM through any endpoint: every answer is 404."""

from __future__ import annotations

import asyncio

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import Guest, Server, import_guest_image, tenant_user, wait_console, wait_task


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

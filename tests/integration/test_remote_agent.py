"""A second hypervisor host: an agent process that joins over HTTPS and runs real QEMU guests."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import (
    Guest,
    Server,
    destroy_server,
    import_guest_image,
    make_server,
    short_tmpdir,
    tenant_user,
    wait_task,
)
from tests.rfb import RFBClient


class Agent:
    def __init__(self, server: Server, name: str) -> None:
        self.server = server
        self.name = name
        self.state_dir = short_tmpdir("nca")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.env['NOVACRON_AGENT_PORT']}"

    def start(self, join_token: str | None = None, fingerprint: str | None = None) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-m",
            "novacron.cli.main",
            "agent",
            "--server",
            self.url,
            "--name",
            self.name,
            "--state-dir",
            str(self.state_dir),
        ]
        if join_token:
            argv += ["--join-token", join_token, "--ca-fingerprint", fingerprint or ""]
        log = (self.state_dir / "agent.log").open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        return self.proc

    def log(self) -> str:
        return (self.state_dir / "agent.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def cluster() -> Iterator[tuple[Server, Agent]]:
    """A control plane with no embedded agent, and one remote agent host."""
    server = make_server(NOVACRON_EMBEDDED_AGENT="0")
    server.start()
    agent = Agent(server, "node-b")
    try:
        yield server, agent
    finally:
        agent.stop()
        subprocess.run(["pkill", "-9", "-f", f"{agent.state_dir}/"], check=False)
        shutil.rmtree(agent.state_dir, ignore_errors=True)
        destroy_server(server)


def _wait_host(c: httpx.Client, name: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        hosts = {h["name"]: h for h in c.get("/v1/hosts").json()["items"]}
        if name in hosts and hosts[name]["state"] == "up" and int(hosts[name]["cpus"]) > 0:
            return dict(hosts[name])
        time.sleep(0.2)
    raise AssertionError(f"host {name} did not come up: {c.get('/v1/hosts').text}")


def _console(agent: Agent, vm_id: str) -> str:
    path = agent.state_dir / "instances" / vm_id / "console.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _wait_console(agent: Agent, vm_id: str, needle: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while needle not in _console(agent, vm_id):
        assert time.monotonic() < deadline, f"{needle!r} not on the console: {_console(agent, vm_id)[-1500:]}"
        time.sleep(0.3)


def test_agent_joins_runs_vms_survives_restart_and_is_revoked(
    cluster: tuple[Server, Agent], guest: Guest
) -> None:
    server, agent = cluster
    with server.client() as c:
        token = c.post("/v1/hosts/join-tokens", json={"ttl_s": 600}).json()
        assert token["ca_fingerprint"].startswith("sha256:") and "novacron agent" in token["command"]

        # a wrong CA fingerprint is refused before anything secret is sent
        impostor = Agent(server, "node-x")
        assert impostor.start(token["join_token"], "sha256:" + "0" * 64).wait(60) == 1
        assert "refusing to join" in impostor.log()
        shutil.rmtree(impostor.state_dir, ignore_errors=True)

        agent.start(token["join_token"], token["ca_fingerprint"])
        host = _wait_host(c, "node-b")
        assert host["driver"] == "qemu" and host["accelerator"] in ("tcg", "kvm")
        assert (agent.state_dir / "agent.json").stat().st_mode & 0o777 == 0o600
        # the join token was spent
        again = httpx.post(
            f"{agent.url}/v1/agents/join",
            verify=False,
            json={"join_token": token["join_token"], "name": "node-c"},
        )
        assert again.status_code == 401

        import_guest_image(c, guest)
        r = c.post(
            "/v1/vms",
            json={
                "name": "remote-1",
                "image": "test-guest",
                "flavor": "tiny",
                "user_data": "hello from node-b",
                "project_id": host_project(c),
            },
        )
        vm_id = r.json()["vm"]["id"]
        assert wait_task(c, r.json()["task_id"])["state"] == "succeeded"
        assert c.get(f"/v1/vms/{vm_id}").json()["host_id"] == host["id"]
        _wait_console(agent, vm_id, "user-data: hello from node-b")
        # the API reads the console log on the VM's host, wherever that is
        log = c.get(f"/v1/vms/{vm_id}/console-log", params={"tail": 4096})
        assert log.status_code == 200 and "user-data: hello from node-b" in log.text
        # the interactive console of a VM on another host, relayed through the server
        assert re.search(r"\nremote-\d+", asyncio.run(_console_echo(server, c, vm_id)))
        # and its graphical console: RFB from QEMU's VNC unix socket on that host, through the agent
        # (the guest's kernel drives the VGA in a framebuffer mode, bochs-drm, its console on it)
        width, _, name = asyncio.run(_vnc_screen(server, c, vm_id))
        assert width >= 1024 and name == "QEMU (remote-1)"
        # the agent fetched the image over HTTPS into its own store
        assert any((agent.state_dir / "images").rglob("file"))

        # QEMU outlives the agent; a restarted agent (no join token needed) manages it again
        agent.stop()
        time.sleep(1)
        assert c.get(f"/v1/vms/{vm_id}").json()["state"] == "running"
        agent.start()
        r = c.post(f"/v1/vms/{vm_id}/actions/pause")
        assert wait_task(c, r.json()["task_id"])["state"] == "succeeded"
        assert c.get(f"/v1/vms/{vm_id}").json()["state"] == "paused"
        r = c.post(f"/v1/vms/{vm_id}/actions/stop", json={"force": True})
        assert wait_task(c, r.json()["task_id"])["state"] == "succeeded"
        assert c.get(f"/v1/vms/{vm_id}").json()["state"] == "stopped"
        credential = json.loads((agent.state_dir / "agent.json").read_text())["credential"]
        # a snapshot of a VM on another host: flattened there, uploaded into the server's store
        r = c.post(f"/v1/vms/{vm_id}/snapshot", json={"image_name": "remote-snap"})
        assert r.status_code == 202, r.text
        assert wait_task(c, r.json()["task_id"], 120)["state"] == "succeeded"
        snap = c.get(f"/v1/images/{r.json()['image_id']}").json()
        assert snap["status"] == "active" and snap["disk_format"] == "qcow2", snap
        assert snap["virtual_size_bytes"] > 0
        assert not any((agent.state_dir / "images" / ".snapshots").iterdir())  # scratch removed
        # a node may only send the disk of a snapshot it was asked to take
        r = httpx.put(
            f"{agent.url}/v1/agent/snapshots/{snap['id']}",
            content=b"x" * 512,
            verify=ssl.create_default_context(cafile=str(agent.state_dir / "ca.crt")),
            headers={
                "Authorization": f"Bearer {credential}",
                "X-Checksum-SHA256": hashlib.sha256(b"x" * 512).hexdigest(),
            },
        )
        assert r.status_code == 404, r.text
        r = c.post(
            "/v1/vms",
            json={
                "name": "from-remote-snap",
                "image": "remote-snap",
                "flavor": "tiny",
                "user_data": "booted from the snapshot",
                "project_id": host_project(c),
            },
        )
        assert r.status_code == 202, r.text
        clone_id = r.json()["vm"]["id"]
        assert wait_task(c, r.json()["task_id"])["state"] == "succeeded"
        _wait_console(agent, clone_id, "user-data: booted from the snapshot")
        r = c.delete(f"/v1/vms/{clone_id}")
        assert wait_task(c, r.json()["task_id"])["state"] == "succeeded"
        r = c.delete(f"/v1/vms/{vm_id}")
        assert wait_task(c, r.json()["task_id"])["state"] == "succeeded"
        assert not (agent.state_dir / "instances" / vm_id).exists()

        # revocation takes effect at once: the very next request with the credential is refused
        assert c.post(f"/v1/hosts/{host['id']}/revoke").status_code == 204
        r = httpx.post(
            f"{agent.url}/v1/agent/report",
            json={},
            verify=ssl.create_default_context(cafile=str(agent.state_dir / "ca.crt")),
            headers={"Authorization": f"Bearer {credential}"},
        )
        assert r.status_code == 401
        assert agent.proc is not None and agent.proc.wait(30) == 1
        assert c.get(f"/v1/hosts/{host['id']}").json()["state"] == "down"


async def _console_echo(server: Server, c: httpx.Client, vm_id: str) -> str:
    token = c.headers["Authorization"].partition(" ")[2]
    url = f"ws://127.0.0.1:{server.port}/v1/vms/{vm_id}/console"
    seen = b""
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.send(b"\necho remote-$$\n")
        async with asyncio.timeout(30):
            while not re.search(rb"\nremote-\d+", seen):
                message = await ws.recv()
                seen += message if isinstance(message, bytes) else message.encode()
    return seen.decode("utf-8", "replace")


async def _vnc_screen(server: Server, c: httpx.Client, vm_id: str) -> tuple[int, int, str]:
    token = c.headers["Authorization"].partition(" ")[2]
    url = f"ws://127.0.0.1:{server.port}/v1/vms/{vm_id}/vnc"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:

        async def recv() -> bytes:
            message = await ws.recv()
            return message if isinstance(message, bytes) else message.encode()

        rfb = RFBClient(recv, ws.send)
        async with asyncio.timeout(30):
            await rfb.handshake()
            await rfb.request(incremental=False)
            update = await rfb.next_update()
        assert update.rects and any(update.rects[0].pixels)
        return rfb.width, rfb.height, rfb.name


def host_project(c: httpx.Client) -> str:
    return str(c.get("/v1/projects", params={"name": "default"}).json()["items"][0]["id"])


def test_agent_state_dir_paths_stay_short() -> None:
    # unix sockets cap at 107 bytes: the agent's run dir must leave room for its socket names
    assert len(str(Path(short_tmpdir("nca")) / "run" / ("x" * 16 + ".qmp"))) < 100


def _report(agent: Agent, credential: str, ca_dir: Path | None = None) -> int:
    return httpx.post(
        f"{agent.url}/v1/agent/report",
        json={},
        verify=ssl.create_default_context(cafile=str((ca_dir or agent.state_dir) / "ca.crt")),
        headers={"Authorization": f"Bearer {credential}"},
    ).status_code


def _heartbeat(c: httpx.Client, host_id: str) -> str:
    return str(c.get(f"/v1/hosts/{host_id}").json()["last_heartbeat"])


def test_join_token_cannot_take_over_a_host_and_rekey_is_an_admin_action(
    cluster: tuple[Server, Agent],
) -> None:
    """Issue 11 finding 8: a join token with an existing host's name (or id) is refused and the real
    agent keeps its identity; re-keying is an explicit, audited admin action bound to the host."""
    server, agent = cluster
    with server.client() as c:
        token = c.post("/v1/hosts/join-tokens", json={"ttl_s": 600}).json()
        agent.start(token["join_token"], token["ca_fingerprint"])
        host = _wait_host(c, "node-b")
        credential = json.loads((agent.state_dir / "agent.json").read_text())["credential"]

        # an attacker holding a fresh join token tries to take the host over, by name and by id
        stolen = c.post("/v1/hosts/join-tokens", json={"ttl_s": 600}).json()["join_token"]
        for name in ("node-b", host["id"]):
            r = httpx.post(
                f"{agent.url}/v1/agents/join", verify=False, json={"join_token": stolen, "name": name}
            )
            assert r.status_code == 409, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["errors"][0]["field"] == "body.name" and "rejoin-token" in r.json()["detail"]
            assert "credential" not in r.json() or "ncn." not in r.text
        refused = c.get("/v1/audit", params={"action": "agent.join", "outcome": "failed"}).json()["items"]
        assert len(refused) == 2 and {a["resource_id"] for a in refused} == {host["id"]}, refused
        assert all(a["status_code"] == 409 and a["actor_name"].startswith("join-token:") for a in refused)
        # the real agent keeps its credential and keeps reporting
        beat = _heartbeat(c, host["id"])
        deadline = time.monotonic() + 30
        while _heartbeat(c, host["id"]) == beat:
            assert time.monotonic() < deadline, "the agent stopped reporting"
            time.sleep(0.5)
        assert agent.proc is not None and agent.proc.poll() is None
        assert c.get(f"/v1/hosts/{host['id']}").json()["state"] == "up"
        assert _report(agent, credential) == 200
        # the refused token was not spent: it still adds a NEW host
        r = httpx.post(
            f"{agent.url}/v1/agents/join", verify=False, json={"join_token": stolen, "name": "node-new"}
        )
        assert r.status_code == 200 and r.json()["host_id"] != host["id"], r.text

        # tenants cannot re-key a host (nor mint join tokens)
        tenant_admin, _ = tenant_user(c, server, "gamma", role="tenant-admin")
        with tenant_admin:
            assert tenant_admin.post(f"/v1/hosts/{host['id']}/rejoin-token", json={}).status_code == 403
            assert tenant_admin.post("/v1/hosts/join-tokens", json={}).status_code == 403

        # the host is reinstalled: its state dir is gone; the admin mints a re-key token for it
        agent.stop()
        shutil.rmtree(agent.state_dir, ignore_errors=True)
        r = c.post(f"/v1/hosts/{host['id']}/rejoin-token", json={"ttl_s": 600})
        assert r.status_code == 201, r.text
        rekey = r.json()
        assert rekey["host_id"] == host["id"] and "--name node-b" in rekey["command"]
        minted = c.get("/v1/audit", params={"action": "host.rejoin-token"}).json()["items"]
        # the admin's success and the tenant's refused attempt, both on the record
        assert [(a["actor_name"], a["resource_id"], a["outcome"]) for a in minted] == [
            ("admin", host["id"], "success"),
            ("gamma-user", host["id"], "denied"),
        ], minted
        # a re-key token joins as that host only
        r = httpx.post(
            f"{agent.url}/v1/agents/join",
            verify=False,
            json={"join_token": rekey["join_token"], "name": "node-z"},
        )
        assert r.status_code == 409 and r.json()["errors"][0]["field"] == "body.name", r.text

        reinstalled = Agent(server, "node-b")
        try:
            reinstalled.start(rekey["join_token"], rekey["ca_fingerprint"])
            deadline = time.monotonic() + 60
            while not (reinstalled.state_dir / "agent.json").exists():
                assert time.monotonic() < deadline, reinstalled.log()
                time.sleep(0.2)
            again = _wait_host(c, "node-b")
            assert again["id"] == host["id"]
            new_credential = json.loads((reinstalled.state_dir / "agent.json").read_text())["credential"]
            assert new_credential != credential
            # the old credential stopped working; the new one works
            assert _report(agent, credential, reinstalled.state_dir) == 401
            assert _report(agent, new_credential, reinstalled.state_dir) == 200
            rekeyed = c.get("/v1/events", params={"types": "host.rekeyed"}).json()["items"]
            assert [e["resource_id"] for e in rekeyed] == [host["id"]]
        finally:
            reinstalled.stop()
            subprocess.run(["pkill", "-9", "-f", f"{reinstalled.state_dir}/"], check=False)
            shutil.rmtree(reinstalled.state_dir, ignore_errors=True)

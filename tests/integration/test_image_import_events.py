"""Image import from a URL as a task, and the event feed over WebSocket."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from tests.conftest import Guest, Server, default_project, destroy_server, make_server, require, wait_task
from tests.integration import egresslab


@pytest.fixture
def origin(guest: Guest, tmp_path: Path) -> Iterator[egresslab.Origin]:
    """The image server, outside the platform: its own network namespace (loopback is refused)."""
    require(
        os.geteuid() == 0 and shutil.which("nsenter") is not None, "root and nsenter (network namespaces)"
    )
    shutil.copyfile(guest.disk, tmp_path / guest.disk.name)
    with egresslab.origin(tmp_path) as o:
        yield o


def test_import_from_url_runs_as_a_task(guest: Guest, origin: egresslab.Origin) -> None:
    server = make_server(NOVACRON_EGRESS_ALLOW=origin.network, NOVACRON_NETWORK_BACKEND="none")
    server.start()
    try:
        _import_from_url(server, guest, origin.url().rstrip("/"))
    finally:
        destroy_server(server)


def _import_from_url(server: Server, guest: Guest, file_server: str) -> None:
    with server.client() as c:
        pid = default_project(c)
        r = c.post(
            "/v1/images",
            json={"name": "from-url", "project_id": pid, "source_url": f"{file_server}/{guest.disk.name}"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "importing" and r.json()["task_id"]
        task = wait_task(c, r.json()["task_id"])
        assert task["state"] == "succeeded" and task["steps"] == ["download", "validate"]
        image = c.get(f"/v1/images/{r.json()['id']}").json()
        assert image["status"] == "active" and image["disk_format"] == "qcow2"
        assert image["size_bytes"] == guest.disk.stat().st_size

        r = c.post(
            "/v1/images",
            json={"name": "missing", "project_id": pid, "source_url": f"{file_server}/no-such-file"},
        )
        task = wait_task(c, r.json()["task_id"])
        assert task["state"] == "failed" and "404" in str(task["error"])
        assert c.get(f"/v1/images/{r.json()['id']}").json()["status"] == "error"


def test_events_websocket_streams_changes(server: Server) -> None:
    token = server.token()

    async def follow() -> list[dict[str, object]]:
        url = server.url.replace("http", "ws") + "/v1/events/ws?types=image.*"
        got: list[dict[str, object]] = []
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            with server.client(token) as c:
                img = await asyncio.to_thread(
                    c.post, "/v1/images", json={"name": "evt", "project_id": default_project(c)}
                )
                await asyncio.to_thread(c.delete, f"/v1/images/{img.json()['id']}")
            while len(got) < 2:
                got.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        return got

    events = asyncio.run(follow())
    assert [e["type"] for e in events] == ["image.created", "image.deleted"]
    assert events[0]["resource_id"] == events[1]["resource_id"]

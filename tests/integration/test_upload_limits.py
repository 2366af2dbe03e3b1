"""A streamed upload refused past its size limit ends the connection (issue 11, a residual of
finding 15): its 413 said nothing about the connection, so the client kept streaming and the
server read and dropped it. In-process app on a temporary SQLite state dir; the 64 GiB image
limit is lowered for the test (the limit is the failure being injected, not the behaviour)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient

from novacron.compute import images


@pytest.fixture
def admin(in_process_admin: TestClient) -> TestClient:
    return in_process_admin


def test_an_upload_over_its_limit_is_a_413_that_closes_the_connection(
    admin: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 1 << 20)
    project = admin.get("/v1/projects", params={"name": "default"}).json()["items"][0]["id"]
    image = admin.post("/v1/images", json={"name": "too-big", "project_id": project}).json()

    async def chunks() -> AsyncIterator[bytes]:  # 4 MiB, streamed: the refusal comes mid-body
        for _ in range(8):
            yield b"k" * (512 << 10)

    async def put() -> httpx.Response:
        # httpx's ASGI transport hands the app one chunk per message, as a server does (the
        # TestClient would join them into one)
        transport = httpx.ASGITransport(app=admin.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await c.put(
                f"/v1/images/{image['id']}/kernel",
                content=chunks(),
                headers={"Content-Type": "application/octet-stream", **dict(admin.headers)},
            )

    r = anyio.run(put)
    assert r.status_code == 413 and r.json()["errors"][0]["field"] == "body", r.text
    assert r.headers["connection"] == "close"
    # within the limit: stored, and the connection is kept
    r = admin.put(
        f"/v1/images/{image['id']}/kernel",
        content=iter([b"k" * 1024] * 4),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text
    assert "connection" not in r.headers

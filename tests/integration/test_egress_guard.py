"""SSRF: a tenant's image URL must not reach the platform's inside (loopback, link-local, private,
this host), however it is spelt, resolved or redirected; an admin's allow-list opens given ranges.

Real sockets throughout: an "internal service" listens on loopback only (IPv4 and IPv6) and counts
every request it gets; an "outside" origin runs in its own network namespace behind a veth.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from novacron import netguard
from tests.conftest import (
    Guest,
    Server,
    destroy_server,
    free_port,
    make_server,
    require,
    tenant_user,
    wait_task,
)
from tests.integration import egresslab
from tests.integration.egresslab import Handler

SECRET = b"internal-secret " * 4096  # 64 KiB, not text-like in size, clearly identifiable


@pytest.fixture
def internal(tmp_path: Path) -> Iterator[int]:
    """A loopback-only service (127.0.0.1 and ::1 on one port) holding a secret; its port."""
    (tmp_path / "secret.img").write_bytes(SECRET)
    port = free_port()
    servers = [
        egresslab.http_server("127.0.0.1", port, tmp_path),
        egresslab.http_server("::1", port, tmp_path),
    ]
    Handler.hits.clear()
    try:
        yield port
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


@contextmanager
def hosts_entries(*lines: str) -> Iterator[None]:
    """Lines added to /etc/hosts (a real resolver path), then removed (only they: other processes
    may edit the file meanwhile)."""
    hosts = Path("/etc/hosts")
    sep = "" if hosts.read_text().endswith("\n") else "\n"
    with hosts.open("a") as f:
        f.write(sep + "".join(f"{line}\n" for line in lines))
    try:
        yield
    finally:
        kept = [ln for ln in hosts.read_text().splitlines(keepends=True) if ln.rstrip("\n") not in lines]
        hosts.write_text("".join(kept))


@pytest.fixture
def origin(guest: Guest, tmp_path: Path) -> Iterator[egresslab.Origin]:
    require(
        os.geteuid() == 0 and shutil.which("nsenter") is not None, "root and nsenter (network namespaces)"
    )
    served = tmp_path / "served"
    served.mkdir()
    shutil.copyfile(guest.disk, served / "disk.qcow2")
    with egresslab.origin(served) as o:
        yield o


def _images(c: httpx.Client) -> list[dict[str, object]]:
    return list(c.get("/v1/images", params={"limit": 500}).json()["items"])


def _import_tasks(c: httpx.Client) -> int:
    items = c.get("/v1/tasks", params={"limit": 500}).json()["items"]
    return sum(1 for t in items if t["kind"] == "image.import")


def test_internal_targets_refused_before_any_request(server: Server, internal: int) -> None:
    p, name = internal, f"cdn-{uuid.uuid4().hex[:8]}.example.com"
    urls = [
        f"http://127.0.0.1:{p}/secret.img",
        f"http://2130706433:{p}/secret.img",
        f"http://0x7f000001:{p}/secret.img",
        f"http://017700000001:{p}/secret.img",
        f"http://127.1:{p}/secret.img",
        f"http://localhost:{p}/secret.img",
        f"http://[::1]:{p}/secret.img",
        f"http://[::ffff:127.0.0.1]:{p}/secret.img",
        f"http://0.0.0.0:{p}/secret.img",
        f"http://{name}:{p}/secret.img",  # a public-looking name that resolves to loopback
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://10.0.0.1/",
        "http://100.64.0.1/",
        f"http://127.0.0.1:{server.port}/v1/images",  # the platform's own API
        f"http://127.0.0.1:{server.env['NOVACRON_AGENT_PORT']}/",
        "ftp://example.com/disk.img",
        "file:///etc/passwd",
    ]
    with server.client() as admin, hosts_entries(f"127.0.0.1 {name}"):
        tenant, pid = tenant_user(admin, server, "ssrf")
        for i, url in enumerate(urls):
            r = tenant.post("/v1/images", json={"name": f"probe-{i}", "project_id": pid, "source_url": url})
            assert r.status_code == 422, (url, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert [e["field"] for e in r.json()["errors"]] == ["body.source_url"], (url, r.text)
        assert _images(tenant) == [] and _import_tasks(admin) == 0
    assert Handler.hits == []  # not one request reached the internal service


def test_allowed_origin_imports_and_redirects_inside_fail(
    guest: Guest, internal: int, origin: egresslab.Origin
) -> None:
    srv = make_server(NOVACRON_EGRESS_ALLOW=origin.network, NOVACRON_NETWORK_BACKEND="none")
    srv.start()
    try:
        with srv.client() as admin:
            tenant, pid = tenant_user(admin, srv, "outside")

            def import_(name: str, url: str) -> dict[str, object]:
                r = tenant.post("/v1/images", json={"name": name, "project_id": pid, "source_url": url})
                assert r.status_code == 201, r.text
                task = wait_task(tenant, r.json()["task_id"])
                return {"task": task, "image": tenant.get(f"/v1/images/{r.json()['id']}").json()}

            # the admin's range works: the image is the origin's bytes
            got = import_("fetched", origin.url("/disk.qcow2"))
            assert got["image"]["status"] == "active", got  # type: ignore[index]
            assert got["image"]["checksum_sha256"] == hashlib.sha256(guest.disk.read_bytes()).hexdigest()  # type: ignore[index]

            # an allowed origin redirecting inside: the hop is checked, nothing internal is fetched
            for i, inside in enumerate(
                [f"http://127.0.0.1:{internal}/secret.img", f"http://[::1]:{internal}/secret.img",
                 "http://169.254.169.254/latest/meta-data/", f"http://{origin.host_ip}:{origin.port}/"]
            ):  # fmt: skip
                got = import_(f"redirected-{i}", origin.url(f"/redirect?to={inside}"))
                assert got["task"]["state"] == "failed" and got["image"]["status"] == "error"  # type: ignore[index]
                assert "internal-secret" not in str(got["task"]["error"])  # type: ignore[index]
            assert Handler.hits == []

            # a closed port and an open port that does not speak HTTP fail with the same words
            errors = []
            for name, port in (("closed", origin.port + 2), ("mute", origin.port + 1)):
                url = f"http://{origin.ip}:{port}/disk.qcow2"
                got = import_(name, url)
                assert got["task"]["state"] == "failed"  # type: ignore[index]
                errors.append(str(got["task"]["error"]).replace(url, "URL"))  # type: ignore[index]
            assert errors[0] == errors[1] and "could not download" in errors[0].lower()

            # this host's end of the veth is inside the allowed range but is the platform itself
            r = tenant.post(
                "/v1/images",
                json={
                    "name": "own",
                    "project_id": pid,
                    "source_url": f"http://{origin.host_ip}:{origin.port}/",
                },
            )
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.source_url", r.text
    finally:
        destroy_server(srv)


def test_resolved_once_every_answer_checked_and_pinned(origin: egresslab.Origin) -> None:
    policy = netguard.EgressPolicy(allow=netguard.parse_networks(origin.network))
    name = f"mirror-{uuid.uuid4().hex[:8]}.example.net"
    # one answer inside among several: refused (a client could be sent to either)
    with hosts_entries(f"{origin.ip} {name}", f"127.0.0.1 {name}"), pytest.raises(netguard.EgressDenied):
        netguard.check_url(f"http://{name}:{origin.port}/host", policy)
    with hosts_entries(f"{origin.ip} {name}"):
        target = netguard.check_url(f"http://{name}:{origin.port}/host", policy)
    assert str(target.address) == origin.ip
    # the name now points at loopback ("DNS rebinding"): the checked address is still the one used
    with hosts_entries(f"127.0.0.1 {name}"):

        async def fetch() -> tuple[int, bytes]:
            client, response = await netguard.send_to(target, "GET", 10)
            try:
                return response.status_code, await response.aread()
            finally:
                await response.aclose()
                await client.aclose()

        status, body = asyncio.run(fetch())
    assert status == 200 and body.decode() == f"{name}:{origin.port}"  # Host header kept on the name

"""The Python SDK (novacron.sdk) against a real server: one module-scoped node whose compute driver
is simulated (the SDK's subject is the API, not QEMU).

Failures are injected at the client's transport only (``httpx.BaseTransport`` wrappers around the
real one): a connection refused once, a 503 once, a response lost after the server acted, an event
stream cut in the middle of an event. Everything else is the real server answering.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from novacron.cli.main import app
from novacron.sdk import ApiError, Client, RetryPolicy, TransportError
from novacron.sdk.generated import OPERATIONS
from tests.conftest import TENANT_PASSWORD, Guest, Server, destroy_server, make_server

FAST = RetryPolicy(attempts=4, backoff_s=0.05)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = make_server(NOVACRON_COMPUTE_DRIVER="simulated")
    srv.start(timeout_s=90)
    try:
        yield srv
    finally:
        destroy_server(srv)


@pytest.fixture(scope="module")
def admin(server: Server) -> Iterator[Client]:
    with Client.login(server.url, "admin", server.admin_password, retry=FAST) as client:
        yield client


@pytest.fixture(scope="module")
def tenant(admin: Client) -> dict[str, str]:
    """A tenant made through the SDK: its id, its project "main" and a member's name."""
    made = admin.tenants.create_tenant({"name": "sdk"})
    project = admin.projects.create_project({"name": "main", "tenant_id": made["id"]})
    admin.users.create_user(
        {"username": "sdk-user", "password": TENANT_PASSWORD, "role": "member", "tenant_id": made["id"]}
    )
    return {"id": made["id"], "project_id": project["id"], "user": "sdk-user"}


@pytest.fixture(scope="module")
def member(server: Server, tenant: dict[str, str]) -> Iterator[Client]:
    with Client.login(server.url, tenant["user"], TENANT_PASSWORD, tenant="sdk", retry=FAST) as client:
        yield client


class Injecting(httpx.BaseTransport):
    """The real transport, except for the requests ``fault`` takes over (it answers None to pass)."""

    def __init__(self, fault: Callable[[httpx.Request, httpx.BaseTransport], httpx.Response | None]) -> None:
        self.real = httpx.HTTPTransport()
        self.fault = fault
        self.seen: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return self.fault(request, self.real) or self.real.handle_request(request)

    def close(self) -> None:
        self.real.close()


def test_every_operation_of_the_openapi_document_is_a_method(admin: Client) -> None:
    import json

    spec = json.loads((Path(__file__).parents[2] / "docs" / "openapi.json").read_text())
    ids = {op["operationId"] for item in spec["paths"].values() for op in item.values()}
    assert set(OPERATIONS) == ids
    for where in OPERATIONS.values():
        group, method = where.split(".")
        assert callable(getattr(getattr(admin, group), method)), where


@pytest.fixture(scope="module")
def image(admin: Client, guest: Guest) -> str:
    """The test guest, imported through the SDK (its parts as octet-stream uploads)."""
    (default,) = admin.projects.iter_projects(name="default")
    made = admin.images.create_image(
        {"name": "sdk-guest", "public": True, "kernel_cmdline": guest.cmdline, "project_id": default["id"]}
    )
    for part, path in (("kernel", guest.kernel), ("initrd", guest.initrd), ("file", guest.disk)):
        done = admin.images.upload_part(made["id"], part, path.read_bytes())  # type: ignore[arg-type]
    assert done["status"] == "active"
    return made["id"]


def test_a_vm_is_created_and_its_task_waited_with_progress(
    member: Client, tenant: dict[str, str], image: str
) -> None:
    accepted = member.vms.create_vm(
        {"name": "sdk-vm", "image": "sdk-guest", "flavor": "tiny", "project_id": tenant["project_id"]}
    )
    seen: list[dict[str, Any]] = []
    task = member.wait_task(accepted["task_id"], on_progress=seen.append, timeout=120)
    assert task["state"] == "succeeded" and task["progress"] == 100
    assert seen and seen[-1]["state"] == "succeeded"
    # from the first read (the task already running) through each step's event to the end
    progress = [(t["step_index"], t["progress"]) for t in seen]
    assert progress == sorted(progress) and len(seen) >= 2 and seen[0]["state"] in ("pending", "running"), (
        seen
    )
    assert member.vms.get_vm(accepted["vm"]["id"])["state"] == "running"
    gone = member.vms.delete_vm(accepted["vm"]["id"])
    # without the event stream: polling, the same outcome
    assert member.wait_task(gone["task_id"], timeout=120, use_events=False)["state"] == "succeeded"
    with pytest.raises(ApiError) as missing:
        member.vms.get_vm(accepted["vm"]["id"])
    assert missing.value.status == 404


def test_iteration_follows_the_cursor_over_every_page(admin: Client, tenant: dict[str, str]) -> None:
    made = {
        admin.projects.create_project({"name": f"p-{i}", "tenant_id": tenant["id"]})["id"] for i in range(7)
    }
    got = [p["id"] for p in admin.projects.iter_projects(tenant_id=tenant["id"], page_size=3)]
    assert len(got) == len(set(got)) and made <= set(got)
    first = admin.projects.list_projects(tenant_id=tenant["id"], limit=3)
    assert len(first["items"]) == 3 and first["next_cursor"]


def test_safe_requests_are_retried_after_a_refused_connection_and_a_503(
    server: Server, admin: Client, tenant: dict[str, str]
) -> None:
    faults = ["refuse", "503"]

    def flaky(request: httpx.Request, real: httpx.BaseTransport) -> httpx.Response | None:
        if request.method == "GET" and faults:
            fault = faults.pop(0)
            if fault == "refuse":
                raise httpx.ConnectError("connection refused (injected)", request=request)
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"title": "busy", "status": 503})
        return None

    transport = Injecting(flaky)
    with Client(server.url, token=admin.core.token, transport=transport, retry=FAST) as client:
        assert client.projects.get_project(tenant["project_id"])["name"] == "main"
    assert [r.method for r in transport.seen] == ["GET", "GET", "GET"] and not faults
    # a write the server does not deduplicate is never sent twice
    transport = Injecting(lambda r, _: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)))
    client = Client(server.url, token=admin.core.token, transport=transport, retry=FAST)
    with client, pytest.raises(TransportError, match="refused"):
        client.core.call("POST", "/v1/usage/meter")
    assert len(transport.seen) == 1


def test_an_idempotent_create_whose_answer_was_lost_is_retried_into_the_same_resource(
    server: Server, admin: Client, tenant: dict[str, str]
) -> None:
    lost: list[httpx.Response] = []

    def lose_first_answer(request: httpx.Request, real: httpx.BaseTransport) -> httpx.Response | None:
        if request.method == "POST" and not lost:
            response = real.handle_request(request)  # the server makes the project...
            response.read()
            lost.append(response)
            raise httpx.ReadError("connection reset (injected)", request=request)  # ...the client never hears
        return None

    transport = Injecting(lose_first_answer)
    with Client(server.url, token=admin.core.token, transport=transport, retry=FAST) as client:
        project = client.projects.create_project({"name": "once", "tenant_id": tenant["id"]})
    assert lost[0].status_code == 201 and project["id"] == lost[0].json()["id"]
    posts = [r for r in transport.seen if r.method == "POST"]
    assert len(posts) == 2 and posts[0].headers["Idempotency-Key"] == posts[1].headers["Idempotency-Key"]
    assert [p["id"] for p in admin.projects.iter_projects(name="once")] == [project["id"]]


def test_a_refused_request_raises_the_problem_with_its_field(admin: Client) -> None:
    with pytest.raises(ApiError) as refused:
        admin.projects.create_project({"name": "", "tenant_id": "nope"})
    error = refused.value
    assert error.status == 422 and error.title and error.detail
    assert "body.name" in error.fields, error.errors


class Cutting(httpx.SyncByteStream):
    """An event stream that breaks in the middle of its ``keep + 1``-th event."""

    def __init__(self, upstream: httpx.SyncByteStream, keep: int) -> None:
        self.upstream = upstream
        self.keep = keep

    def __iter__(self) -> Iterator[bytes]:
        buffer, passed = b"", 0
        for chunk in self.upstream:
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                if b"id:" in block and passed == self.keep:
                    yield block[: len(block) // 2]
                    raise httpx.ReadError("stream cut (injected)")
                passed += b"id:" in block
                yield block + b"\n\n"

    def close(self) -> None:
        self.upstream.close()


def test_following_events_resumes_after_a_cut_without_losing_or_repeating_one(
    server: Server, admin: Client
) -> None:
    start = admin.events.list_events(tail=True, limit=1)["last_seq"]
    for i in range(6):
        admin.aggregates.create_aggregate({"name": f"ev-{i}"})
    cuts = [2, 2]

    def cut(request: httpx.Request, real: httpx.BaseTransport) -> httpx.Response | None:
        if request.url.path != "/v1/events/stream" or not cuts:
            return None
        response = real.handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            response.status_code, headers=response.headers, stream=Cutting(response.stream, cuts.pop(0))
        )

    transport = Injecting(cut)
    with Client(server.url, token=admin.core.token, transport=transport, retry=FAST) as client:
        events = client.follow_events(types="aggregate.*", last_event_id=start)
        got = [next(events) for _ in range(6)]
        # and a live one, made while the follower waits
        live: list[str] = []

        def make() -> None:
            live.append(admin.aggregates.create_aggregate({"name": "ev-live"})["id"])

        threading.Timer(0.3, make).start()
        got.append(next(events))
        events.close()
    expected = admin.events.list_events(after=start, types="aggregate.*")["items"]
    assert [e.seq for e in got] == [e["seq"] for e in expected]
    assert got[-1].resource_id == live[0] and got[-1].type == "aggregate.created"
    streams = [r for r in transport.seen if r.url.path == "/v1/events/stream"]
    assert len(streams) == 3 and not cuts
    assert [r.headers["Last-Event-ID"] for r in streams] == [str(start), str(got[1].seq), str(got[3].seq)]


def test_the_cli_waits_through_the_sdk(
    server: Server, admin: Client, tenant: dict[str, str], image: str, tmp_path: Path
) -> None:
    env = {
        "NOVACRON_URL": server.url,
        "NOVACRON_TOKEN": admin.core.token,
        "NOVACRON_CONFIG": str(tmp_path / "credentials.json"),
        "COLUMNS": "200",
    }
    args = ["vm", "create", "--name", "cli-vm", "--image", "sdk-guest", "--flavor", "tiny"]
    r = CliRunner().invoke(app, [*args, "--project", tenant["project_id"]], env=env, prog_name="novacron")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert "100%" in r.stderr  # the progress bar, fed by the SDK's wait_task
    (vm,) = admin.vms.iter_vms(name="cli-vm")
    assert vm["state"] == "running"

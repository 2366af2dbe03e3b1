"""A VM create on a real node is ONE trace: the API request, the task and its steps, the host
operations, the agent's handling of them and the QMP commands, with correct parent links; on an
all-in-one node and with a remote agent process; and the log lines of that work carry its trace_id."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Guest, Server, import_guest_image, tenant_user, wait_task
from tests.integration.test_remote_agent import Agent, _wait_host, cluster  # noqa: F401 - a fixture

CREATE_STEPS = ("validate", "place", "prepare", "launch", "wait_running")
#: what a create's trace holds once every span of it is stored
WHOLE = {"POST /v1/vms", "task vm.create", "agent prepare", "agent launch", "agent wait_state"}


def _create(client: httpx.Client, project_id: str, traceparent: str) -> tuple[str, str]:
    r = client.post(
        "/v1/vms",
        json={"name": "traced", "image": "test-guest", "flavor": "tiny", "project_id": project_id},
        headers={"traceparent": traceparent},
    )
    assert r.status_code == 202, r.text
    return r.json()["vm"]["id"], r.json()["task_id"]


def _whole_trace(client: httpx.Client, trace_id: str, timeout_s: float = 30) -> list[dict[str, Any]]:
    """The trace's spans once the task's and the agent's last ones are stored: each role exports its
    spans in batches of its own, so they arrive a moment after the work, in no fixed order."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = client.get(f"/v1/traces/{trace_id}")
        spans: list[dict[str, Any]] = r.json()["spans"] if r.status_code == 200 else []
        names = {s["name"] for s in spans}
        if names >= WHOLE and any(n.startswith("qmp ") for n in names):
            return spans
        assert time.monotonic() < deadline, f"the trace is not whole: {sorted(names)}"
        time.sleep(0.2)


def _check_tree(spans: list[dict[str, Any]], client_span: str) -> dict[str, dict[str, Any]]:
    """Every span's parent is in the trace, but the API request's, whose parent is the client's."""
    by_id = {s["span_id"]: s for s in spans}
    (api,) = [s for s in spans if s["name"] == "POST /v1/vms"]
    assert api["parent_id"] == client_span and api["kind"] == "server"
    assert all(s["parent_id"] in by_id for s in spans if s is not api)
    named = {s["name"]: s for s in spans}
    task = named["task vm.create"]
    assert task["parent_id"] == api["span_id"]
    for step in CREATE_STEPS:
        assert named[f"step {step}"]["parent_id"] == task["span_id"]
    hostop, agent = named["hostop launch"], named["agent launch"]
    assert hostop["parent_id"] == named["step launch"]["span_id"]
    assert agent["parent_id"] == hostop["span_id"] and agent["service"] == "novacron-agent"
    qmp = [s for s in spans if s["name"].startswith("qmp ")]
    assert qmp, [s["name"] for s in spans]
    for span in qmp:
        assert span["attributes"]["qmp.command"] == span["name"].removeprefix("qmp ")
        assert by_id[span["parent_id"]]["name"].startswith("agent ")  # within an agent operation
    waited = named["agent wait_state"]
    assert any(s["parent_id"] == waited["span_id"] and s["name"] == "qmp query-status" for s in qmp)
    return named


def _log_lines(path: Path, trace_id: str) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("trace_id") == trace_id:
                lines.append(record)
    return lines


def test_a_vm_create_is_one_trace_from_the_api_to_qmp(server: Server, guest: Guest) -> None:
    with server.client() as admin:
        import_guest_image(admin, guest)
        acme, project = tenant_user(admin, server, "acme")
        globex, _ = tenant_user(admin, server, "globex")
        trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
        vm_id, task_id = _create(acme, project, f"00-{trace_id}-{client_span}-01")
        assert wait_task(acme, task_id)["state"] == "succeeded"

        spans = _whole_trace(admin, trace_id)
        named = _check_tree(spans, client_span)
        assert named["agent launch"]["host"] == server.env["NOVACRON_HOST_NAME"]
        assert named["agent launch"]["attributes"]["novacron.vm_id"] == vm_id
        # the tenant that made the request sees it whole, without the platform's hosts
        own = acme.get(f"/v1/traces/{trace_id}").json()["spans"]
        assert {s["span_id"] for s in own} == {s["span_id"] for s in spans}
        assert {s["host"] for s in own} == {""}
        assert trace_id in [t["trace_id"] for t in acme.get("/v1/traces").json()["items"]]
        # another tenant does not know it exists
        assert globex.get(f"/v1/traces/{trace_id}").status_code == 404
        assert trace_id not in [t["trace_id"] for t in globex.get("/v1/traces").json()["items"]]

    # from the trace to the log lines: the task's line and the agent's carry its trace_id
    lines = _log_lines(server.log_path, trace_id)
    assert any(f"task {task_id}" in line["message"] and "succeeded" in line["message"] for line in lines), (
        lines
    )
    assert any(line["message"].startswith("operation launch on ") for line in lines), lines
    assert all(line["span_id"] in {s["span_id"] for s in spans} for line in lines)


def test_a_remote_agents_spans_reach_the_control_planes_store(
    cluster: tuple[Server, Agent],  # noqa: F811 - the fixture imported above
    guest: Guest,
) -> None:
    server, agent = cluster
    with server.client() as c:
        token = c.post("/v1/hosts/join-tokens", json={"ttl_s": 600}).json()
        agent.start(token["join_token"], token["ca_fingerprint"])
        _wait_host(c, "node-b")
        import_guest_image(c, guest)
        project = c.get("/v1/projects", params={"name": "default"}).json()["items"][0]["id"]
        trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
        _vm_id, task_id = _create(c, project, f"00-{trace_id}-{client_span}-01")
        assert wait_task(c, task_id, 180)["state"] == "succeeded"
        spans = _whole_trace(c, trace_id)
        named = _check_tree(spans, client_span)
        assert {named[f"agent {op}"]["host"] for op in ("prepare", "launch", "wait_state")} == {"node-b"}
        # the agent fetched the image within its operation: the server's span of that joins the trace
        fetches = [s for s in spans if s["name"].startswith("GET /v1/images/{image_id}/")]
        assert fetches and all(s["parent_id"] == named["agent prepare"]["span_id"] for s in fetches), [
            (s["name"], s["parent_id"]) for s in spans
        ]
    # the agent process logs JSON lines with the trace_id of the operation they were written in
    assert any(line["message"].startswith("operation launch on ") for line in _log_lines(
        agent.state_dir / "agent.log", trace_id))  # fmt: skip

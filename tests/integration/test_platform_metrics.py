"""The platform's own metrics at ``GET /metrics``, read the way an operator reads them.

Real parts: a ``novacron-server`` process (its embedded agent on the simulated compute driver: the
metrics are the control plane's, and a create must finish in seconds on this 2-core machine), the
real ``promtool check metrics`` on its real output, and a real Prometheus scraping it every second
with the scrape token the node made at its first start, answering PromQL over its HTTP API.
"""

from __future__ import annotations

import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import (
    Guest,
    Server,
    default_project,
    destroy_server,
    import_guest_image,
    make_server,
    require,
    tenant_user,
    wait_task,
)
from tests.services.prometheus import Vector, bearer_job, start_prometheus

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

PROMTOOL = "/usr/bin/promtool"
MISSING_VMS = 3


@pytest.fixture(scope="module")
def node(guest: Guest) -> Iterator[Server]:
    """A node that answered some API traffic and ran a VM create to its end."""
    server = make_server(NOVACRON_COMPUTE_DRIVER="simulated", NOVACRON_NETWORK_BACKEND="none")
    server.start(timeout_s=120)
    try:
        with server.client() as admin:
            import_guest_image(admin, guest)
            for _ in range(MISSING_VMS):  # three ids, one route
                assert admin.get(f"/v1/vms/vm-{uuid.uuid4().hex[:16]}").status_code == 404
            body = {"name": "metered", "image": "test-guest", "flavor": "tiny"}
            r = admin.post("/v1/vms", json={**body, "project_id": default_project(admin)})
            assert r.status_code == 202, r.text
            assert wait_task(admin, r.json()["task_id"])["state"] == "succeeded"
        yield server
    finally:
        destroy_server(server)


def _token_file(server: Server) -> Path:
    return server.state_dir / "metrics-scrape-token"


def _scrape(server: Server) -> httpx.Response:
    token = _token_file(server).read_text().strip()
    r = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r


def test_promtool_finds_the_exposition_clean(node: Server, tmp_path: Path) -> None:
    require(Path(PROMTOOL).exists(), f"{PROMTOOL} is not installed (scripts/setup.sh installs it)")
    r = _scrape(node)
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = r.text
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True)
    assert checked.returncode == 0 and not checked.stdout and not checked.stderr, checked
    # a route is its template, whatever id was asked for
    assert 'route="/v1/vms/{vm_id}",status="404"} 3.0' in text
    assert "vm-" not in "".join(line for line in text.splitlines() if "route=" in line)
    for family in (
        "novacron_task_queue_depth",
        "novacron_agent_heartbeat_age_seconds",
        "novacron_db_pool_checked_out",
        "novacron_controller_leader",
        "novacron_placement_decisions_total",
    ):
        assert f"\n{family}{{" in text, family


def test_the_scrape_token_is_private_and_only_admins_read_otherwise(node: Server) -> None:
    mode = stat.S_IMODE(_token_file(node).stat().st_mode)
    assert mode == 0o600, oct(mode)
    anonymous = httpx.get(f"{node.url}/metrics", timeout=10)
    forged = httpx.get(f"{node.url}/metrics", headers={"Authorization": "Bearer ncscrape_x"}, timeout=10)
    for r in (anonymous, forged):
        assert r.status_code == 401, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    with node.client() as admin:
        assert admin.get("/metrics").status_code == 200
        for role in ("tenant-admin", "member"):
            user, _project = tenant_user(admin, node, f"m-{role}-{uuid.uuid4().hex[:6]}", role)
            with user:
                r = user.get("/metrics")
            assert r.status_code == 403, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert "novacron_" not in r.text


def _value(vector: Vector) -> float:
    return sum(float(series["value"][1]) for series in vector)


def test_a_real_prometheus_scrapes_the_node(node: Server, tmp_path: Path) -> None:
    target = node.url.removeprefix("http://")
    job = bearer_job("novacron", target, _token_file(node))
    with start_prometheus(tmp_path / "prometheus", [job]) as prometheus:
        prometheus.wait_for('up{job="novacron"} == 1', timeout_s=60)
        requests = prometheus.wait_for(
            'novacron_api_requests_total{method="GET",route="/v1/vms/{vm_id}",status="404"}'
        )
        assert _value(requests) == MISSING_VMS, requests
        created = prometheus.wait_for('novacron_tasks_total{kind="vm.create",outcome="succeeded"}')
        assert _value(created) >= 1, created
        durations = prometheus.query('novacron_task_duration_seconds_count{kind="vm.create"}')
        assert _value(durations) >= 1, durations
        placed = prometheus.query('novacron_placement_decisions_total{outcome="placed"}')
        assert _value(placed) >= 1, placed
        # computed at scrape time: the queue (empty now), this replica's leadership (SQLite: one process)
        queued = prometheus.query('novacron_task_queue_depth{kind="vm.create"}')
        assert {s["metric"]["state"] for s in queued} == {"pending", "running"} and _value(queued) == 0
        leads = prometheus.query("novacron_controller_leader")
        assert {s["metric"]["controller"] for s in leads} >= {"novacron.tasks", "novacron.ha"}, leads
        assert all(s["value"][1] == "1" for s in leads), leads
        host = prometheus.query("novacron_agent_heartbeat_age_seconds")
        assert len(host) == 1 and float(host[0]["value"][1]) < 10, host
        # the embedded agent reports every second: its counter grows between scrapes
        prometheus.wait_for("increase(novacron_agent_heartbeats_total[5s]) > 0")
        # no raw path ever became a label value
        routes = {s["metric"]["route"] for s in prometheus.query("novacron_api_requests_total")}
        assert "/v1/vms/{vm_id}" in routes and not any("vm-" in route for route in routes), routes


def test_labels_stay_bounded_whatever_the_client_sends(in_process_admin: TestClient) -> None:
    client = in_process_admin
    for _ in range(3):
        assert client.get(f"/no-such-page/{uuid.uuid4().hex}").status_code == 404
    assert client.request("BREW", "/v1/flavors").status_code == 405
    assert client.get("/static/no-such-file.js").status_code == 404
    # refused before routing (no token, a body): still counted under the route it was sent to
    assert client.post("/v1/vms", json={}, headers={"Authorization": ""}).status_code == 401
    text = client.get("/metrics").text
    assert 'novacron_api_requests_total{method="GET",route="unmatched",status="404"} 3.0' in text
    assert 'novacron_api_requests_total{method="other",route="/v1/flavors",status="405"} 1.0' in text
    assert 'novacron_api_requests_total{method="GET",route="/static/{path}",status="404"} 1.0' in text
    assert 'novacron_api_requests_total{method="POST",route="/v1/vms",status="401"} 1.0' in text
    assert "no-such" not in text

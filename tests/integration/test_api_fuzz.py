"""Schemathesis drives every operation of /openapi.json with generated input, on a node with data.

No answer may be a 5xx, and every answer must be one the document declares: its status, its
content type and its body's schema (the four checks below). The coverage phase adds the edge
values of every parameter and body field; the stateful phase follows the create operations'
links (create -> get -> update -> delete).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import Server

CONFIG = Path(__file__).with_name("schemathesis.toml")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
#: revoking our own token or rotating keys mid-run would only make later calls 401; the WebSocket
#: routes are documented as the GET that upgrades, which a plain HTTP client cannot make; a live
#: configuration written mid-run (a login limit of 1, an interval of a second) would change what
#: later calls answer (test_live_config.py drives those two operations)
EXCLUDED = [
    *("--exclude-path", "/v1/tokens/current"),
    *("--exclude-path", "/v1/sso/logout"),  # signs out like DELETE /v1/tokens/current
    *("--exclude-operation-id", "change_config_v1_config_patch"),
    *("--exclude-operation-id", "rollback_config_v1_config_rollback_post"),
    *("--exclude-path-regex", r".*/(ws|console|console/\{session\})$"),
]


def seed(client: httpx.Client) -> None:
    """A few resources of each cheap kind, so lists and reads answer with real rows."""
    project = client.post("/v1/projects", json={"name": "fuzz", "tenant_id": _default_tenant(client)})
    project_id = project.json()["id"]
    network = client.post("/v1/networks", json={"name": "fuzz-net", "project_id": project_id})
    creates = [
        ("/v1/flavors", {"name": "fuzz.small", "vcpus": 1, "ram_mb": 256, "disk_gb": 1}),
        ("/v1/images", {"name": "fuzz-image", "project_id": project_id}),
        ("/v1/subnets", {"network": network.json()["id"], "name": "fuzz-sub", "cidr": "10.77.0.0/24"}),
        ("/v1/security-groups", {"name": "fuzz-sg", "project_id": project_id}),
        ("/v1/aggregates", {"name": "fuzz-agg", "metadata": {"zone": "a"}}),
        ("/v1/server-groups", {"name": "fuzz-group", "policy": "anti-affinity", "project_id": project_id}),
        ("/v1/tenants", {"name": "fuzz-tenant"}),
    ]
    for path, body in creates:
        r = client.post(path, json=body)
        assert r.status_code in (200, 201, 202), (path, r.text)


def _default_tenant(client: httpx.Client) -> str:
    tenants = client.get("/v1/tenants", params={"name": "default"}).json()["items"]
    return str(tenants[0]["id"])


def st_command(url: str, token: str, phases: str) -> list[str]:
    """The schemathesis run CI makes (and docs/api.md records); bounds in ``schemathesis.toml``."""
    st = Path(sys.executable).parent / "st"
    return [
        str(st if st.exists() else shutil.which("st")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{url}/openapi.json",
        "--checks",
        CHECKS,
        "-H",
        f"Authorization: Bearer {token}",
        "--phases",
        phases,
        "--request-timeout",
        "20",
        "--no-color",
        *EXCLUDED,
    ]


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "HYPOTHESIS_NO_TELEMETRY": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)


def test_every_answer_is_declared_under_generated_input(server: Server) -> None:
    token = server.token()
    with server.client(token) as client:
        seed(client)
    result = run(st_command(server.url, token, "examples,coverage,fuzzing,stateful"))
    # the failures (with their curl reproductions) come before schemathesis' long warnings
    failures = result.stdout.find("FAILURES")
    tail = result.stdout[failures : failures + 6000] if failures >= 0 else ""
    tail += result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    assert "Server error" not in result.stdout, tail

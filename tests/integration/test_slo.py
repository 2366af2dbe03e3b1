"""Synthetic probes and SLOs through a real ``novacron-server`` and a real VictoriaMetrics.

Real parts: the server process and its API, its embedded agent building the tenant network with the
linux backend (bridge, DHCP namespace, dnsmasq), the probe runner checking from inside that DHCP
namespace, VictoriaMetrics storing the probe series and answering the SLO queries. The VM itself runs
on the simulated driver: its "guest" is a network namespace the test plugs into the network's bridge
with the port's address, serving HTTP, which the test can stop.

SLO arithmetic and the burn-rate alerts are checked on series of known shape imported into the same
VictoriaMetrics for probes whose network has no vantage point (no DHCP, no router), so the runner
writes nothing for them: the generated alert expressions are evaluated by VictoriaMetrics itself.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from novacron.network.linux import names
from tests.conftest import (
    Guest,
    Server,
    destroy_server,
    import_guest_image,
    make_server,
    require,
    tenant_user,
)
from tests.integration.test_quota_api import SIM

HTTP_SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"novacron-ok" if self.path == "/health" else b"nope"
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer((sys.argv[1], 8080), H).serve_forever()
"""


@pytest.fixture(scope="module")
def server(guest: Guest) -> Iterator[Server]:
    require(os.geteuid() == 0, "root: the linux network backend and namespaces")
    require(os.path.exists("/usr/bin/victoria-metrics"), "VictoriaMetrics (Debian victoria-metrics)")
    # history of past months is imported: a retention that keeps it
    srv = make_server(**SIM, NOVACRON_METRICS_RETENTION="100y")
    srv.start(timeout_s=120)
    try:
        with srv.client() as admin:
            import_guest_image(admin, guest)
        yield srv
    finally:
        destroy_server(srv)


@pytest.fixture(scope="module")
def victoria(server: Server) -> str:
    """The node's own VictoriaMetrics (as its log names it): the test reads what the probes wrote
    and imports series of known shape into it."""
    found = re.search(r"metrics store: victoriametrics at (http://[\d.:]+)", server.log_path.read_text())
    assert found, "the node runs no VictoriaMetrics"
    return found.group(1)


def poll(
    what: str, fn: Callable[[], Any], timeout_s: float = 60.0, seen: Callable[[], Any] | None = None
) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := fn():
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s}s; last seen: {seen() if seen else None}")


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@contextmanager
def guest_namespace(bridge: str, address: str) -> Iterator[str]:
    """A namespace on ``bridge`` holding ``address``/24: the VM's stand-in on its network."""
    ns = "slog" + secrets.token_hex(3)
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", ns, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", ns, "master", bridge, "up")
        sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", ns], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def make_vm(
    client: httpx.Client, project: str, name: str, network: str, cidr: str, dhcp: bool = True
) -> dict[str, Any]:
    r = client.post("/v1/networks", json={"name": network, "project_id": project})
    assert r.status_code == 201, r.text
    net = r.json()
    r = client.post("/v1/subnets", json={"network": net["id"], "name": network, "cidr": cidr, "dhcp": dhcp})
    assert r.status_code == 201, r.text
    vm = {"name": name, "image": "test-guest", "flavor": "tiny", "project_id": project}
    r = client.post("/v1/vms", json={**vm, "networks": [{"network": net["id"]}]})
    assert r.status_code in (201, 202), r.text
    vm_id = r.json()["vm"]["id"]
    ports = client.get("/v1/ports", params={"vm_id": vm_id}).json()["items"]
    return {"vm_id": vm_id, "network_id": net["id"], "ip": ports[0]["fixed_ips"][0]["ip"]}


def last_result(client: httpx.Client, probe_id: str, success: bool) -> dict[str, Any] | None:
    last = client.get(f"/v1/probes/{probe_id}").json()["last_result"]
    return last if last is not None and last["success"] is success else None


def stored(victoria: str, query: str) -> list[Any]:
    data = httpx.get(f"{victoria}/api/v1/query", params={"query": query}, timeout=10).json()["data"]
    return list(data["result"])


def test_a_probe_runs_inside_the_tenant_network_and_sees_its_target_fail(
    server: Server, victoria: str
) -> None:
    with server.client() as admin:
        alpha, alpha_project = tenant_user(admin, server, "probe-alpha")
        beta, beta_project = tenant_user(admin, server, "probe-beta")
    target = make_vm(alpha, alpha_project, "web", "web", "10.62.0.0/24")
    dhcp_ns = names.dhcp_ns(server.env["NOVACRON_HOST_NAME"], target["network_id"])
    poll("the network's DHCP namespace", lambda: Path("/run/netns", dhcp_ns).exists())

    # validation and tenancy: another tenant's VM is invisible, shapes are checked
    body = {"name": "web", "kind": "http", "vm_id": target["vm_id"], "target_port": 8080}
    r = beta.post("/v1/probes", json=body)
    assert r.status_code == 404 and "vm_id" in r.text, r.text
    assert alpha.post("/v1/probes", json={**body, "target_port": None, "kind": "tcp"}).status_code == 422
    assert alpha.post("/v1/probes", json={**body, "interval_s": 1, "timeout_s": 2}).status_code == 422

    r = alpha.post(
        "/v1/probes",
        json={**body, "path": "/health", "body_contains": "novacron-ok", "interval_s": 1, "timeout_s": 1},
        headers={"Idempotency-Key": "probe-web-1"},
    )
    assert r.status_code == 201, r.text
    probe = r.json()
    assert probe["address"] == target["ip"]
    again = alpha.post(
        "/v1/probes",
        json={**body, "path": "/health", "body_contains": "novacron-ok", "interval_s": 1, "timeout_s": 1},
        headers={"Idempotency-Key": "probe-web-1"},
    )
    assert again.json()["id"] == probe["id"]
    r = alpha.post(
        "/v1/probes", json={"name": "ping", "kind": "icmp", "vm_id": "web", "interval_s": 1, "timeout_s": 1}
    )
    assert r.status_code == 201, r.text
    ping = r.json()
    assert beta.get(f"/v1/probes/{probe['id']}").status_code == 404
    assert beta.get("/v1/probes").json()["items"] == []

    bridge = names.bridge(target["network_id"])
    with guest_namespace(bridge, target["ip"]) as ns:
        web = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", HTTP_SERVER, target["ip"]])
        try:
            up = poll(
                "the probe's first success",
                lambda: last_result(alpha, probe["id"], True),
                seen=lambda: alpha.get(f"/v1/probes/{probe['id']}").json()["last_result"],
            )
            assert up["vantage"] is None and up["error"] is None  # the platform's inside: admins only
            with server.client() as admin:
                seen_by_admin = admin.get(f"/v1/probes/{probe['id']}").json()["last_result"]
            assert seen_by_admin["vantage"].endswith(dhcp_ns)
            assert poll("the ping's success", lambda: last_result(alpha, ping["id"], True))
            series = f'novacron_probe_success{{probe_id="{probe["id"]}"}}'
            poll("a stored success", lambda: [s for s in stored(victoria, series) if s["value"][1] == "1"])
            labels = stored(victoria, series)[0]["metric"]
            assert labels["tenant_id"] == probe["tenant_id"] and labels["project_id"] == alpha_project
        finally:
            web.terminate()
            web.wait()
        down = poll("the probe's failure", lambda: last_result(alpha, probe["id"], False))
        assert "refused" in down["error"], down
        poll("a stored failure", lambda: [s for s in stored(victoria, series) if s["value"][1] == "0"], 30)
    down = poll("the ping's failure", lambda: last_result(alpha, ping["id"], False))
    assert "no answer" in down["error"], down
    assert beta_project != alpha_project


def import_series(victoria: str, lines: list[str]) -> None:
    httpx.post(
        f"{victoria}/api/v1/import/prometheus", content="\n".join(lines) + "\n", timeout=60
    ).raise_for_status()
    httpx.get(f"{victoria}/internal/force_flush", timeout=60).raise_for_status()


def success_lines(
    probe: dict[str, Any], start: float, end: float, step: int, failed: Callable[[float], bool]
) -> list[str]:
    labels = f'probe_id="{probe["id"]}",tenant_id="{probe["tenant_id"]}",project_id="{probe["project_id"]}"'
    out = []
    t = start
    while t < end:
        out.append(f"novacron_probe_success{{{labels}}} {0 if failed(t) else 1} {int(t * 1000)}")
        t += step
    return out


@pytest.fixture(scope="module")
def dark(server: Server) -> tuple[httpx.Client, dict[str, Any]]:
    """A tenant with a VM on a network without DHCP or router: the runner writes nothing for its
    probes (no vantage point), so the test alone writes their series."""
    with server.client() as admin:
        client, project = tenant_user(admin, server, "slo-tenant")
    return client, make_vm(client, project, "dark", "dark", "10.63.0.0/24", dhcp=False)


def new_probe(client: httpx.Client, vm: dict[str, Any], name: str, interval_s: int) -> dict[str, Any]:
    r = client.post(
        "/v1/probes",
        json={"name": name, "kind": "tcp", "vm_id": vm["vm_id"], "target_port": 80, "interval_s": interval_s},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def new_slo(client: httpx.Client, probe: dict[str, Any], name: str, target_percent: float) -> dict[str, Any]:
    r = client.post(
        "/v1/slos", json={"name": name, "probe_id": probe["id"], "target_percent": target_percent}
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_slo_budget_and_the_monthly_report_from_known_series(
    dark: tuple[httpx.Client, dict[str, Any]], victoria: str
) -> None:
    client, vm = dark
    probe = new_probe(client, vm, "api", 60)
    slo = new_slo(client, probe, "api-availability", 99.0)
    assert [r["name"] for r in slo["alert_rules"]] == [
        f"{slo['id']}-{n}" for n in ("page-fast", "page-slow", "ticket")
    ]
    assert all(r["rule_id"] for r in slo["alert_rules"])
    incidents = [
        (ts("2026-11-10T12:00:00"), ts("2026-11-10T12:30:00")),
        (ts("2026-11-20T00:00:00"), ts("2026-11-20T01:00:00")),
    ]
    start, end = ts("2026-11-01T00:00:00"), ts("2026-12-01T00:00:00")
    import_series(
        victoria, success_lines(probe, start, end, 60, lambda t: any(a <= t < b for a, b in incidents))
    )
    bad = 30 + 60
    sli = 1 - bad / (30 * 24 * 60)

    status = client.get(f"/v1/slos/{slo['id']}/status", params={"at": end}).json()
    assert status["sli"] == pytest.approx(sli, abs=1e-6)
    assert status["error_budget"] == pytest.approx(0.01)
    assert status["budget_consumed"] == pytest.approx((1 - sli) / 0.01, abs=1e-4)
    assert status["budget_remaining"] == pytest.approx(1 - (1 - sli) / 0.01, abs=1e-4)
    assert status["burn_rate_1h"] == pytest.approx(0.0)

    r = client.get("/v1/slo-report", params={"month": "2026-11", "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
    (row,) = list(csv.DictReader(io.StringIO(r.text)))
    assert row["slo"] == "api-availability" and row["target_percent"] == "99.000"
    assert float(row["achieved_percent"]) == pytest.approx(sli * 100, abs=1e-3)
    assert float(row["budget_used_percent"]) == pytest.approx((1 - sli) / 0.01 * 100, abs=0.01)
    assert row["incidents"] == "2"
    periods = [p.split("/") for p in row["incident_periods"].split(";")]
    step = 260  # a month in at most 10,000 steps
    for (a, b), (got_a, got_b) in zip(incidents, periods, strict=True):
        assert abs(ts(got_a.rstrip("Z")) - a) <= step and abs(ts(got_b.rstrip("Z")) - b) <= step
    assert abs(int(row["downtime_seconds"]) - 90 * 60) <= 4 * step

    page = client.get("/v1/slo-report", params={"month": "2026-11"})
    assert page.headers["content-type"].startswith("text/html")
    assert "SLA report for slo-tenant, 2026-11" in page.text and "api-availability" in page.text
    assert "2026-11-10T12:" in page.text and "2026-11-20T0" in page.text
    assert client.get("/v1/slo-report", params={"month": "2026-13"}).status_code == 422


def firing(victoria: str, expr: str, start: float, end: float) -> list[float]:
    """The evaluation times in [start, end] (every 10 s) at which ``expr`` has a series."""
    params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": 10}
    data = httpx.get(f"{victoria}/api/v1/query_range", params=params, timeout=30).json()["data"]
    return sorted(float(t) for s in data["result"] for t, _ in s["values"])


def test_the_page_alert_fires_on_a_failing_probe_and_not_on_one_flap(
    dark: tuple[httpx.Client, dict[str, Any]], victoria: str, tmp_path: Path
) -> None:
    client, vm = dark
    t0 = ts("2026-12-02T00:00:00")
    start = t0 - 3 * 86400
    failing_from = t0 - 600
    flap_at = t0 - 120
    steady = new_probe(client, vm, "steady", 10)
    flappy = new_probe(client, vm, "flappy", 10)
    import_series(victoria, success_lines(steady, start, t0 + 1, 10, lambda t: t >= failing_from))
    import_series(victoria, success_lines(flappy, start, t0 + 1, 10, lambda t: t == flap_at))
    rules: dict[str, dict[str, str]] = {}  # SLO -> alert (page-fast, ...) -> expression
    for name, p in (("steady", steady), ("flappy", flappy)):
        slo = new_slo(client, p, name, 99.9)
        rules[name] = {r["name"].removeprefix(f"{slo['id']}-"): r["expr"] for r in slo["alert_rules"]}
    fast = rules["steady"]["page-fast"]
    when = firing(victoria, fast, t0 - 900, t0)
    # burn over 1 h passes 14.4 once 52 s of the hour failed (0.0144 / 0.001): not before
    assert when and failing_from + 50 <= when[0] <= failing_from + 70, when
    assert when[-1] == t0
    # the ticket (1x over 3 d and 6 h) once 259 s of the 3 days failed: 10 minutes spend 23 % of a
    # 30-day 99.9 % budget
    ticket = firing(victoria, rules["steady"]["ticket"], t0 - 900, t0)
    assert ticket and failing_from + 240 <= ticket[0] <= failing_from + 280, ticket

    for name, expr in rules["flappy"].items():
        assert firing(victoria, expr, t0 - 900, t0) == [], name
    # the short window alone would have paged: that is what the long one is for
    selector = f'novacron_probe_success{{tenant_id="{flappy["tenant_id"]}",probe_id="{flappy["id"]}"}}'
    short = f"(1 - avg_over_time({selector}[5m])) / 0.001 > 14.4"
    assert firing(victoria, short, t0 - 900, t0)

    # the same rules through vmalert itself: its replay mode evaluates them over the past 15 minutes
    # every 10 s, as it would have live, and writes the alerts it raised back as ALERTS series
    # (10 minutes of failure also pass 6x over 6 h and 30 min: the slow page fires as well)
    raised = replay_alerts(victoria, rules, t0 - 900, t0, tmp_path)
    assert raised == {"steady-page-fast", "steady-page-slow", "steady-ticket"}, raised


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def replay_alerts(
    victoria: str, rules: dict[str, dict[str, str]], start: float, end: float, tmp: Path
) -> set[str]:
    """The names of the alerts vmalert raises evaluating ``rules`` from ``start`` to ``end``."""
    binary = "/usr/bin/vmalert"
    require(os.path.exists(binary), "vmalert (Debian victoria-metrics)")
    group = [
        {"alert": f"{slo}-{name}", "expr": expr}
        for slo, alerts in rules.items()
        for name, expr in alerts.items()
    ]
    rule_file = tmp / "slo-rules.yml"
    rule_file.write_text(json.dumps({"groups": [{"name": "slo", "interval": "10s", "rules": group}]}))
    subprocess.run(
        [
            binary,
            f"-rule={rule_file}",
            f"-datasource.url={victoria}",
            f"-remoteWrite.url={victoria}",
            f"-replay.timeFrom={iso(start)}",
            f"-replay.timeTo={iso(end)}",
            "-replay.disableProgressBar",
            "-httpListenAddr=127.0.0.1:0",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    httpx.get(f"{victoria}/internal/force_flush", timeout=60).raise_for_status()
    names_seen = {f"{slo}-{name}" for slo, alerts in rules.items() for name in alerts}
    query = 'count_over_time(ALERTS{alertstate="firing"}[20m])'
    data = httpx.get(f"{victoria}/api/v1/query", params={"query": query, "time": end + 60}, timeout=30).json()
    return {s["metric"]["alertname"] for s in data["data"]["result"]} & names_seen


def test_a_latency_slo_counts_only_fast_successes(
    dark: tuple[httpx.Client, dict[str, Any]], victoria: str
) -> None:
    client, vm = dark
    probe = new_probe(client, vm, "latency", 60)
    r = client.post(
        "/v1/slos",
        json={
            "name": "fast-api",
            "probe_id": "latency",
            "indicator": "latency",
            "latency_threshold_s": 0.2,
            "target_percent": 90,
            "window_days": 1,
        },
    )
    assert r.status_code == 201, r.text
    slo = r.json()
    end = ts("2026-12-03T00:00:00")
    labels = f'probe_id="{probe["id"]}",tenant_id="{probe["tenant_id"]}",project_id="{probe["project_id"]}"'
    lines = []
    for i in range(1440):  # one day, a run a minute: every 10th slow, every 20th (other) failed fast
        t = int((end - 86400 + 60 * (i + 1)) * 1000)
        slow, failed = i % 10 == 0, i % 20 == 5
        lines.append(f"novacron_probe_success{{{labels}}} {0 if failed else 1} {t}")
        lines.append(f"novacron_probe_duration_seconds{{{labels}}} {0.5 if slow else 0.01} {t}")
    import_series(victoria, lines)
    status = client.get(f"/v1/slos/{slo['id']}/status", params={"at": end}).json()
    assert status["sli"] == pytest.approx(1 - 144 / 1440 - 72 / 1440, abs=1e-3), status
    assert status["budget_consumed"] == pytest.approx(0.15 / 0.1, abs=0.01)


def test_probe_and_slo_rules(server: Server, dark: tuple[httpx.Client, dict[str, Any]]) -> None:
    client, vm = dark
    base = {"vm_id": vm["vm_id"], "interval_s": 10}
    refused = [
        ({**base, "name": "a", "kind": "icmp", "target_port": 80}, "target_port"),
        ({**base, "name": "a", "kind": "tcp", "target_port": 80, "body_contains": "x"}, "body_contains"),
        ({**base, "name": "a", "kind": "smtp", "target_port": 25}, "kind"),
        ({**base, "name": "a", "kind": "tcp", "target_port": 80, "port_id": "nope"}, "port_id"),
    ]
    for body, field in refused:
        r = client.post("/v1/probes", json=body)
        assert r.status_code in (404, 422) and field in r.text, (body, r.text)
    probe = new_probe(client, vm, "kept", 10)
    assert client.post("/v1/probes", json={**base, "name": "kept", "kind": "icmp"}).status_code == 409
    r = client.post(
        "/v1/slos", json={"name": "l", "probe_id": "kept", "indicator": "latency", "target_percent": 99}
    )
    assert r.status_code == 422 and "latency_threshold_s" in r.text
    slo = new_slo(client, probe, "kept-slo", 99.5)
    assert slo["target_percent"] == 99.5 and slo["window_days"] == 30
    assert client.delete(f"/v1/probes/{probe['id']}").status_code == 409  # an SLO measures it
    with server.client() as admin:
        other, _ = tenant_user(admin, server, "slo-other")
        assert admin.get("/v1/slo-report", params={"month": "2026-11"}).status_code == 422  # which tenant?
        named = {"month": "2026-11", "format": "csv", "tenant_id": "slo-tenant"}
        assert "kept-slo" in admin.get("/v1/slo-report", params=named).text
    assert other.get("/v1/slo-report", params=named).status_code == 404  # another tenant's, by name
    assert other.get(f"/v1/slos/{slo['id']}").status_code == 404
    assert other.get(f"/v1/slos/{slo['id']}/status").status_code == 404
    assert (
        other.post("/v1/slos", json={"name": "x", "probe_id": probe["id"], "target_percent": 99}).status_code
        == 404
    )
    assert "kept-slo" not in other.get("/v1/slo-report", params={"month": "2026-11", "format": "csv"}).text
    assert client.delete(f"/v1/slos/{slo['id']}").status_code == 204
    assert client.delete(f"/v1/probes/{probe['id']}").status_code == 204
    assert client.get(f"/v1/probes/{probe['id']}").status_code == 404
    with server.client() as admin:  # every change is in the audit log
        for resource in (probe["id"], slo["id"]):
            records = admin.get("/v1/audit", params={"resource_id": resource}).json()["items"]
            done = {(r["method"], r["status_code"]) for r in records}
            assert {("POST", 201), ("DELETE", 204)} <= done, records
        probe_records = admin.get("/v1/audit", params={"resource_id": probe["id"]}).json()["items"]
        assert ("DELETE", 409) in {(r["method"], r["status_code"]) for r in probe_records}  # refusals too


def test_the_cli_manages_probes_and_slos_and_writes_the_report(
    server: Server, dark: tuple[httpx.Client, dict[str, Any]], tmp_path: Path
) -> None:
    from tests.integration.test_cli import Cli

    _, vm = dark
    cli = Cli(tmp_path / "novacron" / "credentials.json", server)
    cli.ok("login", "--server", server.url, "--password-stdin", stdin=server.admin_password + "\n")
    cli.ok(
        "probe", "create", "cli-web", "--vm", vm["vm_id"], "--kind", "http", "--port", "8080", "--path", "/up"
    )
    listed = cli.ok("probe", "list").out
    assert "cli-web" in listed and f"{vm['ip']}:8080" in listed
    cli.ok("slo", "create", "cli-slo", "--probe", "cli-web", "--target", "99.5", "--latency", "0.3")
    assert "page-fast" in cli.ok("slo", "show", "cli-slo").out
    assert "SLI no data" in cli.ok("slo", "status", "cli-slo").out
    report = tmp_path / "report.csv"
    cli.ok("slo", "report", "--month", "2026-11", "--tenant", "slo-tenant", "-o", str(report))
    rows = list(csv.DictReader(io.StringIO(report.read_text())))
    assert {r["slo"]: r["indicator"] for r in rows}["cli-slo"] == "latency"
    assert cli("probe", "delete", "cli-web").code != 0  # an SLO measures it
    cli.ok("slo", "delete", "cli-slo")
    cli.ok("probe", "delete", "cli-web")
    assert "cli-web" not in cli.ok("probe", "list").out


def test_the_nodes_vmalert_pages_for_a_failing_probe_and_not_for_one_flap(
    dark: tuple[httpx.Client, dict[str, Any]], victoria: str
) -> None:
    """The SLO's rules as the node's own vmalert evaluates them, live: six hours of history up to
    now, one probe failing for its last two minutes, the other failing once a minute ago."""
    client, vm = dark
    now = float(int(time.time()))  # whole seconds: the flap's timestamp is matched exactly
    # six hours: with less, one failure in all the history there is would pass 1x over "3 d" and
    # 6 h (1 in 720 runs of two hours is 1.4x a 0.1 % budget) and rightly raise the ticket
    start = now - 6 * 3600
    steady = new_probe(client, vm, "live-steady", 10)
    flappy = new_probe(client, vm, "live-flappy", 10)
    flap_at = start + 10 * ((now - 60 - start) // 10)
    import_series(victoria, success_lines(steady, start, now, 10, lambda t: t >= now - 120))
    import_series(victoria, success_lines(flappy, start, now, 10, lambda t: t == flap_at))
    flappy_series = f'novacron_probe_success{{probe_id="{flappy["id"]}"}}[7h]'
    flaps = stored(victoria, f"count_over_time({flappy_series}) - sum_over_time({flappy_series})")
    assert flaps and flaps[0]["value"][1] == "1", flaps  # it did fail, once
    # the flapping probe's SLO first: its rules are in vmalert no later than the failing one's
    for name, probe in (("live-flappy", flappy), ("live-steady", steady)):
        assert all(r["rule_id"] for r in new_slo(client, probe, name, 99.9)["alert_rules"])

    def paged() -> list[dict[str, Any]]:
        alerts = client.get("/v1/alerts", params={"state": "firing"}).json()["items"]
        return [
            a for a in alerts if a["labels"].get("slo") == "live-steady" and a["name"].endswith("page-fast")
        ]

    (alert,) = poll("the page of the failing probe", paged, timeout_s=90)
    assert alert["severity"] == "critical" and alert["tenant_id"] == steady["tenant_id"]
    # evaluated in the same rounds as the page that fired: the single failure raised nothing
    everything = client.get("/v1/alerts").json()["items"]
    assert [a["name"] for a in everything if a["labels"].get("slo") == "live-flappy"] == []

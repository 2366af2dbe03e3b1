"""Anomalies on the write path, end to end on real engines.

A shaped series: a VM's agent samples go through ``ctx.monitoring.record`` (as ``record_report``
hands them) of an in-process app whose store is a real VictoriaMetrics; after a short learning
period a CPU spike gives a ``vm.anomaly`` event that its tenant sees and another does not, a
``novacron_anomaly_score`` series the tenant reads through the query API, and an alert of kind
``anomaly`` evaluated by vmalert, routed by Alertmanager. And a real node (simulated driver, whose
series cannot be shaped): its VM's scores reach the node's own store, labelled by the control
plane, and deleting the VM goes through the feed."""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from novacron.context import Context
from novacron.monitoring.alerting.engines import start_alerting
from novacron.monitoring.series import SeriesMap
from novacron.monitoring.stack import MonitoringStack
from novacron.monitoring.store import MetricsStore
from tests.conftest import (
    Guest,
    destroy_server,
    import_guest_image,
    in_process_app,
    make_server,
    require,
    tenant_user,
    wait_task,
)
from tests.integration.alertlab import wait_for
from tests.integration.metrics_engines import tenant_admin, victoriametrics
from tests.integration.test_metrics_store import store_url, wait_query

CPU = "novacron_vm_cpu_seconds_total"
LEARNING_S = 60
HISTORY_S = 240


@dataclass
class Env:
    admin: TestClient
    ctx: Context

    def login(self, tenant: str) -> tuple[TestClient, str]:
        """A tenant-admin of a new tenant ``tenant``: its client and the tenant's id."""
        return tenant_admin(self.admin, tenant)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    require(shutil.which("vmalert") is not None, "vmalert is not installed (scripts/setup.sh)")
    require(shutil.which("prometheus-alertmanager") is not None, "prometheus-alertmanager is not installed")
    settings = {
        "anomaly_learning_s": float(LEARNING_S),
        "anomaly_event_threshold": 0.5,
        "anomaly_step_s": 1.0,
    }
    with (
        victoriametrics(tmp_path) as endpoint,
        in_process_app(tmp_path / "state", **settings) as (client, password, _db),
    ):
        r = client.post("/v1/tokens", json={"username": "admin", "password": password})
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        ctx: Context = client.app.state.ctx  # type: ignore[attr-defined]
        store = MetricsStore(endpoint.engine, endpoint.query_url, f"{endpoint.query_url}/api/v1/write")
        # the node's stack (MonitoringStack.for_node) with the test's engine as its store
        ctx.monitoring = MonitoringStack(store, SeriesMap(str), []).with_anomaly_feed(ctx.settings, ctx.db)
        ctx.monitoring.scoring = lambda: ctx.settings.anomaly_detection  # as server.py wires it
        ctx.monitoring.start()
        alerting = start_alerting(ctx)
        try:
            yield Env(client, ctx)
        finally:
            alerting.stop()
            ctx.monitoring.stop()


class Agent:
    """One host's reports of one VM, as ``record_report`` hands them to the monitoring stack: a
    vCPU-time counter growing at ``cores`` (with noise), byte counters, guest memory."""

    def __init__(self, ctx: Context, vm_id: str, tenancy: tuple[str, str]) -> None:
        self.ctx, self.vm_id, self.tenancy = ctx, vm_id, tenancy
        self.rng = random.Random(vm_id)
        self.cpu = self.rx = 0.0
        self.last: float | None = None

    def report(self, t: float, cores: float) -> None:
        dt = 0.0 if self.last is None else t - self.last
        self.last = t
        self.cpu += (cores + self.rng.random() * 0.02) * dt
        self.rx += 2000 * dt
        sample = {
            "time": t,
            "vcpu_time_s": self.cpu,
            "net_rx_bytes": self.rx,
            "guest_mem_available_bytes": 9e8,
        }
        assert self.ctx.monitoring is not None
        self.ctx.monitoring.record("host-1", {self.vm_id: sample}, {self.vm_id: self.tenancy}, None)


def anomaly_events(client: TestClient) -> list[dict[str, Any]]:
    r = client.get("/v1/events", params={"types": "vm.anomaly", "limit": 100})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def query(client: TestClient, promql: str) -> list[dict[str, Any]]:
    r = client.get("/v1/metrics/query", params={"query": promql})
    assert r.status_code == 200, r.text
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result


def test_a_cpu_spike_is_an_event_a_score_series_and_an_alert_of_its_tenant_only(env: Env) -> None:
    alpha, alpha_id = env.login("alpha")
    beta, beta_id = env.login("beta")
    for client in (alpha, beta):  # the same rule in both tenants; only alpha's VM spikes
        rule = {"name": "cpu-anomaly", "kind": "anomaly", "metric": CPU, "window": "2m", "value": 0.5}
        r = client.post("/v1/alert-rules", json=rule)
        assert r.status_code == 201, r.text
        assert r.json()["expr"].startswith("max_over_time(novacron_anomaly_score{")
    busy = Agent(env.ctx, "vm-alpha", (alpha_id, "p-alpha"))
    calm = Agent(env.ctx, "vm-beta", (beta_id, "p-beta"))
    start = time.time() - HISTORY_S - 10  # ends 10 s ago: room for the switched-off reports below
    for i in range(HISTORY_S):  # four minutes of a VM using ~0.05 cores, learnt in the first one
        busy.report(start + i, 0.05)
        calm.report(start + i, 0.05)
    feed = env.ctx.monitoring.anomaly  # type: ignore[union-attr]
    assert feed is not None and feed.flush(30)
    assert anomaly_events(alpha) == [] and feed.events == 0  # normal samples, no event

    # the live switch: off, reports are not scored (no restart); on again, they are
    r = env.admin.patch("/v1/config", json={"features": {"anomaly_detection": False}})
    assert r.status_code == 200, r.text
    scored = feed.scored
    for ago in (8, 6, 4):  # steps apart: each would be scored
        for agent in (busy, calm):
            agent.report(time.time() - ago, 0.05)
    assert feed.flush(30) and feed.scored == scored
    r = env.admin.patch("/v1/config", json={"features": {"anomaly_detection": None}})
    assert r.status_code == 200 and r.json()["effective"]["features"]["anomaly_detection"] is True, r.text
    for agent in (busy, calm):  # scored again: the rate since the last scored report is still calm
        agent.report(time.time() - 2, 0.05)
    assert feed.flush(30) and feed.scored > scored

    busy.report(time.time(), 0.95)  # a busy loop starts
    calm.report(time.time(), 0.05)
    [event] = wait_for("the vm.anomaly event", lambda: anomaly_events(alpha), 30)
    assert (event["resource_id"], event["tenant_id"], event["project_id"]) == (
        "vm-alpha",
        alpha_id,
        "p-alpha",
    )
    assert event["data"]["metric"] == CPU and event["data"]["score"] >= 0.5
    assert event["data"]["value"] == pytest.approx(0.95, abs=0.05)
    assert anomaly_events(beta) == []
    # the feed's own counters, on the platform's /metrics
    exposition = env.admin.get("/metrics").text
    assert f"\nnovacron_anomaly_events_total {float(feed.events)}" in exposition and feed.events >= 1
    assert "\nnovacron_anomaly_dropped_reports_total 0.0" in exposition
    scored = next(
        line for line in exposition.splitlines() if line.startswith("novacron_anomaly_scored_samples_total")
    )
    assert float(scored.split()[1]) >= HISTORY_S

    # the score series, through the tenant query API: alpha's spike, beta's calm, neither the other's
    spike = f'max_over_time(novacron_anomaly_score{{metric="{CPU}"}}[1m])'
    [own] = wait_for("alpha's score series", lambda: query(alpha, spike), 30)
    assert own["metric"]["vm_id"] == "vm-alpha" and float(own["value"][1]) >= 0.5
    [other] = query(beta, spike)
    assert other["metric"]["vm_id"] == "vm-beta" and float(other["value"][1]) < 0.5

    def firing(client: TestClient) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = client.get("/v1/alerts").json()["items"]
        return [a for a in alerts if a["name"] == "cpu-anomaly" and a["state"] == "firing"]

    [alert] = wait_for("the anomaly alert firing", lambda: firing(alpha), 60)
    assert alert["labels"]["vm_id"] == "vm-alpha" and alert["labels"]["metric"] == CPU
    assert wait_for(
        "alert.firing",
        lambda: alpha.get("/v1/events", params={"types": "alert.firing"}).json()["items"],
    )
    assert firing(beta) == [] and beta.get("/v1/events", params={"types": "alert.*"}).json()["items"] == []


def test_a_nodes_vm_series_are_scored_into_its_store(guest: Guest) -> None:
    server = make_server(NOVACRON_COMPUTE_DRIVER="simulated", NOVACRON_ANOMALY_STEP_S="1")
    server.start(timeout_s=90)
    try:
        with server.client() as admin:
            import_guest_image(admin, guest)
            member, project_id = tenant_user(admin, server, "scored")
            tenant_id = admin.get(f"/v1/projects/{project_id}").json()["tenant_id"]
        with member:
            body = {"name": "scored", "image": "test-guest", "flavor": "tiny", "project_id": project_id}
            r = member.post("/v1/vms", json=body)
            assert r.status_code == 202, r.text
            assert wait_task(member, r.json()["task_id"])["state"] == "succeeded"
            vm = member.get(f"/v1/vms/{r.json()['vm']['id']}").json()
            url = store_url(server, "victoriametrics")
            metrics = {
                "novacron_vm_cpu_seconds_total",  # the simulated driver reports vCPU time
                "novacron_vm_disk_read_bytes_total",
                "novacron_vm_disk_written_bytes_total",
                "novacron_vm_network_receive_bytes_total",
                "novacron_vm_network_transmit_bytes_total",
                "novacron_vm_guest_memory_available_bytes",
            }
            selector = f'novacron_anomaly_score{{vm_id="{vm["id"]}"}}'
            found = wait_for(
                "every scored series",
                lambda: len(scored := wait_query(url, selector)) == len(metrics) and scored,
                60,
            )
            for series in found:
                labels = dict(series["metric"])
                assert labels.pop("metric") in metrics
                assert labels == {
                    "__name__": "novacron_anomaly_score",
                    "vm_id": vm["id"],
                    "tenant_id": tenant_id,
                    "project_id": project_id,
                    "host_id": vm["host_id"],
                }
                assert float(series["value"][1]) == 0.0  # a day of learning first (the default)
            r = member.delete(f"/v1/vms/{vm['id']}")
            assert r.status_code == 202, r.text
            assert wait_task(member, r.json()["task_id"])["state"] == "succeeded"
        assert "anomaly scoring failed" not in server.log_path.read_text()
    finally:
        destroy_server(server)

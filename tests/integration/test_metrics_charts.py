"""VM and host charts over 5 min to 30 days from a real store: a few hundred points at a round step,
the values the history holds, units, and the VM's tenant scoping (another tenant gets 404)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from novacron.monitoring.query import StoreEndpoint
from tests.conftest import in_process_app
from tests.integration.metrics_engines import (
    Series,
    attach,
    login,
    prometheus,
    tenant_viewer,
    victoriametrics,
    vm_and_host,
)

MIB = 1 << 20
#: range -> the step its chart must use (1 s samples)
STEPS = {"5m": 1.0, "1h": 15.0, "24h": 300.0, "7d": 3600.0, "30d": 10800.0}


@dataclass
class World:
    client: TestClient
    admin: dict[str, str]
    viewer: dict[str, str]
    stranger: dict[str, str]
    stores: dict[str, StoreEndpoint]

    def chart(self, path: str, who: dict[str, str], engine: str = "victoriametrics", **params: Any) -> Any:
        attach(cast(FastAPI, self.client.app).state.ctx, self.stores[engine])
        return self.client.get(path, params=params, headers=who)


def _history(tenant_id: str, *, days: int) -> list[Series]:
    """1 s samples for the last two hours and one a minute for ``days`` before: a VM using half a
    core, 64 of its 128 MiB, a 270 MiB QEMU process, reading 1000 B/s; its host at load 0.75."""
    now = time.time()
    stamps = [now - days * 86400 + 60 * i for i in range(days * 1440 - 120)]
    stamps += [now - 7200 + i for i in range(7201)]
    vm = {"vm_id": "vm-1", "tenant_id": tenant_id, "project_id": "p", "host_id": "h-1"}
    host = {"host_id": "h-1", "host": "node-1"}
    t0 = stamps[0]

    def counter(name: str, labels: dict[str, str], per_s: float) -> Series:
        return Series(name, labels, [(t, per_s * (t - t0)) for t in stamps])

    def gauge(name: str, labels: dict[str, str], value: float) -> Series:
        return Series(name, labels, [(t, value) for t in stamps])

    return [
        counter("novacron_vm_cpu_seconds_total", vm, 0.5),
        gauge("novacron_vm_guest_memory_total_bytes", vm, 128 * MIB),
        gauge("novacron_vm_guest_memory_available_bytes", vm, 64 * MIB),
        gauge("novacron_vm_process_resident_memory_bytes", vm, 270 * MIB),
        counter("novacron_vm_disk_read_bytes_total", vm, 1000),
        counter("novacron_host_cpu_seconds_total", {**host, "mode": "user"}, 0.25),
        counter("novacron_host_cpu_seconds_total", {**host, "mode": "idle"}, 1.5),
        gauge("novacron_host_load1", host, 0.75),
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("metrics-charts")
    with ExitStack() as stack:
        client, password, db = stack.enter_context(in_process_app(tmp / "state"))
        admin = login(client, "admin", password)
        tenant_id, viewer = tenant_viewer(client, admin, "alpha")
        _stranger_tenant, stranger = tenant_viewer(client, admin, "beta")
        vm_and_host(client, admin, db, tenant_id)
        (tmp / "vm").mkdir()
        (tmp / "prom").mkdir()
        stores = {
            "victoriametrics": stack.enter_context(victoriametrics(tmp / "vm", _history(tenant_id, days=31))),
            # Prometheus gets the recent hours only: promtool writes one block per 2 h of history
            "prometheus": stack.enter_context(prometheus(tmp / "prom", _history(tenant_id, days=0))),
        }
        yield World(client, admin, viewer, stranger, stores)


def _lines(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {line["name"]: line for line in answer["series"]}


@pytest.mark.parametrize("chart_range", list(STEPS))
def test_vm_chart_has_a_few_hundred_points_of_the_history(world: World, chart_range: str) -> None:
    r = world.chart("/v1/vms/vm-1/metrics", world.viewer, range=chart_range)
    assert r.status_code == 200, r.text
    chart = r.json()
    assert chart["id"] == "vm-1" and chart["range"] == chart_range and chart["step_s"] == STEPS[chart_range]
    assert chart["end"] - chart["start"] == pytest.approx(
        chart["step_s"] * ((chart["end"] - chart["start"]) // chart["step_s"])
    )
    lines = _lines(chart)
    assert "cpu" in lines, chart
    assert {lines[n]["unit"] for n in ("cpu", "guest_memory_used", "process_rss", "disk_read")} == {
        "cores",
        "bytes",
        "bytes/s",
    }
    cpu = lines["cpu"]["points"]
    assert 0.8 * 300 * (1 if chart_range != "7d" else 168 / 300) <= len(cpu) <= 301, len(cpu)
    assert all(v == pytest.approx(0.5, rel=0.02) for _t, v in cpu)
    assert all(v == pytest.approx(64 * MIB) for _t, v in lines["guest_memory_used"]["points"])
    assert all(v == pytest.approx(270 * MIB) for _t, v in lines["process_rss"]["points"])
    assert all(v == pytest.approx(1000, rel=0.02) for _t, v in lines["disk_read"]["points"])


def test_vm_chart_on_prometheus(world: World) -> None:
    r = world.chart("/v1/vms/vm-1/metrics", world.viewer, "prometheus", range="1h")
    assert r.status_code == 200, r.text
    lines = _lines(r.json())
    assert len(lines["cpu"]["points"]) >= 230
    assert all(v == pytest.approx(0.5, rel=0.02) for _t, v in lines["cpu"]["points"])
    assert all(v == pytest.approx(64 * MIB) for _t, v in lines["guest_memory_used"]["points"])


def test_vm_chart_is_the_vms_tenants_only(world: World) -> None:
    assert world.chart("/v1/vms/vm-1/metrics", world.stranger, range="1h").status_code == 404
    r = world.chart("/v1/vms/vm-1/metrics", world.admin, range="1h")
    assert r.status_code == 200 and _lines(r.json())["cpu"]["points"]


def test_bad_range_names_the_input_and_no_range_keeps_raw_samples(world: World) -> None:
    r = world.chart("/v1/vms/vm-1/metrics", world.viewer, range="2h")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.range"
    r = world.chart("/v1/vms/vm-1/metrics", world.viewer)
    assert r.status_code == 200 and set(r.json()) == {"vm_id", "interval_s", "samples"}


def test_host_chart_is_for_administrators(world: World) -> None:
    r = world.chart("/v1/hosts/h-1/metrics", world.admin, range="24h")
    assert r.status_code == 200, r.text
    lines = _lines(r.json())
    assert r.json()["step_s"] == 300
    assert all(v == pytest.approx(0.25, rel=0.02) for _t, v in lines["cpu_user"]["points"])
    assert all(v == pytest.approx(1.5, rel=0.02) for _t, v in lines["cpu_idle"]["points"])
    assert lines["load1"]["unit"] == "load" and lines["load1"]["points"][-1][1] == pytest.approx(0.75)
    assert world.chart("/v1/hosts/h-1/metrics", world.viewer, range="1h").status_code == 403

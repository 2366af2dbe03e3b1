"""/v1/metrics on real VictoriaMetrics and Prometheus: a tenant reads its own series and never another
tenant's or a host's, whatever query or parameter it sends; administrators read any; errors say which
input is at fault."""

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
)

ENGINES = ("victoriametrics", "prometheus")
ALL = '{__name__=~".+"}'


@dataclass
class World:
    client: TestClient
    admin: dict[str, str]
    #: tenant name -> (tenant id, a member's headers)
    tenants: dict[str, tuple[str, dict[str, str]]]
    stores: dict[str, StoreEndpoint]

    def use(self, engine: str) -> None:
        self.point_at(self.stores[engine])

    def point_at(self, store: StoreEndpoint) -> None:
        attach(cast(FastAPI, self.client.app).state.ctx, store)

    def get(self, who: str, path: str, **params: Any) -> Any:
        headers = self.admin if who == "admin" else self.tenants[who][1]
        return self.client.get(f"/v1/metrics/{path}", params=params, headers=headers)


def _history(alpha: str, beta: str) -> list[Series]:
    now = time.time()
    stamps = [now - 600 + 15 * i for i in range(41)]

    def vm(tenant: str, vm_id: str, per_s: float) -> Series:
        labels = {"tenant_id": tenant, "vm_id": vm_id, "project_id": f"p-{vm_id}", "host_id": "h-1"}
        return Series("novacron_vm_cpu_seconds_total", labels, [(t, per_s * (t - stamps[0])) for t in stamps])

    return [
        vm(alpha, "vm-alpha", 0.5),
        vm(beta, "vm-beta", 0.25),
        Series("beta_secret", {"tenant_id": beta, "vm_id": "vm-beta"}, [(t, 7.0) for t in stamps]),
        Series("novacron_host_load1", {"host_id": "h-1", "host": "node-1"}, [(t, 3.0) for t in stamps]),
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("metrics-query")
    with ExitStack() as stack:
        client, password, _db = stack.enter_context(in_process_app(tmp / "state"))
        admin = login(client, "admin", password)
        tenants = {name: tenant_viewer(client, admin, name) for name in ("alpha", "beta")}
        history = _history(tenants["alpha"][0], tenants["beta"][0])
        (tmp / "vm").mkdir()
        (tmp / "prom").mkdir()
        stores = {
            "victoriametrics": stack.enter_context(victoriametrics(tmp / "vm", history)),
            "prometheus": stack.enter_context(prometheus(tmp / "prom", history)),
        }
        yield World(client, admin, tenants, stores)


def _tenants_in(result: list[dict[str, Any]]) -> set[str | None]:
    return {series["metric"].get("tenant_id") for series in result}


# every one of these, sent by tenant alpha, must show nothing of tenant beta or of the hosts
ESCAPES = [
    '{__name__=~".+", tenant_id!="ALPHA"}',
    '{tenant_id=~".*"}',  # PromQL refuses a selector that can match empty labels: 422 on Prometheus
    '{tenant_id=~".+"}',
    ALL,
    f"novacron_vm_cpu_seconds_total or {ALL}",
    f'label_replace({ALL}, "tenant_id", "ALPHA", "", "")',
    f"max_over_time({ALL}[10m:1m])",
    f"last_over_time({ALL}[10m])",
    f"count by (tenant_id, __name__) ({ALL})",
    'sum by (vm_id) (rate(novacron_vm_cpu_seconds_total{vm_id="vm-beta"}[5m]))',
    f"{ALL} offset 1m",
    f"count({ALL}) + count(novacron_host_load1)",
]


@pytest.mark.parametrize("engine", ENGINES)
def test_tenant_reads_only_its_own_series_whatever_it_asks(world: World, engine: str) -> None:
    world.use(engine)
    alpha, beta = world.tenants["alpha"][0], world.tenants["beta"][0]
    r = world.get("alpha", "query", query="rate(novacron_vm_cpu_seconds_total[2m])")
    assert r.status_code == 200, r.text
    [own] = r.json()["data"]["result"]
    assert own["metric"]["vm_id"] == "vm-alpha" and float(own["value"][1]) == pytest.approx(0.5)
    for attempt in ESCAPES:
        r = world.get("alpha", "query", query=attempt.replace("ALPHA", alpha))
        if engine == "prometheus" and attempt == '{tenant_id=~".*"}':
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.query"
            continue
        assert r.status_code == 200, (attempt, r.text)
        result = r.json()["data"]["result"]
        assert beta not in r.text and "vm-beta" not in r.text and "node-1" not in r.text, attempt
        assert _tenants_in(result) <= {alpha, None}, attempt
    # tenant_id!="mine" selects nothing at all
    r = world.get("alpha", "query", query=f'{{__name__=~".+", tenant_id!="{alpha}"}}')
    assert r.json()["data"]["result"] == []
    # counting every series by tenant counts only one's own
    r = world.get("alpha", "query", query=f"count by (tenant_id) ({ALL})")
    assert [(s["metric"], s["value"][1]) for s in r.json()["data"]["result"]] == [({"tenant_id": alpha}, "1")]
    # another tenant's series are as absent as series that do not exist
    r = world.get("alpha", "query", query="absent(beta_secret)")
    assert [s["value"][1] for s in r.json()["data"]["result"]] == ["1"]
    r = world.get("beta", "query", query="absent(beta_secret)")
    assert r.json()["data"]["result"] == []


@pytest.mark.parametrize("engine", ENGINES)
def test_client_supplied_label_enforcement_is_ignored(world: World, engine: str) -> None:
    world.use(engine)
    alpha, beta = world.tenants["alpha"][0], world.tenants["beta"][0]
    sneaky = {"extra_label": f"tenant_id={beta}", "extra_filters[]": [ALL, f'{{tenant_id="{beta}"}}']}
    r = world.client.get(
        "/v1/metrics/query", params={"query": ALL, **sneaky}, headers=world.tenants["alpha"][1]
    )
    assert r.status_code == 200 and beta not in r.text and _tenants_in(r.json()["data"]["result"]) == {alpha}
    now = time.time()
    r = world.client.get(
        "/v1/metrics/query_range",
        params={"query": ALL, "start": now - 300, "end": now, "step": 60, **sneaky},
        headers=world.tenants["alpha"][1],
    )
    assert r.status_code == 200 and beta not in r.text and _tenants_in(r.json()["data"]["result"]) == {alpha}


@pytest.mark.parametrize("engine", ENGINES)
def test_series_and_label_lookups_are_scoped(world: World, engine: str) -> None:
    world.use(engine)
    alpha, beta = world.tenants["alpha"][0], world.tenants["beta"][0]
    for match in (ALL, f'{{tenant_id="{beta}"}}', '{vm_id="vm-beta"}', "novacron_host_load1"):
        r = world.get("alpha", "series", **{"match[]": match})
        assert r.status_code == 200, r.text
        assert {s.get("tenant_id") for s in r.json()["data"]} <= {alpha}, match
    r = world.get("alpha", "series", **{"match[]": ALL})
    assert [s["vm_id"] for s in r.json()["data"]] == ["vm-alpha"]
    r = world.get("alpha", "label/tenant_id/values")
    assert r.json()["data"] == [alpha]
    r = world.get("alpha", "label/vm_id/values", **{"match[]": ALL})
    assert r.json()["data"] == ["vm-alpha"]
    r = world.get("alpha", "labels")
    assert r.status_code == 200 and "host" not in r.json()["data"] and "vm_id" in r.json()["data"]
    r = world.get("alpha", "label/__name__/values")
    assert r.json()["data"] == ["novacron_vm_cpu_seconds_total"]


@pytest.mark.parametrize("engine", ENGINES)
def test_admin_reads_everything_or_one_tenant(world: World, engine: str) -> None:
    world.use(engine)
    alpha, beta = world.tenants["alpha"][0], world.tenants["beta"][0]
    r = world.get("admin", "query", query=f"count by (tenant_id) ({ALL})")
    assert _tenants_in(r.json()["data"]["result"]) == {alpha, beta, None}
    r = world.get("admin", "query", query=ALL, tenant=beta)
    assert _tenants_in(r.json()["data"]["result"]) == {beta}
    r = world.get("alpha", "query", query=ALL, tenant=beta)
    assert r.status_code == 403


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_queries_name_the_input(world: World, engine: str) -> None:
    world.use(engine)
    for query in ("sum(", "nosuchfunction(up)", "up{"):
        r = world.get("alpha", "query", query=query)
        assert r.status_code == 422, (query, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["field"] == "query.query", r.text
    now = time.time()
    r = world.get("alpha", "query_range", query="up", start=now - 86400, end=now, step=1)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.step"
    r = world.get("alpha", "query", query="up", time="yesterday")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.time"


def test_prometheus_refuses_what_it_cannot_scope(world: World) -> None:
    world.use("prometheus")
    r = world.get("alpha", "query", query='up{a="1" or b="2"}')
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.query"


def test_metricsql_with_is_scoped_on_victoriametrics(world: World) -> None:
    world.use("victoriametrics")
    alpha = world.tenants["alpha"][0]
    r = world.get("alpha", "query", query=f"WITH (x = {ALL}) x or count({ALL})")
    assert r.status_code == 200, r.text
    assert _tenants_in(r.json()["data"]["result"]) <= {alpha, None}
    assert "vm-beta" not in r.text and "node-1" not in r.text


def test_store_down_is_503_with_what_to_do(world: World) -> None:
    world.point_at(StoreEndpoint("http://127.0.0.1:9", "victoriametrics"))
    r = world.get("alpha", "query", query="up")
    assert r.status_code == 503 and "retry" in r.json()["detail"]


@pytest.mark.parametrize("engine", ENGINES)
def test_prometheus_clients_find_the_api_under_the_base_url(world: World, engine: str) -> None:
    # a Grafana data source with URL <server>/v1/metrics asks <URL>/api/v1/...
    world.use(engine)
    alpha = world.tenants["alpha"][0]
    now = time.time()
    params = {"query": ALL, "start": now - 300, "end": now, "step": 60}
    r = world.get("alpha", "api/v1/query_range", **params)
    assert r.status_code == 200 and r.json()["data"]["resultType"] == "matrix"
    assert _tenants_in(r.json()["data"]["result"]) == {alpha}
    assert r.json() == world.get("alpha", "query_range", **params).json()
    r = world.get("alpha", "api/v1/label/vm_id/values")
    assert r.json() == {"status": "success", "data": ["vm-alpha"]}

"""/v1/cost on an in-process app and a real VictoriaMetrics: a tenant's costs by hand, the clouds'
shapes, rightsizing from samples written into the store, the budget check, and nothing of another
tenant whatever it asks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from novacron.db.base import Database
from novacron.db.models import VM, Host
from tests.conftest import in_process_app
from tests.integration.metrics_engines import Series, attach, login, tenant_viewer, victoriametrics

GIB = 2**30
PRICES = {"vcpus": 0.01, "ram_mb": 0.005, "disk_gb": 0.0001, "vms": 0.002}
FLAVORS = {"small": (2, 4096, 10), "medium": (4, 8192, 10), "large": (8, 16384, 10)}


@dataclass
class World:
    client: TestClient
    admin: dict[str, str]
    #: tenant name -> (tenant id, a viewer's headers)
    tenants: dict[str, tuple[str, dict[str, str]]]

    def get(self, who: str, path: str, **params: Any) -> Any:
        headers = self.admin if who == "admin" else self.tenants[who][1]
        return self.client.get(f"/v1/cost{path}", params=params, headers=headers)


def _vm(db: Database, vm_id: str, tenant_id: str, project_id: str, shape: tuple[int, int, int]) -> None:
    with db.session() as s:
        s.add(
            VM(
                id=vm_id,
                name=vm_id,
                project_id=project_id,
                tenant_id=tenant_id,
                host_id="h-1",
                vcpus=shape[0],
                ram_mb=shape[1],
                disk_gb=shape[2],
                state="running",
            )
        )


def _samples(
    vm_id: str, tenant_id: str, cores: float, used_gib: float, total_gib: float, later: float | None = None
) -> list[Series]:
    """Two hours of a VM's CPU counter (``cores`` busy, ``later`` in the second hour) and guest
    memory, every 30 s."""
    now = time.time()
    stamps = [now - 7200 + 30 * i for i in range(241)]
    labels = {"tenant_id": tenant_id, "vm_id": vm_id, "project_id": "p", "host_id": "h-1"}
    second = cores if later is None else later

    def busy(t: float) -> float:
        first_hour = min(t - stamps[0], 3600)
        return cores * first_hour + second * max(0.0, t - stamps[0] - 3600)

    return [
        Series("novacron_vm_cpu_seconds_total", labels, [(t, busy(t)) for t in stamps]),
        Series("novacron_vm_guest_memory_total_bytes", labels, [(t, total_gib * GIB) for t in stamps]),
        Series(
            "novacron_vm_guest_memory_available_bytes",
            labels,
            [(t, (total_gib - used_gib) * GIB) for t in stamps],
        ),
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("cost")
    with ExitStack() as stack:
        client, password, db = stack.enter_context(in_process_app(tmp / "state"))
        admin = login(client, "admin", password)
        tenants = {name: tenant_viewer(client, admin, name) for name in ("alpha", "beta")}
        for resource, price in PRICES.items():
            assert (
                client.put(f"/v1/prices/{resource}", json={"per_hour": price}, headers=admin).status_code
                == 200
            )
        for name, (vcpus, ram, disk) in FLAVORS.items():
            flavor = {"name": name, "vcpus": vcpus, "ram_mb": ram, "disk_gb": disk}
            assert client.post("/v1/flavors", json=flavor, headers=admin).status_code == 201
        with db.session() as s:
            s.add(Host(id="h-1", name="node-1", driver="simulated", accelerator="tcg", cpus=32, ram_mb=65536))
        project_of: dict[str, str] = {}
        for name, (tenant_id, _) in tenants.items():
            r = client.post("/v1/projects", json={"name": "main", "tenant_id": tenant_id}, headers=admin)
            assert r.status_code == 201, r.text
            project = project_of[name] = r.json()["id"]
            _vm(db, f"{name}-idle", tenant_id, project, FLAVORS["medium"])
            _vm(db, f"{name}-busy", tenant_id, project, FLAVORS["small"])
        _vm(db, "alpha-wave", tenants["alpha"][0], project_of["alpha"], FLAVORS["small"])
        alpha, beta = tenants["alpha"][0], tenants["beta"][0]
        history = [
            *_samples("alpha-idle", alpha, 0.2, 1.0, 8.0),
            *_samples("alpha-busy", alpha, 1.95, 1.0, 4.0),
            *_samples("alpha-wave", alpha, 0.2, 1.0, 4.0, later=1.9),
            *_samples("beta-idle", beta, 0.1, 1.0, 8.0),
        ]
        (tmp / "vm").mkdir()
        store = stack.enter_context(victoriametrics(tmp / "vm", history))
        attach(cast(FastAPI, client.app).state.ctx, store)
        yield World(client, admin, tenants)


def test_a_tenants_cost_is_the_price_list_by_hand_with_the_clouds_side_by_side(world: World) -> None:
    r = world.get("alpha", "")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [i["vm_id"] for i in body["items"]] == ["alpha-busy", "alpha-idle", "alpha-wave"]
    # small: 2 * 0.01 + 4 * 0.005 + 10 * 0.0001 + 0.002 = 0.043; medium: 0.04 + 0.04 + 0.001 + 0.002
    assert body["per_hour"] == pytest.approx(0.043 + 0.083 + 0.043)
    assert body["per_month"] == pytest.approx((0.043 + 0.083 + 0.043) * 730)
    assert body["currency"] == "USD" and "list prices" in body["note"]
    idle = body["items"][1]
    assert idle["clouds"]["aws"]["type"] == "t3.xlarge" and idle["clouds"]["azure"]["type"] == "B4ms"
    assert idle["clouds"]["gcp"]["as_of"] and idle["clouds"]["gcp"]["source"].startswith("https://")
    assert body["clouds"]["aws"]["per_hour"] == pytest.approx(0.0416 + 0.1664 + 0.0416)
    # a group is a set of VM ids
    group = world.get("alpha", "", vm_id=["alpha-idle", "beta-idle"]).json()
    assert [i["vm_id"] for i in group["items"]] == ["alpha-idle"]


def test_another_tenants_costs_are_absent(world: World) -> None:
    beta = world.tenants["beta"][0]
    assert world.get("alpha", "", tenant_id=beta).status_code == 404
    assert world.get("alpha", "/rightsizing", tenant_id=beta).status_code == 404
    assert world.get("alpha", "/budget-check", tenant_id=beta, vcpus=1, ram_mb=512).status_code == 404
    sizing = world.get("alpha", "/rightsizing", window="2h", vm_id=["beta-idle", "alpha-idle"]).json()
    assert [i["vm_id"] for i in sizing["items"]] == ["alpha-idle"]
    # administrators name the tenant
    r = world.get("admin", "", tenant_id=beta)
    assert [i["vm_id"] for i in r.json()["items"]] == ["beta-busy", "beta-idle"]
    assert world.get("admin", "").status_code == 422


def test_rightsizing_flags_vms_from_the_samples_in_the_store(world: World) -> None:
    r = world.get("alpha", "/rightsizing", window="2h")
    assert r.status_code == 200, r.text
    items = {i["vm_id"]: i for i in r.json()["items"]}
    idle, busy = items["alpha-idle"], items["alpha-busy"]
    assert idle["cpu_p95_cores"] == pytest.approx(0.2, rel=0.05)
    assert idle["memory_p95_mb"] == pytest.approx(1024, rel=0.01)
    assert idle["status"] == "over-sized" and idle["flavor"] == "small"
    assert idle["saving_per_month"] == pytest.approx((0.083 - 0.043) * 730)
    assert busy["status"] == "under-sized" and busy["flavor"] == "medium"  # 1.95 / 0.7 -> 3 vCPUs
    assert items["alpha-wave"]["status"] == "under-sized"  # its p95 is the busy hour's 1.9 of 2
    assert r.json()["saving_per_month"] == pytest.approx(sum(i["saving_per_month"] for i in items.values()))
    assert world.get("alpha", "/rightsizing", window="1s").status_code == 422


def test_budget_check_answers_with_its_numbers(world: World) -> None:
    r = world.get("alpha", "/budget-check", vcpus=2, ram_mb=4096, disk_gb=10, count=3, max_cost_per_hour=0.25)
    assert r.status_code == 200, r.text
    body = r.json()
    # 0.169 now (two small VMs and a medium) + 3 * 0.043 = 0.298 > 0.25; one more: 0.212
    assert body["ok"] is False and body["numbers"]["cost_per_hour"] == pytest.approx(0.169)
    one = world.get("alpha", "/budget-check", vcpus=2, ram_mb=4096, disk_gb=10, max_cost_per_hour=0.25)
    assert one.json()["ok"], one.text


def test_capacity_forecast_is_for_administrators_with_what_ifs(world: World) -> None:
    r = world.client.get("/v1/capacity/forecast", headers=world.tenants["alpha"][1])
    assert r.status_code == 403
    r = world.client.get("/v1/capacity/forecast", params={"horizon_days": 30}, headers=world.admin)
    assert r.status_code == 200, r.text
    [cluster] = [g for g in r.json()["groups"] if g["kind"] == "hosts"]
    vcpus = next(p for p in cluster["pools"] if p["resource"] == "vcpus")
    assert vcpus["capacity"] == 32 * 4 and cluster["bottleneck"] in ("vcpus", "ram_mb", "disk_gb")
    more = {"add_hosts": 2, "host_cpus": 16, "host_ram_mb": 65536, "horizon_days": 30}
    r = world.client.get("/v1/capacity/forecast", params=more, headers=world.admin)
    [cluster] = [g for g in r.json()["groups"] if g["kind"] == "hosts"]
    assert next(p for p in cluster["pools"] if p["resource"] == "vcpus")["capacity"] == (32 + 32) * 4
    bad = world.client.get("/v1/capacity/forecast", params={"add_hosts": 1}, headers=world.admin)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.host_cpus"


def test_roi_of_scaling_a_set_of_vms_to_their_cpu_load(world: World) -> None:
    # alpha-busy (1.95 cores) and alpha-idle (0.2): 2.15 cores; the larger shape (medium, 4 vCPUs)
    # at 60 % carries 2.4 cores: one VM at every step against the two running
    r = world.get("alpha", "/roi", vm_id=["alpha-busy", "alpha-idle", "beta-idle"], window="2h")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["members"] == 2 and body["vcpus_per_vm"] == 4 and body["per_vm_hour"] == pytest.approx(0.083)
    assert body["static"]["peak_vms"] == 1 and body["saving"] == pytest.approx(0)
    # at 30 % a VM carries 1.2 cores: two at every step, static and scaled alike
    tight = world.get(
        "alpha", "/roi", vm_id=["alpha-busy", "alpha-idle"], window="2h", target_util=0.3
    ).json()
    assert tight["static"]["peak_vms"] == 2 and tight["scaled"]["vm_hours"] == tight["static"]["vm_hours"]
    assert world.get("alpha", "/roi", vm_id=["beta-idle"], window="2h").status_code == 422
    # 0.2 cores for an hour, then 1.9: one small VM at 60 % carries 1.2, so 1 then 2 VMs against 2
    # throughout: a quarter of the VM-hours saved (give or take the rate window at the step)
    wave = world.get("alpha", "/roi", vm_id=["alpha-wave"], window="2h").json()
    assert wave["static"]["peak_vms"] == 2 and wave["per_vm_hour"] == pytest.approx(0.043)
    assert wave["saving_share"] == pytest.approx(0.25, abs=0.03)
    assert wave["saving"] == pytest.approx(wave["static"]["cost"] - wave["scaled"]["cost"])

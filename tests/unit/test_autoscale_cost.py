"""Cost of VMs from the platform's price list, the clouds' cheapest fitting shapes, and the budget
check scaling asks before it adds VMs (sums checked by hand)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from novacron.autoscaling.cost import (
    CLOUDS,
    HOURS_PER_MONTH,
    CostService,
    Shape,
    cheapest_fit,
    cloud_shapes,
    within_budget,
)
from novacron.db.base import Database
from novacron.db.migrate import upgrade
from novacron.db.models import VM, Budget, Flavor, Host, LedgerEntry, Price, Project, Tenant
from novacron.errors import NotFound
from novacron.identity.principal import Principal
from novacron.quota import tree

ADMIN = Principal("u-admin", "admin", "admin", None, frozenset({"global"}))
ALICE = Principal("u-a", "alice", "member", "t1", frozenset())
#: vCPU-hour 0.01, GiB-hour 0.005, disk GiB-hour 0.0001, VM-hour 0.002
PRICES = {"vcpus": 0.01, "ram_mb": 0.005, "disk_gb": 0.0001, "vms": 0.002}


def _vm(vm_id: str, tenant: str, vcpus: int, ram_mb: int, disk_gb: int, state: str = "running") -> VM:
    return VM(
        id=vm_id,
        name=vm_id,
        project_id=f"p-{tenant}",
        tenant_id=tenant,
        host_id="h-1",
        flavor_id="flv-small" if vcpus == 2 else None,
        vcpus=vcpus,
        ram_mb=ram_mb,
        disk_gb=disk_gb,
        state=state,
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/nc.db")
    upgrade(database)
    with database.session() as s:
        s.add(Host(id="h-1", name="h-1", driver="simulated", accelerator="tcg", cpus=16, ram_mb=65536))
        s.add(Flavor(id="flv-small", name="small", vcpus=2, ram_mb=4096, disk_gb=10))
        s.add_all(Tenant(id=t, name=t) for t in ("t1", "t2"))
        s.flush()
        s.add_all(Project(id=f"p-{t}", tenant_id=t, name="main") for t in ("t1", "t2"))
        s.add_all(Price(resource=r, per_hour=p) for r, p in PRICES.items())
        s.flush()
        s.add_all(
            [
                _vm("web-1", "t1", 2, 4096, 10),
                _vm("web-2", "t1", 2, 4096, 10, state="stopped"),
                _vm("db-1", "t1", 4, 16384, 100),
                _vm("other", "t2", 8, 32768, 50),
            ]
        )
    yield database
    database.engine.dispose()


def test_vm_and_tenant_costs_match_the_price_list_by_hand(db: Database) -> None:
    with db.read_session() as s:
        report = CostService(s, ALICE).tenant(None)
    by_id = {i.vm_id: i for i in report.items}
    assert set(by_id) == {"web-1", "web-2", "db-1"}  # the other tenant's VM is absent
    # web-1: 2 vCPU * 0.01 + 4 GiB * 0.005 + 10 GiB * 0.0001 + 1 VM * 0.002 = 0.043
    assert by_id["web-1"].per_hour == pytest.approx(0.043)
    assert by_id["web-1"].flavor == "small"
    # stopped: what metering charges while it is stopped, its disk and the VM itself (no vCPU, RAM)
    assert by_id["web-2"].per_hour == pytest.approx(0.001 + 0.002)
    # db-1: 0.04 + 0.08 + 0.01 + 0.002
    assert by_id["db-1"].per_hour == pytest.approx(0.132)
    assert report.per_hour == pytest.approx(0.178)
    assert report.per_month == pytest.approx(0.178 * HOURS_PER_MONTH)
    assert report.currency == "USD"
    # the clouds: web-1 (2 vCPU, 4 GiB) and db-1 (4, 16); the stopped VM costs no compute there
    assert report.clouds["aws"].per_hour == pytest.approx(0.0416 + 0.1664)  # t3.medium + t3.xlarge
    assert report.clouds["gcp"].per_hour == pytest.approx(0.033503 + 0.134012)  # e2-medium + e2-standard-4


def test_another_tenants_vms_are_neither_listed_nor_reachable(db: Database) -> None:
    with db.read_session() as s:
        group = CostService(s, ALICE).tenant(None, vm_ids=["other", "web-1"])
        assert [i.vm_id for i in group.items] == ["web-1"]
        with pytest.raises(NotFound):
            CostService(s, ALICE).tenant("t2")
        assert [i.vm_id for i in CostService(s, ADMIN).tenant("t2").items] == ["other"]


def test_each_cloud_maps_a_shape_to_its_cheapest_fitting_type() -> None:
    for provider in CLOUDS:
        shapes = cloud_shapes(provider)
        assert len(shapes) >= 12 and all(s.as_of and s.source.startswith("https://") for s in shapes)
        for want in (Shape(1, 512), Shape(2, 8192), Shape(3, 6000), Shape(16, 65536)):
            match = cheapest_fit(provider, want)
            assert match is not None
            fitting = [s for s in shapes if s.vcpus >= want.vcpus and s.ram_gib * 1024 >= want.ram_mb]
            assert match.per_hour == min(s.per_hour for s in fitting)
        assert cheapest_fit(provider, Shape(64, 1 << 20)) is None
    assert cheapest_fit("aws", Shape(2, 8192)).type == "t3.large"  # type: ignore[union-attr]
    assert cheapest_fit("azure", Shape(1, 1024)).type == "B1s"  # type: ignore[union-attr]


def test_budget_check_projects_the_month_with_the_extra_vms(db: Database) -> None:
    now = datetime(2026, 12, 21, 0, 0, tzinfo=UTC)  # 11 days = 264 hours left in December
    small = Shape(2, 4096, 10)
    with db.session() as s:
        # no budget, no maximum: within
        assert within_budget(s, "t1", [small], now=now).ok
        check = within_budget(s, "t1", [small, small], max_cost_per_hour=0.2, now=now)
        assert not check.ok and "over the maximum" in check.reason  # 0.178 + 2 * 0.043 > 0.2
        assert check.numbers["cost_per_hour"] == pytest.approx(0.178)
        tree.node_for_ref(s, project_id="p-t1")  # what the project's spend is counted under
        s.add(
            Budget(
                id="b1", node_id=tree.node_for_ref(s, tenant_id="t1"), tenant_id="t1", month=None, amount=100
            )
        )
        s.add(
            LedgerEntry(
                tenant_id="t1",
                project_id="p-t1",
                resource="vcpus",
                hour=datetime(2026, 12, 2, tzinfo=UTC),
                quantity=1.0,
                cost=50.0,
            )
        )
        s.flush()
        # 50 spent + (0.178 + 0.043) * 264 = 108.3 > 100
        check = within_budget(s, "t1", [small], now=now)
        assert not check.ok and check.numbers["projected"] == pytest.approx(50 + 0.221 * 264)
        # without the extra VM: 50 + 0.178 * 264 = 97.0
        assert within_budget(s, "t1", [], now=now).ok

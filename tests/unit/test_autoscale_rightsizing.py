"""Rightsizing verdicts from p95 usage: over-sized VMs get the cheapest flavor that fits with
headroom and its monthly saving, VMs near their limits are under-sized, no samples is unknown."""

from __future__ import annotations

import pytest

from novacron.autoscaling.cost import HOURS_PER_MONTH, Shape
from novacron.autoscaling.rightsizing import Usage, recommend
from novacron.db.models import Flavor

PRICES = {"vcpus": 0.01, "ram_mb": 0.005, "disk_gb": 0.0001, "vms": 0.002}
FLAVORS = [
    Flavor(id="f1", name="tiny", vcpus=1, ram_mb=1024, disk_gb=10),
    Flavor(id="f2", name="small", vcpus=2, ram_mb=4096, disk_gb=10),
    Flavor(id="f3", name="medium", vcpus=4, ram_mb=8192, disk_gb=20),
    Flavor(id="f4", name="large", vcpus=8, ram_mb=16384, disk_gb=40),
]
MEDIUM = Shape(4, 8192, 20)


def test_an_idle_vm_is_over_sized_and_the_saving_is_the_price_difference() -> None:
    # 0.3 cores and 1.5 GiB need 1 vCPU and 1920 MiB: small, but a 20 GiB disk doesn't shrink to 10
    r = recommend("vm-1", "web", MEDIUM, Usage(0.3, 1536), FLAVORS, PRICES)
    assert r.status == "right-sized" and r.flavor is None  # no cheaper flavor with a 20 GiB disk
    r = recommend("vm-1", "web", Shape(4, 8192, 10), Usage(0.3, 1536), FLAVORS, PRICES)
    assert r.status == "over-sized" and r.flavor == "small"
    # medium (disk 10): 0.04 + 0.04 + 0.001 + 0.002; small: 0.02 + 0.02 + 0.001 + 0.002
    assert r.saving_per_month == pytest.approx((0.083 - 0.043) * HOURS_PER_MONTH)
    assert "p95 0.30 of 4 vCPUs" in r.reason


def test_a_vm_at_its_limit_is_under_sized_and_growing_it_costs() -> None:
    r = recommend("vm-2", "db", MEDIUM, Usage(3.8, 4000), FLAVORS, PRICES)
    assert r.status == "under-sized" and r.flavor == "large"  # 3.8 / 0.7 -> 6 vCPUs
    assert r.saving_per_month < 0
    full_memory = recommend("vm-2", "db", MEDIUM, Usage(1.0, 7900), FLAVORS, PRICES)
    assert full_memory.status == "under-sized" and full_memory.flavor == "large"
    nothing_fits = recommend("vm-3", "big", Shape(8, 16384, 40), Usage(7.9, None), FLAVORS, PRICES)
    assert nothing_fits.status == "under-sized" and nothing_fits.flavor is None


def test_without_samples_nothing_is_claimed() -> None:
    r = recommend("vm-4", "new", MEDIUM, Usage(None, None), FLAVORS, PRICES)
    assert r.status == "unknown" and r.saving_per_month == 0
    # CPU known, memory not: the RAM is kept as the need
    r = recommend("vm-4", "new", Shape(4, 4096, 10), Usage(0.2, None), FLAVORS, PRICES)
    assert r.status == "over-sized" and r.flavor == "small"

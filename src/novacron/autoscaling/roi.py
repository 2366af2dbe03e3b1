"""What scaling saves against static provisioning for the peak, from a load series.

A load series (load units per step, a scaling group's history or a trace) and the load one VM
carries at the target utilisation give each step's need, ``ceil(load / (capacity × target))`` VMs
(at least ``min_vms``). Static provisioning runs the peak's need every step; a scaled schedule runs
what a policy ran (the replay's VM counts) or, when none is given, exactly each step's need: the
best any policy can do, so the saving is an upper bound. VM-hours are VMs × step length; cost is
VM-hours × the price of one VM-hour (``cost.hourly`` of the group's shape).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from novacron.errors import InvalidInput


@dataclass(frozen=True)
class Provisioning:
    """One way of running the group over the series: its VM-hours, cost and largest size."""

    name: str
    vm_hours: float
    cost: float
    peak_vms: int


@dataclass(frozen=True)
class ROI:
    """Static-for-peak against scaled: what scaling saves, absolutely and as a share of static."""

    static: Provisioning
    scaled: Provisioning

    @property
    def saving(self) -> float:
        return self.static.cost - self.scaled.cost

    @property
    def saving_share(self) -> float:
        return self.saving / self.static.cost if self.static.cost else 0.0


def need(load: float, capacity_per_vm: float, target_util: float, min_vms: int = 1) -> int:
    """VMs that carry ``load`` with each at most ``target_util`` busy."""
    return max(min_vms, math.ceil(load / (capacity_per_vm * target_util) - 1e-9))


def roi(  # noqa: PLR0913 - the series and the group's figures
    load: Sequence[float],
    step_s: float,
    capacity_per_vm: float,
    price_per_vm_hour: float,
    target_util: float = 1.0,
    schedule: Sequence[int] | None = None,
    min_vms: int = 1,
) -> ROI:
    """Static-for-peak against ``schedule`` (VMs running at each step; default: each step's need)."""
    if not load:
        raise InvalidInput("load", "needs at least one value")
    if capacity_per_vm <= 0 or not 0 < target_util <= 1 or step_s <= 0:
        raise InvalidInput("capacity_per_vm", "capacity and step must be positive, target in (0, 1]")
    needs = [need(v, capacity_per_vm, target_util, min_vms) for v in load]
    if schedule is not None and len(schedule) != len(needs):
        raise InvalidInput("schedule", f"has {len(schedule)} steps, the load {len(needs)}")
    scaled = list(schedule) if schedule is not None else needs
    hours = step_s / 3600
    peak = max(needs)
    static_hours = peak * len(needs) * hours
    scaled_hours = sum(scaled) * hours
    return ROI(
        Provisioning("static for the peak", static_hours, static_hours * price_per_vm_hour, peak),
        Provisioning(
            "scaled" if schedule is not None else "scaled to each step's need",
            scaled_hours,
            scaled_hours * price_per_vm_hour,
            max(scaled),
        ),
    )

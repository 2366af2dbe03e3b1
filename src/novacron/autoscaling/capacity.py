"""Capacity planning: when each host group runs out of vCPUs, RAM and disk, and each subnet of
addresses, with a prediction interval, the bottleneck named, and what-if questions.

**Pools.** A host group is an aggregate (``compute/aggregates.py``), the hosts in no aggregate, and
the whole cluster; hosts in maintenance are left out. Its capacity is what placement allows
(``cpus × cpu_allocation_ratio``, ``ram_mb × ram_allocation_ratio``; disk as reported), and what is
used now is what placement counts (the hosts' claim counters plus their reservations; disk: the root
disks of the VMs on them). A subnet's capacity is its allocation pools' size, its use the addresses
allocated (``network/ipam.py``).

**History.** Growth comes from the usage ledger (``quota/billing.py``), which holds for every hour
each project's vCPUs, RAM, disk and ports in use. The ledger knows projects, not hosts: a project's
series counts in a pool in the share of the project's resource the pool holds today (its VMs on the
group's hosts; its addresses in the subnet). The forecast is of the growth only: today's use plus
how far the forecast moves from the series' last value, so the level is exact and the trend is the
ledger's.

**Forecast.** ``predict_series`` runs ``autoscaling/forecast.py`` on the hourly series (the model
chosen by rolling-origin backtest, with its ``COVERAGE`` prediction interval). A pool runs out
at the first hour its forecast reaches its capacity: the upper bound gives the
earliest time, the mean the expected one, the lower bound the latest (None: beyond the horizon).
A group's bottleneck is the resource expected to run out first (else the fullest).

**What-if.** ``add_hosts`` hosts of a shape join a group (the group's allocation ratios, 4 and 1
for an empty group); a tenant growing ``growth`` a month (compound) adds to each pool its share of
what the tenant holds there today times ``(1 + growth)^(months ahead) - 1``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from novacron.autoscaling.forecast import COVERAGE, fit
from novacron.db.base import utcnow
from novacron.db.models import VM, Aggregate, AggregateHost, Host, IPAllocation, LedgerEntry, Port, Subnet
from novacron.errors import Forbidden, InvalidInput
from novacron.network.ipam import pool_size
from novacron.quota.registry import RESOURCES, vm_counts
from novacron.service import Service

Array = np.ndarray
STEP_S = 3600
HOURS_PER_MONTH = 730.0
#: how much ledger history is read
HISTORY_HOURS = 60 * 24
ALL = "(all hosts)"
UNAGGREGATED = "(no aggregate)"
#: host-group resources and their units
HOST_RESOURCES = {"vcpus": "vCPUs", "ram_mb": "MiB", "disk_gb": "GiB"}
#: a pool's resource -> the ledger's resource its history is read from
LEDGER_OF = {"vcpus": "vcpus", "ram_mb": "ram_mb", "disk_gb": "disk_gb", "addresses": "ports"}
DEFAULT_RATIOS = {"vcpus": 4.0, "ram_mb": 1.0, "disk_gb": 1.0}


def predict_series(values: Array, horizon: int) -> tuple[Array, Array, Array, str]:
    """The forecast of an hourly series ``horizon`` hours ahead, as movements from its last value:
    (mean, lower, upper, the model and its backtest MASE). The model is chosen by backtest at the
    longest horizon the history supports (a quarter of it), then run out to ``horizon``. A
    constant series (most pools of an idle platform) stays constant: no fit is spent on it."""
    if not len(values) or float(np.ptp(values)) == 0.0:
        flat = np.zeros(horizon)
        return flat, flat, flat, "flat (constant or no metered history)"
    forecaster = fit(values, STEP_S, max(1, min(horizon, len(values) // 4)))
    mean, lower, upper = forecaster.predict(horizon)
    last = float(values[-1])
    return mean - last, lower - last, upper - last, f"{forecaster.model} (MASE {forecaster.mase:.2f})"


@dataclass(frozen=True)
class WhatIf:
    """Questions to ask of the forecast: hosts added to a group, a tenant growing each month."""

    add_hosts: int = 0
    host_cpus: int = 0
    host_ram_mb: int = 0
    host_disk_gb: int = 0
    #: the group they join (an aggregate's name; None: the hosts in no aggregate)
    aggregate: str | None = None
    tenant_id: str | None = None
    #: a month's growth of the tenant, 0.1 = 10 %
    growth: float = 0.0


@dataclass
class Pool:
    """One resource of one host group or subnet: capacity, use, and when it runs out."""

    group: str
    resource: str
    unit: str
    capacity: float
    used: float
    history_points: int = 0
    model: str = ""
    earliest: datetime | None = None
    expected: datetime | None = None
    latest: datetime | None = None

    @property
    def utilisation(self) -> float:
        return self.used / self.capacity if self.capacity else 1.0


@dataclass
class Group:
    """A host group or a subnet, its pools, and the one that binds first."""

    name: str
    kind: str
    pools: list[Pool] = field(default_factory=list)

    @property
    def bottleneck(self) -> str | None:
        if not self.pools:
            return None
        timed = [(p.expected, p.resource) for p in self.pools if p.expected is not None]
        if timed:
            return min(timed)[1]
        return max(self.pools, key=lambda p: p.utilisation).resource


@dataclass(frozen=True)
class Forecast:
    """Every group's and subnet's pools, as of ``now``, over ``horizon_hours``."""

    now: datetime
    horizon_hours: int
    groups: list[Group]
    #: the nominal coverage of the exhaustion intervals (the forecasts' prediction intervals)
    coverage: float = COVERAGE


def _exhaustion(now: datetime, used: float, capacity: float, moves: Array) -> datetime | None:
    if used >= capacity:
        return now
    hit = np.nonzero(used + moves >= capacity)[0]
    return now + timedelta(hours=int(hit[0]) + 1) if len(hit) else None


def ledger_series(
    session: Session, resources: Sequence[str], since: datetime, hours: int
) -> dict[tuple[str, str], Array]:
    """(project, ledger resource) -> its hourly units in use (zeros where nothing was metered)."""
    out: dict[tuple[str, str], Array] = defaultdict(lambda: np.zeros(hours))
    rows = session.execute(
        select(LedgerEntry.project_id, LedgerEntry.resource, LedgerEntry.hour, LedgerEntry.quantity).where(
            LedgerEntry.resource.in_(list(resources)), LedgerEntry.hour >= since
        )
    )
    for project, resource, hour, qty in rows:
        i = int((hour - since).total_seconds() // STEP_S)
        if 0 <= i < hours:
            out[(project, resource)][i] += qty
    return dict(out)


class _Planner:
    """One forecast's shared reads: the ledger, today's holdings, the what-if."""

    def __init__(self, session: Session, now: datetime, horizon: int, whatif: WhatIf) -> None:
        self.session, self.now, self.horizon, self.whatif = session, now, horizon, whatif
        first = session.scalar(select(func.min(LedgerEntry.hour)))
        since = max(first, now - timedelta(hours=HISTORY_HOURS)) if first else now
        since = since.replace(minute=0, second=0, microsecond=0)
        #: whole hours of history (the current, partial hour left out)
        self.hours = max(0, int((now - since).total_seconds() // STEP_S))
        self.series = ledger_series(session, sorted(set(LEDGER_OF.values())), since, self.hours)
        self.vms = [
            vm
            for vm in session.scalars(select(VM).where(VM.host_id.is_not(None)))
            if vm_counts(vm.state, vm.host_id, vm.desired_state)
        ]

    def _history(self, held: dict[tuple[str, str], float], resource: str) -> Array:
        """The pool's hourly series: each project's series times the pool's share of it today
        (``held``: (project, tenant) -> that share)."""
        out = np.zeros(self.hours)
        for (project, _tenant), share in held.items():
            s = self.series.get((project, resource))
            if s is not None:
                out += s * share
        return out

    def pool(  # noqa: PLR0913 - a pool's figures
        self,
        group: str,
        resource: str,
        unit: str,
        capacity: float,
        used: float,
        shares: dict[tuple[str, str], float],
        tenant_held: float,
    ) -> Pool:
        """Forecast one pool; ``shares``: (project, tenant) -> the share of the project's resource
        in this pool; ``tenant_held``: what the what-if tenant holds here today."""
        history = self._history(shares, LEDGER_OF[resource])
        moves, low, high, model = predict_series(history, self.horizon)
        if self.whatif.growth and tenant_held:
            months = np.arange(1, self.horizon + 1) / HOURS_PER_MONTH
            extra = tenant_held * ((1 + self.whatif.growth) ** months - 1)
            moves, low, high = moves + extra, low + extra, high + extra
        return Pool(
            group,
            resource,
            unit,
            capacity,
            used,
            len(history),
            model,
            _exhaustion(self.now, used, capacity, high),
            _exhaustion(self.now, used, capacity, moves),
            _exhaustion(self.now, used, capacity, low),
        )


def _shares(held: dict[tuple[str, str], float], totals: dict[str, float]) -> dict[tuple[str, str], float]:
    return {(p, t): v / totals[p] for (p, t), v in held.items() if totals.get(p)}


def _host_groups(session: Session) -> list[tuple[str, list[Host]]]:
    hosts = [h for h in session.scalars(select(Host).order_by(Host.name)) if h.state != "maintenance"]
    by_id = {h.id: h for h in hosts}
    members: dict[str, list[Host]] = defaultdict(list)
    placed: set[str] = set()
    for name, host_id in session.execute(
        select(Aggregate.name, AggregateHost.host_id).join(
            AggregateHost, AggregateHost.aggregate_id == Aggregate.id
        )
    ):
        if host_id in by_id:
            members[name].append(by_id[host_id])
            placed.add(host_id)
    groups = [(ALL, hosts), *sorted(members.items())]
    loose = [h for h in hosts if h.id not in placed]
    if members and loose:
        groups.append((UNAGGREGATED, loose))
    return groups


def _capacity(hosts: Sequence[Host], resource: str) -> float:
    if resource == "vcpus":
        return sum(h.cpus * h.cpu_allocation_ratio for h in hosts)
    if resource == "ram_mb":
        return sum(h.ram_mb * h.ram_allocation_ratio for h in hosts)
    return float(sum(h.disk_gb for h in hosts))


def _added(hosts: Sequence[Host], resource: str, whatif: WhatIf) -> float:
    """What the what-if's new hosts add to a group's capacity of ``resource``."""
    size = {"vcpus": whatif.host_cpus, "ram_mb": whatif.host_ram_mb, "disk_gb": whatif.host_disk_gb}[resource]
    if resource == "disk_gb":
        return float(whatif.add_hosts * size)
    ratios = [h.cpu_allocation_ratio if resource == "vcpus" else h.ram_allocation_ratio for h in hosts]
    ratio = sum(ratios) / len(ratios) if ratios else DEFAULT_RATIOS[resource]
    return whatif.add_hosts * size * ratio


def _used(hosts: Sequence[Host], vms: Sequence[VM], resource: str) -> float:
    if resource == "vcpus":
        return float(sum(h.vcpus_used + h.vcpus_reserved for h in hosts))
    if resource == "ram_mb":
        return float(sum(h.ram_mb_used + h.ram_mb_reserved for h in hosts))
    return float(sum(vm.disk_gb for vm in vms))


def _host_group(planner: _Planner, name: str, hosts: Sequence[Host]) -> Group:
    ids = {h.id for h in hosts}
    vms = [vm for vm in planner.vms if vm.host_id in ids]
    whatif = planner.whatif
    joins = bool(whatif.add_hosts) and name in (ALL, whatif.aggregate or UNAGGREGATED)
    group = Group(name, "hosts")
    for resource, unit in HOST_RESOURCES.items():
        totals: dict[str, float] = defaultdict(float)
        held: dict[tuple[str, str], float] = defaultdict(float)
        for vm in planner.vms:
            amount = float(getattr(vm, resource))
            totals[vm.project_id] += amount
            if vm.host_id in ids:
                held[(vm.project_id, vm.tenant_id)] += amount
        capacity = _capacity(hosts, resource) + (_added(hosts, resource, whatif) if joins else 0.0)
        tenant_held = sum(v for (_, t), v in held.items() if t == whatif.tenant_id)
        # the ledger counts RAM in GiB-hours: its series back in MiB
        scale = 1 / RESOURCES[LEDGER_OF[resource]].billing_factor
        shares = {k: v * scale for k, v in _shares(held, totals).items()}
        group.pools.append(
            planner.pool(name, resource, unit, capacity, _used(hosts, vms, resource), shares, tenant_held)
        )
    return group


def _subnets(planner: _Planner) -> list[Group]:
    session = planner.session
    ports_of: dict[str, float] = defaultdict(float)
    held: dict[str, dict[tuple[str, str], float]] = defaultdict(lambda: defaultdict(float))
    for subnet_id, project, tenant in session.execute(
        select(IPAllocation.subnet_id, Port.project_id, Port.tenant_id).join(
            Port, Port.id == IPAllocation.port_id
        )
    ):
        ports_of[project] += 1
        held[subnet_id][(project, tenant)] += 1
    groups = []
    for subnet in session.scalars(select(Subnet).order_by(Subnet.cidr)):
        mine = held.get(subnet.id, {})
        tenant_held = sum(v for (_, t), v in mine.items() if t == planner.whatif.tenant_id)
        pool = planner.pool(
            f"subnet {subnet.cidr} ({subnet.id})",
            "addresses",
            "addresses",
            float(pool_size(subnet)),
            float(sum(mine.values())),
            _shares(mine, ports_of),
            tenant_held,
        )
        groups.append(Group(pool.group, "subnet", [pool]))
    return groups


def forecast(session: Session, horizon_hours: int, whatif: WhatIf, now: datetime | None = None) -> Forecast:
    """Every host group's and subnet's pools and when each runs out within ``horizon_hours``."""
    now = now or utcnow()
    planner = _Planner(session, now, horizon_hours, whatif)
    hosts = [_host_group(planner, name, members) for name, members in _host_groups(session)]
    return Forecast(now, horizon_hours, hosts + _subnets(planner))


class CapacityService(Service):
    """Capacity forecasts of the cluster (platform administrators)."""

    def forecast(self, horizon_days: float, whatif: WhatIf) -> Forecast:
        """When each host group and subnet runs out, with the what-if applied."""
        if not self.principal.is_global:
            raise Forbidden("Capacity planning covers every tenant's use: platform administrators only.")
        if whatif.add_hosts and min(whatif.host_cpus, whatif.host_ram_mb) <= 0:
            raise InvalidInput(
                "host_cpus", "adding hosts needs their host_cpus and host_ram_mb", part="query"
            )
        if (
            whatif.aggregate is not None
            and self.session.scalar(select(Aggregate.id).where(Aggregate.name == whatif.aggregate)) is None
        ):
            raise InvalidInput("aggregate", f"no aggregate named '{whatif.aggregate}'", part="query")
        return forecast(self.session, max(1, math.ceil(horizon_days * 24)), whatif)

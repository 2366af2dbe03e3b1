"""Rightsizing: which VMs are over- or under-sized by their p95 CPU and memory, and what fits them.

Over a window (default 7 days) the metrics store is read for each VM of a tenant, in the tenant's
own scope (``monitoring/query.py``): the guest's vCPU time as cores (``rate`` over each step) and
the guest's used memory (total minus available, as the guest sees it). The 95th percentile of each
series is the VM's need. A VM is

- **under-sized** when its p95 reaches ``UNDER`` (90 %) of its vCPUs or of its RAM;
- **over-sized** when a cheaper flavor fits its p95 with headroom (CPU at most ``CPU_TARGET`` 70 %
  busy, memory at most ``MEM_TARGET`` 80 % full, a root disk at least as large: disks don't shrink);
- **right-sized** otherwise, and **unknown** when the store holds no CPU samples of it.

The recommendation is the cheapest flavor (by the price list) that fits with headroom, and the
saving is the hourly cost difference times 730 hours (negative: what growing it costs). A guest
that reports no memory keeps its RAM as the need (nothing is known to shrink).

The same CPU series summed over a set of like VMs (a scaling group's members) is the group's load
for ``roi.roi``: what scaling to it would have saved against running the peak's VMs throughout.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from novacron.autoscaling.cost import HOURS_PER_MONTH, Shape, currency_of, hourly
from novacron.autoscaling.roi import ROI, roi
from novacron.db.models import VM, Flavor, Tenant
from novacron.db.resolve import resolve, scoped
from novacron.errors import InvalidInput, Unavailable
from novacron.monitoring.query import PromAPI, Scope, parse_seconds, store_endpoint
from novacron.quota import billing
from novacron.quota.registry import METERED_STATES
from novacron.service import Service

UNDER = 0.9
CPU_TARGET = 0.7
MEM_TARGET = 0.8
PERCENTILE = 95.0
#: about this many points per series over the window (the store aggregates each step)
POINTS = 2000
MIN_STEP_S = 60
#: the shortest rate window: at least a few samples whatever the agents' interval
MIN_RATE_WINDOW_S = 120
CPU_QUERY = "sum by (vm_id) (rate(novacron_vm_cpu_seconds_total[{w}s]))"
MEM_QUERY = (
    "sum by (vm_id) (avg_over_time(novacron_vm_guest_memory_total_bytes[{w}s])"
    " - avg_over_time(novacron_vm_guest_memory_available_bytes[{w}s]))"
)
MIB = 2**20
MIN_WINDOW_S = 600
MAX_WINDOW_S = 90 * 86_400


@dataclass(frozen=True)
class Usage:
    """A VM's p95 over the window: CPU in cores, memory in MiB (None: no samples)."""

    cpu_cores: float | None
    memory_mb: float | None


@dataclass(frozen=True)
class Recommendation:
    """The verdict on one VM and the flavor that fits it best (None when none does or none is needed)."""

    vm_id: str
    name: str
    shape: Shape
    usage: Usage
    status: str
    flavor: str | None
    flavor_shape: Shape | None
    saving_per_month: float
    reason: str


def _need(shape: Shape, usage: Usage) -> tuple[int, float]:
    """vCPUs and MiB that carry the p95 with headroom."""
    assert usage.cpu_cores is not None
    vcpus = max(1, math.ceil(usage.cpu_cores / CPU_TARGET - 1e-9))
    ram = usage.memory_mb / MEM_TARGET if usage.memory_mb is not None else float(shape.ram_mb)
    return vcpus, ram


def _is_under(shape: Shape, usage: Usage) -> bool:
    assert usage.cpu_cores is not None
    cpu_full = usage.cpu_cores >= UNDER * shape.vcpus
    mem_full = usage.memory_mb is not None and usage.memory_mb >= UNDER * shape.ram_mb
    return cpu_full or mem_full


def recommend(
    vm_id: str, name: str, shape: Shape, usage: Usage, flavors: Sequence[Flavor], price_list: dict[str, float]
) -> Recommendation:
    """The verdict on a VM of ``shape`` with ``usage``, among ``flavors`` priced by ``price_list``."""
    if usage.cpu_cores is None:
        return Recommendation(
            vm_id, name, shape, usage, "unknown", None, None, 0.0, "no CPU samples in the window"
        )
    vcpus, ram = _need(shape, usage)
    fitting = [
        Shape(f.vcpus, f.ram_mb, f.disk_gb)
        for f in flavors
        if f.vcpus >= vcpus and f.ram_mb >= ram and f.disk_gb >= shape.disk_gb
    ]
    names = {(f.vcpus, f.ram_mb, f.disk_gb): f.name for f in flavors}
    best = min(fitting, key=lambda s: (hourly(s, price_list), s.vcpus, s.ram_mb), default=None)
    now = hourly(shape, price_list)
    found = f"p95 {usage.cpu_cores:.2f} of {shape.vcpus} vCPUs" + (
        f", {usage.memory_mb:.0f} of {shape.ram_mb} MiB" if usage.memory_mb is not None else ""
    )
    need = f"needs {vcpus} vCPUs and {ram:.0f} MiB with headroom"
    if best is None:
        status = "under-sized" if _is_under(shape, usage) else "right-sized"
        return Recommendation(
            vm_id, name, shape, usage, status, None, None, 0.0, f"{found}; no flavor {need}"
        )
    saving = (now - hourly(best, price_list)) * HOURS_PER_MONTH
    label = names[(best.vcpus, best.ram_mb, best.disk_gb)]
    if _is_under(shape, usage):
        return Recommendation(
            vm_id, name, shape, usage, "under-sized", label, best, saving, f"{found}; {need}"
        )
    if saving > 1e-9:
        return Recommendation(
            vm_id, name, shape, usage, "over-sized", label, best, saving, f"{found}; {need}"
        )
    return Recommendation(vm_id, name, shape, usage, "right-sized", None, None, 0.0, f"{found}; {need}")


def series_by_vm(
    api: PromAPI, query: str, start: float, end: float
) -> tuple[int, dict[str, dict[float, float]]]:
    """Each VM's series of ``query`` (``{w}``: the rate window) over [start, end], about ``POINTS``
    steps: (step seconds, VM id -> {unix time: value})."""
    step = max(MIN_STEP_S, math.ceil((end - start) / POINTS))
    promql = query.format(w=max(step, MIN_RATE_WINDOW_S))
    params = [("query", api.scoped_query(promql)), ("start", f"{start:.3f}"), ("end", f"{end:.3f}")]
    data = api.get("query_range", [*params, ("step", str(step))])["data"]
    out: dict[str, dict[float, float]] = {}
    for series in data.get("result", []):
        vm_id = series.get("metric", {}).get("vm_id")
        points = {float(t): float(v) for t, v in series.get("values", []) if math.isfinite(float(v))}
        if vm_id and points:
            out[vm_id] = points
    return step, out


def p95_by_vm(api: PromAPI, query: str, start: float, end: float) -> dict[str, float]:
    """The 95th percentile of each VM's series of ``query`` over [start, end]."""
    _, series = series_by_vm(api, query, start, end)
    return {
        vm_id: float(np.percentile(list(points.values()), PERCENTILE)) for vm_id, points in series.items()
    }


@dataclass(frozen=True)
class RightsizingReport:
    """Every VM's verdict, and what following every recommendation saves a month."""

    currency: str
    window_s: int
    items: list[Recommendation]

    @property
    def saving_per_month(self) -> float:
        return sum(i.saving_per_month for i in self.items)


@dataclass(frozen=True)
class _Window:
    """What one request reads: the tenant-scoped store, its running VMs asked about, the window."""

    api: PromAPI
    vms: list[VM]
    start: float
    end: float
    window_s: int


@dataclass(frozen=True)
class GroupROI:
    """Scaling's saving for a set of like VMs over a window of their real CPU load."""

    currency: str
    window_s: int
    step_s: int
    steps: int
    shape: Shape
    members: int
    roi: ROI


class RightsizingService(Service):
    """Rightsizing and scaling's ROI for the caller's tenant's VMs (administrators: any tenant's),
    from the metrics store."""

    raises = (Unavailable,)

    def _window(self, tenant_ref: str | None, window: str, vm_ids: Sequence[str] | None) -> _Window:
        window_s = int(parse_seconds(window, "window"))
        if not MIN_WINDOW_S <= window_s <= MAX_WINDOW_S:
            raise InvalidInput("window", "must be between 10m and 90d", part="query")
        ref = tenant_ref or self.principal.tenant_id
        if ref is None:
            raise InvalidInput("tenant_id", "required for platform administrators", part="query")
        tenant = resolve(self.session, self.principal, Tenant, ref)
        stmt = scoped(select(VM), VM, self.principal).where(
            VM.tenant_id == tenant.id, VM.state.in_(METERED_STATES)
        )
        if vm_ids is not None:
            stmt = stmt.where(VM.id.in_(list(vm_ids)))
        vms = list(self.session.scalars(stmt.order_by(VM.name)))
        # the tenant's own scope, whoever asks: the store returns nothing of anyone else
        api = PromAPI(store_endpoint(self._ctx), Scope(tenant.id))
        end = time.time()
        return _Window(api, vms, end - window_s, end, window_s)

    def tenant(
        self, tenant_ref: str | None, window: str = "7d", vm_ids: Sequence[str] | None = None
    ) -> RightsizingReport:
        """The running VMs of a tenant (default: the caller's), or only ``vm_ids`` among them (a
        scaling group), judged over ``window`` (``7d``, ``12h``, seconds) up to now."""
        w = self._window(tenant_ref, window, vm_ids)
        cpu = p95_by_vm(w.api, CPU_QUERY, w.start, w.end)
        memory = {k: v / MIB for k, v in p95_by_vm(w.api, MEM_QUERY, w.start, w.end).items()}
        flavors = list(self.session.scalars(select(Flavor)))
        price_list = billing.prices(self.session)
        items = [
            recommend(
                vm.id,
                vm.name,
                Shape(vm.vcpus, vm.ram_mb, vm.disk_gb),
                Usage(cpu.get(vm.id), memory.get(vm.id)),
                flavors,
                price_list,
            )
            for vm in w.vms
        ]
        return RightsizingReport(currency_of(self._ctx), w.window_s, items)

    def roi(
        self, tenant_ref: str | None, vm_ids: Sequence[str], window: str = "7d", target_util: float = 0.6
    ) -> GroupROI:
        """What scaling a set of like VMs (a group) to their CPU load would have saved over the
        window against running, throughout, as many as the peak needed: the load is the members'
        busy cores at each step, one VM carries its vCPUs at ``target_util``."""
        w = self._window(tenant_ref, window, vm_ids)
        if not w.vms:
            raise InvalidInput("vm_id", "names no running VM of the tenant", part="query")
        shape = max((Shape(vm.vcpus, vm.ram_mb, vm.disk_gb) for vm in w.vms), key=lambda s: s.vcpus)
        step, series = series_by_vm(w.api, CPU_QUERY, w.start, w.end)
        load: dict[float, float] = defaultdict(float)
        for vm in w.vms:
            for t, cores in series.get(vm.id, {}).items():
                load[t] += cores
        if not load:
            raise InvalidInput(
                "vm_id", "the metrics store holds no CPU samples of these VMs in the window", part="query"
            )
        price = hourly(shape, billing.prices(self.session))
        result = roi([load[t] for t in sorted(load)], step, shape.vcpus, price, target_util, min_vms=1)
        return GroupROI(currency_of(self._ctx), w.window_s, step, len(load), shape, len(w.vms), result)

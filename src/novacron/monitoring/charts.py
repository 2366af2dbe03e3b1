"""Charts of a VM or a host over a range (5 min to 30 days), read from the metrics store.

A chart is a set of named series with units, each a range query with a step chosen so that the chart
has a few hundred points whatever the range: the store aggregates (``rate`` and ``avg_over_time`` over
one step's window), so 30 days of 1 s samples cost about as much to draw as 5 minutes. A VM's queries
run in its tenant's scope like any tenant query (``monitoring/query.py``); host charts are for
platform administrators, and host series carry no tenant label.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from novacron.compute.hosts import HostService
from novacron.compute.vms import VMService
from novacron.errors import Forbidden, InvalidInput, Unavailable
from novacron.monitoring.livecharts import LIVE_RANGE, LiveSubject
from novacron.monitoring.promql import TENANT_LABEL
from novacron.monitoring.query import PromAPI, Scope, store_endpoint
from novacron.service import Service

#: the ranges a chart offers
RangeName = Literal["5m", "1h", "24h", "7d", "30d"]
#: each range in seconds
RANGES: dict[str, int] = {"5m": 300, "1h": 3600, "24h": 86_400, "7d": 604_800, "30d": 2_592_000}
#: about how many points a chart has; the step is the first round step giving at most this many
TARGET_POINTS = 300
#: the label naming the line each result of a chart's query belongs to
_LINE_LABEL = "chart_line"
_ROUND_STEPS_S = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10_800,
    21_600,
    43_200,
    86_400,
)


#: how long a drawn chart is given again to whoever asks for the same one (same store, scope,
#: subject, range and end): a thousand viewers of one VM's live chart cost one range query a second
SHARED_FOR_S = 1.0
#: how many recently drawn charts are kept
SHARED_CHARTS = 256


@dataclass(frozen=True)
class Plot:
    """One line of a chart: a PromQL template over ``{sel}`` (the subject's matchers) and ``{w}``
    (the window each point aggregates), and the label that splits it into several lines, if any."""

    name: str
    title: str
    unit: str
    expr: str
    split_by: str | None = None


def _rate(metric: str) -> str:
    return f"sum(rate({metric}{{sel}}[{{w}}]))"


def _gauge(metric: str) -> str:
    return f"sum(avg_over_time({metric}{{sel}}[{{w}}]))"


def _used(total: str, available: str) -> str:
    return f"{_gauge(total)} - {_gauge(available)}"


VM_PLOTS = (
    Plot("cpu", "Guest CPU (vCPU threads)", "cores", _rate("novacron_vm_cpu_seconds_total")),
    Plot("process_cpu", "QEMU process CPU", "cores", _rate("novacron_vm_process_cpu_seconds_total")),
    Plot(
        "guest_memory_used",
        "Guest memory used (as the guest sees it)",
        "bytes",
        _used("novacron_vm_guest_memory_total_bytes", "novacron_vm_guest_memory_available_bytes"),
    ),
    Plot("guest_memory_total", "Guest memory total", "bytes", _gauge("novacron_vm_guest_memory_total_bytes")),
    Plot("process_rss", "QEMU process RSS", "bytes", _gauge("novacron_vm_process_resident_memory_bytes")),
    Plot("disk_read", "Disk read", "bytes/s", _rate("novacron_vm_disk_read_bytes_total")),
    Plot("disk_write", "Disk written", "bytes/s", _rate("novacron_vm_disk_written_bytes_total")),
    Plot("disk_read_ops", "Disk reads", "ops/s", _rate("novacron_vm_disk_reads_total")),
    Plot("disk_write_ops", "Disk writes", "ops/s", _rate("novacron_vm_disk_writes_total")),
    Plot("net_rx", "Network received", "bytes/s", _rate("novacron_vm_network_receive_bytes_total")),
    Plot("net_tx", "Network sent", "bytes/s", _rate("novacron_vm_network_transmit_bytes_total")),
)

HOST_PLOTS = (
    Plot(
        "cpu",
        "CPU by mode",
        "cores",
        "sum by (mode) (rate(novacron_host_cpu_seconds_total{sel}[{w}]))",
        "mode",
    ),
    Plot("cpus", "CPUs", "cores", _gauge("novacron_host_cpus")),
    Plot(
        "memory_used",
        "Memory used",
        "bytes",
        _used("novacron_host_memory_total_bytes", "novacron_host_memory_available_bytes"),
    ),
    Plot("memory_total", "Memory total", "bytes", _gauge("novacron_host_memory_total_bytes")),
    Plot("load1", "Load (1 min)", "load", _gauge("novacron_host_load1")),
    Plot("load15", "Load (15 min)", "load", _gauge("novacron_host_load15")),
    Plot("disk_read", "Disk read", "bytes/s", _rate("novacron_host_disk_read_bytes_total")),
    Plot("disk_write", "Disk written", "bytes/s", _rate("novacron_host_disk_written_bytes_total")),
    Plot("net_rx", "Network received", "bytes/s", _rate("novacron_host_network_receive_bytes_total")),
    Plot("net_tx", "Network sent", "bytes/s", _rate("novacron_host_network_transmit_bytes_total")),
    Plot(
        "filesystem_used",
        "State directory filesystem used",
        "bytes",
        _used("novacron_host_filesystem_size_bytes", "novacron_host_filesystem_avail_bytes"),
    ),
    Plot("qemu_processes", "QEMU processes", "processes", _gauge("novacron_host_qemu_processes")),
)


@dataclass(frozen=True)
class ChartSeries:
    """One line: its name, what it shows, its unit and its (unix time, value) points."""

    name: str
    title: str
    unit: str
    points: list[tuple[float, float]]


@dataclass(frozen=True)
class Chart:
    """A subject's chart over a range: the time span, the step between points and the lines."""

    subject_id: str
    range: str
    start: float
    end: float
    step_s: float
    series: list[ChartSeries] = field(default_factory=list)


def chart_step(range_s: float, interval_s: float) -> float:
    """The round step giving at most TARGET_POINTS points over ``range_s``, never below the
    sampling interval."""
    wanted = max(range_s / TARGET_POINTS, interval_s)
    return float(next((s for s in _ROUND_STEPS_S if s >= wanted), math.ceil(wanted)))


def _window(step_s: float, interval_s: float) -> str:
    # a window must hold a few samples for rate() and cover the whole step so that none is skipped
    return f"{math.ceil(max(step_s + interval_s, 4 * interval_s))}s"


def _line_query(plot: Plot, selector: str, window: str) -> str:
    # each plot's result labelled with its name, so that one query answers for every line
    promql = plot.expr.replace("{sel}", selector).replace("{w}", window)
    return f'label_replace({promql}, "{_LINE_LABEL}", "{plot.name}", "", "")'


class _RecentCharts:
    """Charts drawn in the last SHARED_FOR_S seconds, by what they were drawn from. The caller's
    right to the subject is checked before (``ChartService``); the key holds the tenant scope and
    the subject's selector, so one caller is never given a chart another could not draw itself."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._charts: OrderedDict[tuple[object, ...], tuple[float, Chart]] = OrderedDict()

    def get(self, key: tuple[object, ...]) -> Chart | None:
        with self._lock:
            found = self._charts.get(key)
        if found is None or time.monotonic() - found[0] > SHARED_FOR_S:
            return None
        return found[1]

    def put(self, key: tuple[object, ...], chart: Chart) -> None:
        with self._lock:
            self._charts[key] = (time.monotonic(), chart)
            self._charts.move_to_end(key)
            while len(self._charts) > SHARED_CHARTS:
                self._charts.popitem(last=False)


_recent = _RecentCharts()


def draw(  # noqa: PLR0913 - what a chart is drawn from
    api: PromAPI, plots: tuple[Plot, ...], subject_id: str, selector: str, range_name: str, interval_s: float
) -> Chart:
    """Every plot for ``selector`` over ``range_name`` ending now, in one range query: a line per
    plot (per value of its ``split_by`` label), in the order of ``plots``; the same chart drawn in
    the last second is given again."""
    range_s = RANGES[range_name]
    step = chart_step(range_s, interval_s)
    end = math.floor(time.time() / step) * step
    key = (api.endpoint.query_url, api.scope.tenant_id, plots, subject_id, selector, range_name, end)
    if (chart := _recent.get(key)) is not None:
        return chart
    chart = _draw(api, plots, subject_id, selector, range_name, (end, step, interval_s))
    _recent.put(key, chart)
    return chart


def _draw(  # noqa: PLR0913 - what a chart is drawn from
    api: PromAPI,
    plots: tuple[Plot, ...],
    subject_id: str,
    selector: str,
    range_name: str,
    timing: tuple[float, float, float],
) -> Chart:
    end, step, interval_s = timing
    start = end - RANGES[range_name]
    window = _window(step, interval_s)
    promql = " or ".join(_line_query(plot, selector, window) for plot in plots)
    params = [("query", api.scoped_query(promql)), ("start", f"{start:.3f}"), ("end", f"{end:.3f}")]
    answer = api.get("query_range", [*params, ("step", f"{step:g}")])
    by_plot: dict[str, list[dict[str, Any]]] = {}
    for result in answer["data"]["result"]:
        by_plot.setdefault(result["metric"].get(_LINE_LABEL, ""), []).append(result)
    lines: list[ChartSeries] = []
    for plot in plots:
        for result in sorted(by_plot.get(plot.name, []), key=lambda r: str(r["metric"])):
            suffix = f"_{result['metric'].get(plot.split_by, '')}" if plot.split_by else ""
            points = [(float(t), float(v)) for t, v in result["values"]]
            lines.append(ChartSeries(plot.name + suffix, plot.title, plot.unit, points))
    return Chart(subject_id, range_name, start, end, step, lines)


def _range(range_name: str) -> str:
    if range_name not in RANGES:
        raise InvalidInput("range", f"must be one of {', '.join(RANGES)}", part="query")
    return range_name


#: what a subject's chart is drawn from: the store's API in the caller's scope, the plots, the
#: subject's id and its series' selector
_Target = tuple[PromAPI, tuple[Plot, ...], str, str]


class ChartService(Service):
    """VM charts for whoever may see the VM; host charts for platform administrators; either drawn
    once over a range, or followed live (``livecharts``)."""

    raises = (Unavailable,)

    def vm_chart(self, ref: str, range_name: str) -> Chart:
        """The VM's CPU, memory (guest's view and QEMU's RSS), disk and network over the range."""
        _range(range_name)
        return draw(*self._vm(ref), range_name, self.ctx.settings.metrics_interval_s)

    def host_chart(self, ref: str, range_name: str) -> Chart:
        """The host's CPU by mode, memory, load, disk, network, state filesystem and QEMU count."""
        _range(range_name)
        return draw(*self._host(ref), range_name, self.ctx.settings.metrics_interval_s)

    def vm_live(self, ref: str) -> AsyncIterator[bytes]:
        """The VM's live (5-minute) chart as server-sent events: the caller's right to the VM is
        checked now, then the stream follows the VM's one drawing loop in this process."""
        return self._live("vm", self._vm(ref))

    def host_live(self, ref: str) -> AsyncIterator[bytes]:
        """The host's live (5-minute) chart as server-sent events (platform administrators)."""
        return self._live("host", self._host(ref))

    def _vm(self, ref: str) -> _Target:
        vm = VMService(self.session, self.principal, self.ctx).get(ref)
        vm_id, tenant_id = vm.id, vm.tenant_id
        # the store is read next (and a live chart is followed for minutes): no transaction may
        # stay open meanwhile
        self.session.rollback()
        api = PromAPI(store_endpoint(self.ctx), Scope(tenant_id))
        return api, VM_PLOTS, vm_id, f'{{vm_id="{vm_id}",{TENANT_LABEL}="{tenant_id}"}}'

    def _host(self, ref: str) -> _Target:
        if not self.principal.is_global:
            raise Forbidden("Only platform administrators read a host's metrics.")
        host_id = HostService(self.session, self.principal, self.ctx).get(ref).host.id
        self.session.rollback()
        return PromAPI(store_endpoint(self.ctx), Scope(None)), HOST_PLOTS, host_id, f'{{host_id="{host_id}"}}'

    def _live(self, kind: str, target: _Target) -> AsyncIterator[bytes]:
        api, _plots, subject_id, _selector = target
        interval_s = self.ctx.settings.metrics_interval_s
        key = (api.endpoint.query_url, api.scope.tenant_id, kind, subject_id)
        subject = LiveSubject(key, functools.partial(draw, *target, LIVE_RANGE, interval_s))
        return self.ctx.live_charts.follow(subject)

"""The anomaly detector on the metrics write path: VM samples -> rates -> scores -> store and events.

``MonitoringStack.record`` hands each host report to :class:`AnomalyFeed` after queueing its
series; ``submit`` only appends to a bounded queue, so the agent's report never waits on the
detector. The feed's own thread then, per VM:

1. derives the series people read (:class:`RateDeriver`), one value per ``step_s`` (10 s by
   default): CPU cores from the deltas of ``vcpu_time_s`` (or ``cpu_time_s`` when the driver has
   no vCPU threads' time), disk and NIC bytes per second from their counters, guest available
   memory as it is (a gauge: used memory is total minus it, so their excursions are the same).
   The step is what the detector was measured at (NAB's series are 5-minute steps; its envelope
   decays per sample, so 1 s samples would make it forget a daily pattern within the hour), and
   it cuts the scoring cost by as much;
2. scores each with one :class:`~novacron.monitoring.anomaly.AnomalyMonitor` keyed by
   ``(vm_id, series name)``; a series learns for ``learning_seconds`` (sample time) first;
3. queues ``novacron_anomaly_score{vm_id, tenant_id, project_id, host_id, metric="<series>"}``
   for the store with the sample's timestamp (the same writer as the other series), so the
   tenant query API and alert rules of kind ``anomaly`` read it;
4. publishes a ``vm.anomaly`` event (tenant-scoped; payload ``metric``, ``value``, ``score``) in a
   session of its own when a series' score crosses the event threshold, at most one per VM per
   ``event_interval_s``.

A counter that goes down (a restarted QEMU, a VM moved to another host) or a gap longer than
``max_gap_s`` gives no rate for that sample: the next one starts again from it, so a reset never
scores as a spike. Samples out of order are ignored.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from novacron import events
from novacron.db.base import Database
from novacron.monitoring.anomaly import AnomalyCrossing, AnomalyMonitor
from novacron.monitoring.queued import QueueWorker
from novacron.monitoring.remote_write import Sample, Series
from novacron.monitoring.series import ANOMALY_SCORE, VM_SERIES, Tenancy

log = logging.getLogger(__name__)

#: report key of a CPU counter -> series name; the first one a sample holds is scored
CPU_COUNTERS = ("vcpu_time_s", "cpu_time_s")
#: report keys of the byte counters scored as rates
BYTE_COUNTERS = ("disk_read_bytes", "disk_write_bytes", "net_rx_bytes", "net_tx_bytes")
#: report keys of the gauges scored as they are
GAUGES = ("guest_mem_available_bytes",)
#: the most VMs whose counters, score series and event clocks are kept; beyond, they are dropped
#: whole (a VM gone without a delete, e.g. with its host, is never forgotten one by one)
MAX_VMS = 100_000


_NUMBERS = frozenset((int, float))
_CPU = tuple((key, VM_SERIES[key]) for key in CPU_COUNTERS)
_BYTES = tuple((key, VM_SERIES[key]) for key in BYTE_COUNTERS)
_GAUGES = tuple((key, VM_SERIES[key]) for key in GAUGES)


def _number(value: object) -> float | None:
    """``value`` if it is a number (not None, not a bool, not a string), else None."""
    return float(cast(float, value)) if type(value) in _NUMBERS else None


class _VmCounters:
    """A VM's host, when its next sample is due, and the last (time, value) of each counter."""

    __slots__ = ("host_id", "last", "next_t")

    def __init__(self, host_id: str) -> None:
        self.host_id = host_id
        self.next_t = 0.0
        self.last: dict[str, tuple[float, float]] = {}


class RateDeriver:
    """The scored series of each VM sample: counter rates from consecutive samples, and gauges.

    Args:
        step_s: the resolution of the scored series: a VM's samples are taken once per step (the
            ones in between are skipped at the cost of a lookup), so a rate is the mean over at
            least a step.
        max_gap_s: two samples further apart than this give no rate (an average over a gap is
            not comparable with the rates around it); default three steps, at least a minute.
    """

    def __init__(self, step_s: float = 1.0, max_gap_s: float | None = None) -> None:
        if step_s <= 0:
            raise ValueError("step_s must be positive")
        self.step_s = step_s
        self.max_gap_s = max_gap_s if max_gap_s is not None else max(60.0, 3 * step_s)
        self._vms: dict[str, _VmCounters] = {}

    def derive(self, vm_id: str, host_id: str, sample: Mapping[str, Any]) -> list[tuple[str, float, float]]:
        """(series name, unix s, value) of each scored series this sample gives."""
        t = _number(sample.get("time"))
        if t is None or t <= 0:
            return []
        state = self._vms.get(vm_id)
        if state is None or state.host_id != host_id:  # a moved VM's counters start again
            state = self._vms[vm_id] = _VmCounters(host_id)
        elif t < state.next_t:
            return []  # within the step, or out of order
        state.next_t = t + self.step_s
        cpu = _CPU[0] if _number(sample.get(_CPU[0][0])) is not None else _CPU[1]
        out: list[tuple[str, float, float]] = []
        for key, name in (cpu, *_BYTES):
            rate = self._rate(state.last, key, t, _number(sample.get(key)))
            if rate is not None:
                out.append((name, t, rate))
        for key, name in _GAUGES:
            value = _number(sample.get(key))
            if value is not None:
                out.append((name, t, value))
        return out

    def _rate(
        self, last: dict[str, tuple[float, float]], key: str, t: float, value: float | None
    ) -> float | None:
        if value is None:
            return None
        previous = last.get(key)
        last[key] = (t, value)
        if previous is None:
            return None
        dt = t - previous[0]
        if dt > self.max_gap_s or value < previous[1]:
            return None  # a gap, or a counter reset: start again from this sample
        return (value - previous[1]) / dt

    def forget(self, vm_id: str) -> None:
        """Drop a VM's counters."""
        self._vms.pop(vm_id, None)

    def __len__(self) -> int:
        return len(self._vms)


@dataclass(frozen=True)
class VmAnomaly:
    """A crossing of a VM's series, with the tenancy its event is scoped to."""

    vm_id: str
    tenant_id: str
    project_id: str
    metric: str
    value: float
    score: float


class _Report(NamedTuple):
    host_id: str
    samples: Mapping[str, Mapping[str, Any]]
    tenancy: Mapping[str, Tenancy]


class AnomalyFeed(QueueWorker):
    """Scores VM series from reports in its own thread (see the module's description).

    Args:
        submit: queues samples for the store (the stack's ``SeriesWriter.submit``).
        db: where ``vm.anomaly`` events are published (None: scores only).
        threshold: the score from which a crossing is an event.
        learning_seconds: how long a new series learns before it scores (sample time).
        event_interval_s: the least time between two events of one VM.
        step_s: the resolution of the scored series (see `RateDeriver`).
        max_pending: reports queued at most; beyond, the oldest are dropped (counted in ``dropped``).
    """

    thread_name = "anomaly-feed"

    def __init__(  # noqa: PLR0913 - the feed's settings
        self,
        submit: Callable[[list[Sample]], None],
        db: Database | None,
        threshold: float,
        learning_seconds: float,
        event_interval_s: float = 300.0,
        step_s: float = 1.0,
        max_pending: int = 10_000,
    ) -> None:
        super().__init__()
        self._submit = submit
        self._db = db
        self.event_interval_s = event_interval_s
        self.max_pending = max_pending
        self.rates = RateDeriver(step_s)
        self._crossings: list[AnomalyCrossing] = []
        self.monitor = AnomalyMonitor(self._crossings.append, threshold, learning_seconds=learning_seconds)
        self._series: dict[str, tuple[tuple[str, str, str], dict[str, Series]]] = {}
        self._last_event: dict[str, float] = {}
        self._queue: deque[_Report | str] = deque()
        self._in_hand = False
        self.scored = 0
        self.dropped = 0
        self.events = 0

    def submit(
        self, host_id: str, samples: Mapping[str, Mapping[str, Any]], tenancy: Mapping[str, Tenancy]
    ) -> None:
        """Queue a host report for scoring; never blocks on the detector."""
        with self._cond:
            self._queue.append(_Report(host_id, samples, tenancy))
            if len(self._queue) > self.max_pending:
                self._queue.popleft()
                self.dropped += 1
            self._cond.notify()

    def forget_vm(self, vm_id: str) -> None:
        """Forget a deleted VM's series (after the reports already queued)."""
        with self._cond:
            self._queue.append(vm_id)
            self._cond.notify()

    def _busy(self) -> bool:
        return bool(self._queue) or self._in_hand

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                item = self._queue.popleft()
                self._in_hand = True
            try:
                if isinstance(item, str):
                    self._forget(item)
                else:
                    self._publish(self.score(item.host_id, item.samples, item.tenancy))
            except Exception:  # one bad report or a busy database must not end scoring
                log.exception("anomaly scoring failed")
            finally:
                with self._cond:
                    self._in_hand = False
                    self._cond.notify_all()

    def score(
        self, host_id: str, samples: Mapping[str, Mapping[str, Any]], tenancy: Mapping[str, Tenancy]
    ) -> list[VmAnomaly]:
        """Score one report's VMs (in the caller's thread), queue their scores for the store, and
        answer the crossings that are due an event."""
        out: list[Sample] = []
        anomalies: list[VmAnomaly] = []
        if len(self._series) > MAX_VMS:
            self._series.clear()
            self._last_event.clear()
            self.rates = RateDeriver(self.rates.step_s, self.rates.max_gap_s)
        for vm_id, sample in samples.items():
            owner = tenancy.get(vm_id)
            if owner is None:
                continue
            derived = self.rates.derive(vm_id, host_id, sample)
            if not derived:  # most samples: within a step
                continue
            series = self._score_series(vm_id, host_id, owner)
            for metric, t, value in derived:
                score = self.monitor.observe((vm_id, metric), t, value)
                one = series.get(metric) or self._new_series(series, vm_id, host_id, owner, metric)
                out.append((one, int(t * 1000), score))
            if self._crossings:
                anomalies += self._due(vm_id, owner)
        self.scored += len(out)
        self._submit(out)
        return anomalies

    def _score_series(self, vm_id: str, host_id: str, owner: Tenancy) -> dict[str, Series]:
        """The VM's score series by metric, made again when its host or tenancy changes."""
        labels = (host_id, owner[0], owner[1])
        known = self._series.get(vm_id)
        if known is None or known[0] != labels:
            known = self._series[vm_id] = (labels, {})
        return known[1]

    @staticmethod
    def _new_series(
        series: dict[str, Series], vm_id: str, host_id: str, owner: Tenancy, metric: str
    ) -> Series:
        labels = {"vm_id": vm_id, "host_id": host_id, "tenant_id": owner[0], "project_id": owner[1]}
        one = series[metric] = Series(ANOMALY_SCORE, {**labels, "metric": metric})
        return one

    def _due(self, vm_id: str, owner: Tenancy) -> list[VmAnomaly]:
        """The VM's crossings as events, unless one was published within ``event_interval_s``."""
        crossings, self._crossings[:] = list(self._crossings), []
        now = time.monotonic()
        last = self._last_event.get(vm_id)
        if last is not None and now - last < self.event_interval_s:
            return []
        self._last_event[vm_id] = now
        worst = max(crossings, key=lambda c: c.score)  # one event for one report's crossings
        metric = cast(tuple[str, str], worst.key)[1]
        return [VmAnomaly(vm_id, owner[0], owner[1], metric, worst.value, worst.score)]

    def _publish(self, anomalies: list[VmAnomaly]) -> None:
        if not anomalies or self._db is None:
            return
        with self._db.session() as s:
            for a in anomalies:
                events.publish(
                    s,
                    "vm.anomaly",
                    "vm",
                    a.vm_id,
                    tenant_id=a.tenant_id,
                    project_id=a.project_id,
                    metric=a.metric,
                    value=a.value,
                    score=round(a.score, 4),
                )
        self.events += len(anomalies)

    def _forget(self, vm_id: str) -> None:
        self.rates.forget(vm_id)
        self._series.pop(vm_id, None)
        self._last_event.pop(vm_id, None)
        for metric in {VM_SERIES[key] for key in (*CPU_COUNTERS, *BYTE_COUNTERS, *GAUGES)}:
            self.monitor.forget((vm_id, metric))

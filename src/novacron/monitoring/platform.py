"""The platform's own metrics (issue 13): what the control plane is doing, for an operator's Prometheus.

One :class:`PlatformMetrics` per process context (``ctx.platform_metrics``) owns one
``prometheus_client`` registry. Two kinds of series live there:

- instruments updated as things happen: API requests (the HTTP middleware, ``api/metrics_middleware.py``),
  tasks as the runner finishes them (``tasks/runner.py``), agent reports (``compute/agentcalls.py``,
  ``agent/control.py``), backups (``backup/tasks.py``);
- families computed at scrape time (:class:`_ScrapeTimeCollector`): task queue depth and heartbeat
  ages from the database, placement decisions from the placement view's tally, the database pools,
  controller leadership, the build.

Label values are bounded, so a client cannot grow the series set: routes are templates
(``/v1/vms/{vm_id}``, never a raw path; ``unmatched`` for a path no route takes), methods outside the
HTTP set are ``other``, task kinds are handler kinds, hosts are the cluster's hosts, backup modes
and target types are the catalogue's few.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import QueuePool

from novacron import __version__, eventbus
from novacron.compute.placement import view as placement_view
from novacron.db.models import Host, Task

if TYPE_CHECKING:
    from prometheus_client import Metric

    from novacron.context import Context

log = logging.getLogger(__name__)
# a ``*_created`` gauge beside every counter and histogram doubles the series for nothing in the
# classic format (its readers have no use for it); the switch is prometheus_client's, per process
disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream

#: the classic text format (``text/plain; version=0.0.4``), which every Prometheus parses and
#: ``promtool check metrics`` accepts (it refuses prometheus_client's OpenMetrics output)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
#: the route label of a request no route matched (a 404), so scanners cannot add series
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BACKUP_MODES = frozenset({"full", "incremental"})
QUEUED_STATES = ("pending", "running")

API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TASK_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
BACKUP_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)


class PlatformMetrics:
    """The platform's instruments on one registry, and their exposition in the classic text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._requests = Counter(
            "novacron_api_requests",
            "API requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self._latency = Histogram(
            "novacron_api_request_duration_seconds",
            "Time from a request's arrival to its response's last byte, by method and route template.",
            ["method", "route"],
            buckets=API_BUCKETS,
            registry=r,
        )
        self._tasks = Counter(
            "novacron_tasks", "Tasks finished, by kind and outcome.", ["kind", "outcome"], registry=r
        )
        self._task_duration = Histogram(
            "novacron_task_duration_seconds",
            "Time from a task's creation to its end (queueing included), by kind and outcome.",
            ["kind", "outcome"],
            buckets=TASK_BUCKETS,
            registry=r,
        )
        self._heartbeats = Counter(
            "novacron_agent_heartbeats",
            "Agent reports accepted from each host.",
            ["host_id", "host"],
            registry=r,
        )
        self._backup_read = Counter(
            "novacron_backup_read_bytes",
            "Bytes of VM disks read by finished backups.",
            ["mode", "target_type"],
            registry=r,
        )
        self._backup_uploaded = Counter(
            "novacron_backup_uploaded_bytes",
            "Bytes finished backups wrote to their targets (after deduplication and compression).",
            ["mode", "target_type"],
            registry=r,
        )
        self._backup_duration = Histogram(
            "novacron_backup_duration_seconds",
            "Time a backup took on its host, by mode and target type.",
            ["mode", "target_type"],
            buckets=BACKUP_BUCKETS,
            registry=r,
        )
        self._security = Counter(
            "novacron_security_detections",
            "Threats detected from the API's traffic (identity/threats.py), by kind.",
            ["kind"],
            registry=r,
        )
        self._compliance_drift = Counter(
            "novacron_compliance_drift",
            "Compliance checks that went from pass to fail (compliance/service.py), by check.",
            ["check"],
            registry=r,
        )
        ProcessCollector(registry=r)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One API request answered; ``route`` is the template the request matched (or UNMATCHED)."""
        method = method if method in METHODS else "other"
        self._requests.labels(method, route, str(status)).inc()
        self._latency.labels(method, route).observe(seconds)

    def security_detection(self, kind: str) -> None:
        """Threat detection raised a ``security.<kind>`` event (and blocked its source)."""
        self._security.labels(kind).inc()

    def compliance_drift(self, check: str) -> None:
        """A compliance check failed after passing in the run before (a ``compliance.drift`` event)."""
        self._compliance_drift.labels(check).inc()

    def task_finished(self, kind: str, outcome: str, seconds: float) -> None:
        """A task ended ``succeeded``, ``failed`` or ``cancelled`` after ``seconds`` since its creation."""
        self._tasks.labels(kind, outcome).inc()
        self._task_duration.labels(kind, outcome).observe(max(0.0, seconds))

    def heartbeat(self, host_id: str, host: str) -> None:
        """An agent's report was accepted."""
        self._heartbeats.labels(host_id, host).inc()

    def backup_finished(
        self, mode: str, target_type: str, *, bytes_read: int, bytes_uploaded: int, seconds: float
    ) -> None:
        """A backup is in the catalogue: what it read, what it stored, how long its host took."""
        mode = mode if mode in BACKUP_MODES else "other"
        self._backup_read.labels(mode, target_type).inc(max(0, bytes_read))
        self._backup_uploaded.labels(mode, target_type).inc(max(0, bytes_uploaded))
        self._backup_duration.labels(mode, target_type).observe(max(0.0, seconds))

    def exposition(self, ctx: Context) -> bytes:
        """Every series in the classic Prometheus text format, scrape-time families read now."""
        return generate_latest(_Scrape(self.registry, _ScrapeTimeCollector(ctx)))


class _Scrape(Collector):
    """The registry's instruments followed by the families computed for this scrape."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterable[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


class _ScrapeTimeCollector(Collector):
    """Families read at scrape time from the database and from this process's state."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterable[Metric]:
        yield from self._build()
        yield from self._leaders()
        yield from self._pools()
        yield from self._placement()
        yield from self._metrics_writer()
        yield from self._anomaly_feed()
        yield from self._event_bus()
        try:
            yield from self._from_database()
        except SQLAlchemyError:
            # the rest of the scrape still says what this process knows; the gap shows the outage
            log.warning("platform metrics: the database could not be read", exc_info=True)

    def _build(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("novacron_build_info", "The running NovaCron version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info

    def _leaders(self) -> Iterator[Metric]:
        leader = GaugeMetricFamily(
            "novacron_controller_leader",
            "1 when this replica leads the controller, else 0.",
            labels=["controller"],
        )
        for name, leadership in sorted(self.ctx.leaders.items()):
            leader.add_metric([name], 1 if leadership.is_leader else 0)
        yield leader

    def _event_bus(self) -> Iterator[Metric]:
        bus = eventbus.BUS
        up = GaugeMetricFamily(
            "novacron_event_bus_up",
            "1 while the event bus reaches the other replicas (0: followers fall back to polling).",
            labels=["mode"],
        )
        up.add_metric([bus.mode], 0 if bus.degraded else 1)
        yield up
        yield CounterMetricFamily(
            "novacron_event_bus_fallbacks",
            "Times the event bus lost the other replicas.",
            value=bus.fallbacks,
        )

    def _pools(self) -> Iterator[Metric]:
        db = self.ctx.db
        engines = {"primary": db.engine}
        if db.read_engine is not db.engine:
            engines["read"] = db.read_engine
        families = (
            ("novacron_db_pool_size", "Connections the pool keeps open (overflow aside).", QueuePool.size),
            ("novacron_db_pool_checked_out", "Connections in use by a session now.", QueuePool.checkedout),
            ("novacron_db_pool_overflow", "Connections past the pool size (<0: room).", QueuePool.overflow),
        )  # fmt: skip
        for name, doc, read in families:
            family = GaugeMetricFamily(name, doc, labels=["pool"])
            for label, engine in engines.items():
                if isinstance(engine.pool, QueuePool):
                    family.add_metric([label], read(engine.pool))
            yield family

    def _metrics_writer(self) -> Iterator[Metric]:
        if self.ctx.monitoring is None:
            return
        writer = self.ctx.monitoring.writer
        samples = CounterMetricFamily(
            "novacron_metrics_writer_samples",
            "Samples of agents' reports the writer handled, by outcome: written to the metrics store, "
            "dropped (queue full while the store was down or slow), rejected by the store.",
            labels=["outcome"],
        )
        for outcome, count in (
            ("written", writer.written),
            ("dropped", writer.dropped),
            ("rejected", writer.rejected),
        ):
            samples.add_metric([outcome], count)
        yield samples
        yield GaugeMetricFamily(
            "novacron_metrics_writer_pending", "Samples queued for the metrics store.", value=writer.pending
        )
        yield CounterMetricFamily(
            "novacron_metrics_writer_send_failures",
            "Sends that found the metrics store down (each retried).",
            value=writer.failures,
        )

    def _anomaly_feed(self) -> Iterator[Metric]:
        feed = self.ctx.monitoring.anomaly if self.ctx.monitoring is not None else None
        if feed is None:
            return
        yield CounterMetricFamily(
            "novacron_anomaly_scored_samples",
            "VM series samples the anomaly detector scored.",
            value=feed.scored,
        )
        yield CounterMetricFamily(
            "novacron_anomaly_dropped_reports",
            "Host reports the anomaly feed dropped because its queue was full (the detector behind).",
            value=feed.dropped,
        )
        yield CounterMetricFamily(
            "novacron_anomaly_events", "vm.anomaly events the detector raised.", value=feed.events
        )

    def _placement(self) -> Iterator[Metric]:
        tally = placement_view.decisions(self.ctx.db.engine)
        decisions = CounterMetricFamily(
            "novacron_placement_decisions",
            "Placement decisions made by this process, by outcome.",
            labels=["outcome"],
        )
        for outcome in placement_view.DECISION_OUTCOMES:
            decisions.add_metric([outcome], tally.get(outcome, 0))
        yield decisions
        conflicts = CounterMetricFamily(
            "novacron_placement_claim_conflicts",
            "Claims that lost a race for a host's room (the decision moved on to the next host).",
        )
        conflicts.add_metric([], tally.get(placement_view.CLAIM_CONFLICT, 0))
        yield conflicts

    def _from_database(self) -> Iterator[Metric]:
        with self.ctx.db.read_session() as s:
            queued = s.execute(
                select(Task.kind, Task.state, func.count())
                .where(Task.state.in_(QUEUED_STATES))
                .group_by(Task.kind, Task.state)
            ).all()
            hosts = s.execute(select(Host.id, Host.name, Host.last_heartbeat)).all()
        kinds = set(self.ctx.tasks.handlers) if self.ctx.tasks is not None else set()
        counts = {(kind, state): n for kind, state, n in queued}
        depth = GaugeMetricFamily(
            "novacron_task_queue_depth", "Tasks pending or running now, by kind.", labels=["kind", "state"]
        )
        for kind in sorted(kinds | {kind for kind, _ in counts}):
            for state in QUEUED_STATES:
                depth.add_metric([kind, state], counts.get((kind, state), 0))
        yield depth
        age = GaugeMetricFamily(
            "novacron_agent_heartbeat_age_seconds",
            "Seconds since each host's agent last reported.",
            labels=["host_id", "host"],
        )
        now = time.time()
        for host_id, name, last in hosts:
            if last is not None:
                age.add_metric([host_id, name], max(0.0, now - last.timestamp()))
        yield age

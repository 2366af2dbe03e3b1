"""What a node runs for monitoring: its engines, supervised, and the pipeline into its store.

``MonitoringStack.for_node`` reads the settings: the embedded VictoriaMetrics (default) or
Prometheus on a loopback port with data under ``<state_dir>/metrics/<engine>``, or an external
store at two URLs; and the anomaly feed that scores VM series beside the writer
(``anomaly_feed.py``) while ``anomaly_detection`` is on (a live setting: reports are not handed to
it while it is off). Other engines (vmalert, Alertmanager) join with ``add``
before ``start``; they start after the store, in the order added, and stop before it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import select

from novacron.config import Settings
from novacron.db.base import Database
from novacron.db.models import Host
from novacron.errors import InvalidInput
from novacron.monitoring.anomaly_feed import AnomalyFeed
from novacron.monitoring.process import SupervisedProcess, free_loopback_port
from novacron.monitoring.series import SeriesMap, Tenancy
from novacron.monitoring.store import EngineConfig, MetricsStore, embedded_engine, embedded_store
from novacron.monitoring.writer import SeriesWriter

log = logging.getLogger(__name__)


class MonitoringStack:
    """The metrics store, the engine processes the node supervises, and the writer feeding the store
    from agents' reports (``record``); ``anomaly``, when given, scores the reports' VM series."""

    def __init__(
        self,
        store: MetricsStore,
        series: SeriesMap,
        processes: list[SupervisedProcess],
        anomaly: AnomalyFeed | None = None,
    ) -> None:
        self.store = store
        self.series = series
        self.processes = processes
        self.writer = SeriesWriter(store)
        self.anomaly = anomaly
        #: whether reports are scored now (anomaly detection may be switched while running)
        self.scoring: Callable[[], bool] = lambda: True

    def with_anomaly_feed(self, settings: Settings, db: Database | None) -> MonitoringStack:
        """Score the VM series of the reports with the settings' detector; events go to ``db``."""
        self.anomaly = AnomalyFeed(
            self.writer.submit,
            db,
            settings.anomaly_event_threshold,
            settings.anomaly_learning_s,
            settings.anomaly_event_interval_s,
            settings.anomaly_step_s,
        )
        return self

    @classmethod
    def for_node(
        cls, settings: Settings, db: Database, scoring: Callable[[], bool] | None = None
    ) -> MonitoringStack:
        """The stack the settings name (not started). ``scoring`` answers, at each report, whether
        anomaly detection is on (the live configuration's switch); without it, the settings say."""
        stack = cls._store_for(settings, db).with_anomaly_feed(settings, db)
        stack.scoring = scoring or (lambda: settings.anomaly_detection)
        return stack

    @classmethod
    def _store_for(cls, settings: Settings, db: Database) -> MonitoringStack:
        series = SeriesMap(lambda host_id: _host_name(db, host_id))
        if settings.metrics_engine == "external":
            if not settings.metrics_url or not settings.metrics_write_url:
                raise InvalidInput(
                    "NOVACRON_METRICS_URL",
                    "an external metrics store needs NOVACRON_METRICS_URL (its Prometheus API) and "
                    "NOVACRON_METRICS_WRITE_URL (its remote-write URL)",
                )
            store = MetricsStore("external", settings.metrics_url, settings.metrics_write_url)
            return cls(store, series, [])
        port = free_loopback_port()
        data_dir = settings.state_dir / "metrics" / settings.metrics_engine
        config = EngineConfig(settings.metrics_engine, data_dir, settings.metrics_retention, port)
        engine = embedded_engine(config)
        return cls(embedded_store(settings.metrics_engine, port), series, [engine])

    def add(self, process: SupervisedProcess) -> None:
        """Supervise another engine with the store (started after it, stopped before it)."""
        self.processes.append(process)

    def start(self) -> None:
        """Start the engines (each answering before the next starts), then the writer."""
        for process in self.processes:
            process.log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            process.start()
        self.writer.start()
        if self.anomaly is not None:
            self.anomaly.start()
        log.info("metrics store: %s at %s", self.store.engine, self.store.query_url)

    def stop(self) -> None:
        """Score and send what is queued (briefly), stop the writer, then the engines, last started
        first."""
        if self.anomaly is not None:
            self.anomaly.stop()
        self.writer.stop()
        for process in reversed(self.processes):
            process.stop()

    def record(
        self,
        host_id: str,
        vm_samples: Mapping[str, Mapping[str, Any]],
        tenancy: Mapping[str, Tenancy],
        host_sample: Mapping[str, Any] | None,
    ) -> None:
        """Queue a host's report for the store: its VMs' series (labelled with the tenancy the
        database gave) and its own host series, and for the anomaly feed. Never waits on either."""
        self.writer.submit(self.series.vm_block(host_id, vm_samples, tenancy))
        if host_sample:
            self.writer.submit(self.series.host_samples(host_id, host_sample))
        if self.anomaly is not None and vm_samples and self.scoring():
            self.anomaly.submit(host_id, vm_samples, tenancy)

    def record_lb(
        self,
        host_id: str,
        ms: int,
        lb_samples: Mapping[str, Sequence[Any]],
        tenancy: Mapping[str, Tenancy],
    ) -> None:
        """Queue a host's load-balancer statistics for the store, labelled with their owners."""
        self.writer.submit(self.series.lb_samples(host_id, ms, lb_samples, tenancy))

    def forget_vm(self, vm_id: str) -> None:
        """Drop what the pipeline keeps of a deleted VM (its detectors' state)."""
        if self.anomaly is not None:
            self.anomaly.forget_vm(vm_id)


def _host_name(db: Database, host_id: str) -> str:
    with db.read_session() as s:
        return s.scalar(select(Host.name).where(Host.id == host_id)) or ""

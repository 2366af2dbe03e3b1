"""Everything one NovaCron process shares, built once at start-up and passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from novacron.compute.reports import LiveSamples
from novacron.config import Settings
from novacron.db.base import Database
from novacron.monitoring.livecharts import LiveCharts
from novacron.monitoring.platform import PlatformMetrics

if TYPE_CHECKING:
    from novacron.agent.runtime import AgentRuntime
    from novacron.compute.consoles import ConsoleRelay
    from novacron.configsvc.live import LiveConfig
    from novacron.identity.pki import ServerTLS
    from novacron.identity.tokens import TokenService
    from novacron.lbaas.acme_service import ChallengeResponders
    from novacron.monitoring.alerting.engines import AlertingStack
    from novacron.monitoring.stack import MonitoringStack
    from novacron.monitoring.store import MetricsStore
    from novacron.monitoring.tracestore import TraceStore
    from novacron.tasks.leader import Leadership
    from novacron.tasks.runner import TaskRunner


@dataclass(frozen=True)
class AgentListener:
    """The HTTPS listener node agents join and dial back to (``agent_port``), with the platform CA."""

    tls: ServerTLS
    #: what an operator checks the CA against when a host joins (``--ca-fingerprint``)
    ca_fingerprint: str
    #: where agents join (``novacron agent --server``)
    url: str
    #: where agents dial this replica back for a console relay (a wildcard listener named by host)
    relay_url: str


@dataclass
class Context:
    """The process's shared parts: settings, database, token service, and what the server adds."""

    settings: Settings
    db: Database
    tokens: TokenService
    #: the platform's own metrics, served at ``GET /metrics``
    platform_metrics: PlatformMetrics = field(default_factory=PlatformMetrics)
    #: each VM's samples of the last hour as reported (live readout; history is in the metrics store)
    live_samples: LiveSamples = field(default_factory=LiveSamples)
    #: the node's metrics store, its engines and the writer into it (None: no monitoring here,
    #: e.g. an in-process test app)
    monitoring: MonitoringStack | None = None
    tasks: TaskRunner | None = None
    #: the embedded node agent of an all-in-one node
    agent: AgentRuntime | None = None
    #: None when this server has no agent listener configured
    agent_listener: AgentListener | None = None
    #: console sessions relayed through this process, by session id (they live in this process only)
    console_relays: dict[str, ConsoleRelay] = field(default_factory=dict)
    #: controller name -> its leadership in this process (read by ``GET /healthz``)
    leaders: dict[str, Leadership] = field(default_factory=dict)
    #: the local store of recent traces (None: this process does not trace, e.g. a test's app)
    trace_store: TraceStore | None = None
    #: vmalert + Alertmanager beside this node (``monitoring.alerting.engines.start_alerting``)
    alerting: AlertingStack | None = None
    #: the live charts followed in this process: one drawing loop per subject, however many viewers
    live_charts: LiveCharts = field(default_factory=LiveCharts)
    #: where ACME HTTP-01 challenges of a tenant's load balancer are answered (None: ACME
    #: certificates cannot be issued here; see ``lbaas/acme_service.py``)
    acme_responders: ChallengeResponders | None = None
    #: the live configuration applied in this process: it swaps ``settings`` for the start-up
    #: settings overlaid by the newest version (``configsvc/live.py``); None: start-up values only
    live_config: LiveConfig | None = None

    @property
    def live_base(self) -> Settings:
        """The settings this process started with (what the live configuration overlays)."""
        return self.live_config.base if self.live_config is not None else self.settings

    @property
    def metrics_store(self) -> MetricsStore | None:
        """The metrics store (``query_url``, ``engine``, ``query``, ``query_range``), or None."""
        return self.monitoring.store if self.monitoring is not None else None

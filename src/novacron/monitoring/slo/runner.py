"""The probe runner: a leader-elected controller that runs due probes from inside tenant networks.

Where a probe runs from (its vantage point) is a namespace the network datapath already has on the
tenant network: the network's DHCP namespace on the host serving its DHCP (it holds an address on
each DHCP subnet, on the network's bridge), else the namespace of a router with a leg on it. Tenant
address spaces may overlap, so a check is never sent from the host's own namespace. A vantage point
on another host's kernel is not reachable from here: such a probe's result says so and no sample is
written (no data is not a failure of the tenant's service).

Each result becomes two samples, ``novacron_probe_success`` (1/0) and
``novacron_probe_duration_seconds``, labelled ``probe_id``, ``tenant_id``, ``project_id``, and the
probe's ``probe_results`` row.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.db.base import utcnow
from novacron.db.models import Host, Port, Probe, ProbeResult
from novacron.errors import Unavailable
from novacron.monitoring.slo.checks import Check, Outcome, run_in_netns
from novacron.monitoring.slo.promql import DURATION, SUCCESS
from novacron.monitoring.slo.store import Point, series_store
from novacron.network.linux import names
from novacron.network.specs import Layout
from novacron.tasks.controller import ControllerLoop, Job

if TYPE_CHECKING:
    from novacron.context import Context

log = logging.getLogger(__name__)

PROBE_CONTROLLER = "novacron.probes"
_NETNS_DIR = "/run/netns"
#: checks running at once (each is a short-lived thread in its vantage namespace)
_PARALLEL = 16


@dataclass(frozen=True)
class Vantage:
    """The namespace a network's probes run from, and the host that has it."""

    host: str
    netns: str

    def local(self) -> bool:
        """Whether the namespace is on this kernel."""
        return os.path.exists(os.path.join(_NETNS_DIR, self.netns))


def vantage_points(session: Session) -> dict[str, Vantage]:
    """network id -> where its probes run from (networks with neither DHCP nor a router: absent)."""
    layout = Layout(session)
    host_names: dict[str, str] = {h: name for h, name in session.execute(select(Host.id, Host.name))}
    out: dict[str, Vantage] = {}
    for router_id, networks in layout.router_networks.items():
        host = host_names.get(layout.router_host.get(router_id, ""))
        if host is not None:
            for network_id in networks:
                out[network_id] = Vantage(host, names.router_ns(host, router_id))
    for network_id, host_id in layout.dhcp_host.items():  # DHCP's namespace first: no routing in between
        if host_id in host_names:
            out[network_id] = Vantage(host_names[host_id], names.dhcp_ns(host_names[host_id], network_id))
    return out


def check_of(probe: Probe) -> Check:
    """The check a probe runs."""
    return Check(
        kind=probe.kind,
        address=probe.address,
        port=probe.target_port,
        path=probe.path,
        expected_status=probe.expected_status,
        body_contains=probe.body_contains,
        timeout_s=probe.timeout_s,
    )


@dataclass(frozen=True)
class _Due:
    probe_id: str
    tenant_id: str
    project_id: str
    check: Check
    vantage: Vantage | None


class ProbeRunner:
    """Every second: run the probes whose interval has passed, store their results."""

    def __init__(self, ctx: Context, tick_s: float = 1.0) -> None:
        self.ctx = ctx
        self.loop = ControllerLoop("probe runner", [Job("probes", self.run_due)], tick_s=tick_s)
        self._pool = ThreadPoolExecutor(_PARALLEL, thread_name_prefix="probe")

    def run_due(self) -> int:
        """Run every due probe once; the number run."""
        with self.ctx.db.read_session() as s:
            due = self._due(s)
        if not due:
            return 0
        outcomes = list(self._pool.map(self._run, due))
        points: list[Point] = []
        for item, (outcome, measured) in zip(due, outcomes, strict=True):
            if measured:
                labels = {
                    "probe_id": item.probe_id,
                    "tenant_id": item.tenant_id,
                    "project_id": item.project_id,
                }
                ms = int(time.time() * 1000)
                points.append((SUCCESS, labels, ms, 1.0 if outcome.success else 0.0))
                points.append((DURATION, labels, ms, outcome.duration_s))
        store = series_store(self.ctx)
        if points and store is not None:
            try:
                store.write_points(points)
            except Unavailable as exc:
                log.warning("probe results not stored: %s", exc)
        with self.ctx.db.session() as s:
            for item, (outcome, _) in zip(due, outcomes, strict=True):
                self._save(s, item, outcome)
        return len(due)

    def _due(self, s: Session) -> list[_Due]:
        now = utcnow()
        last = {p: at for p, at in s.execute(select(ProbeResult.probe_id, ProbeResult.checked_at))}
        probes = [
            p
            for p in s.scalars(select(Probe).where(Probe.enabled.is_(True)))
            if p.id not in last or (now - last[p.id]).total_seconds() >= p.interval_s - 0.05
        ]
        if not probes:
            return []
        points = vantage_points(s)
        ports = select(Port.id, Port.network_id).where(Port.id.in_([p.port_id for p in probes]))
        network_of: dict[str, str] = {port: network for port, network in s.execute(ports)}
        return [
            _Due(p.id, p.tenant_id, p.project_id, check_of(p), points.get(network_of.get(p.port_id, "")))
            for p in probes
        ]

    @staticmethod
    def _run(item: _Due) -> tuple[Outcome, bool]:
        """The outcome, and whether it measures the tenant's service (else: no sample)."""
        if item.vantage is None:
            return Outcome(False, 0.0, "the network has no DHCP or router namespace to probe from yet"), False
        if not item.vantage.local():
            reason = f"the vantage point {item.vantage.netns} on host {item.vantage.host} is not on this node"
            return Outcome(False, 0.0, reason), False
        return run_in_netns(item.vantage.netns, item.check), True

    @staticmethod
    def _save(s: Session, item: _Due, outcome: Outcome) -> None:
        row = s.get(ProbeResult, item.probe_id)
        if row is None:
            if s.get(Probe, item.probe_id) is None:  # deleted while it ran
                return
            row = ProbeResult(probe_id=item.probe_id)
            s.add(row)
        row.checked_at = utcnow()
        row.success = outcome.success
        row.duration_s = outcome.duration_s
        row.error = outcome.error
        row.vantage = f"{item.vantage.host}:{item.vantage.netns}" if item.vantage else ""

"""The probe runner: a leader-elected controller that has due probes run from inside tenant networks.

Where a probe runs from (its vantage point) is a namespace the network datapath already has on the
tenant network: the network's DHCP namespace on the host serving its DHCP (it holds an address on
each DHCP subnet, on the network's bridge), else the namespace of a router with a leg on it. Tenant
address spaces may overlap, so a check is never sent from the host's own namespace.

The checks run on the host that has the namespace, by its agent: every round the runner sends each
such host one ``probe_run`` operation (``agent/protocol.py``) with its due checks, through the host
operations queue like any other request (the embedded agent of an all-in-one node included), and
waits for the answers. A probe that could not run (no vantage point yet, the agent did not answer,
the namespace is missing) gets a result saying why and writes no sample: no data is not a failure of
the tenant's service.

Each measured result becomes two samples, ``novacron_probe_success`` (1/0) and
``novacron_probe_duration_seconds``, labelled ``probe_id``, ``tenant_id``, ``project_id``, and the
probe's ``probe_results`` row.
"""

from __future__ import annotations

import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.agent.protocol import ProbeCheck, ProbeRun
from novacron.compute import hostops
from novacron.db.base import utcnow
from novacron.db.models import Host, Port, Probe, ProbeResult
from novacron.monitoring.remote_write import Sample, Series
from novacron.monitoring.slo.checks import Check, Outcome
from novacron.monitoring.slo.promql import DURATION, SUCCESS
from novacron.network.linux import names
from novacron.network.specs import Layout
from novacron.tasks.controller import ControllerLoop, Job
from novacron.tasks.runner import StepFailed

if TYPE_CHECKING:
    from novacron.context import Context


PROBE_CONTROLLER = "novacron.probes"
#: hosts asked at once
_PARALLEL_HOSTS = 8
#: beyond the longest check's timeout: how long an agent may take to claim and answer
_ANSWER_SLACK_S = 10.0


@dataclass(frozen=True)
class Vantage:
    """The namespace a network's probes run from, and the host (id and name) that has it."""

    host_id: str
    host: str
    netns: str


def vantage_points(session: Session) -> dict[str, Vantage]:
    """network id -> where its probes run from (networks with neither DHCP nor a router: absent)."""
    layout = Layout(session)
    host_names: dict[str, str] = {h: name for h, name in session.execute(select(Host.id, Host.name))}
    out: dict[str, Vantage] = {}
    for router_id, networks in layout.router_networks.items():
        host_id = layout.router_host.get(router_id, "")
        if host_id in host_names:
            for network_id in networks:
                out[network_id] = Vantage(
                    host_id, host_names[host_id], names.router_ns(host_names[host_id], router_id)
                )
    for network_id, host_id in layout.dhcp_host.items():  # DHCP's namespace first: no routing in between
        if host_id in host_names:
            out[network_id] = Vantage(
                host_id, host_names[host_id], names.dhcp_ns(host_names[host_id], network_id)
            )
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
        tls_verify=probe.tls_verify,
        tls_server_name=probe.tls_server_name,
        tls_ca_pem=probe.tls_ca_pem,
    )


@dataclass(frozen=True)
class _Due:
    probe_id: str
    tenant_id: str
    project_id: str
    check: Check
    vantage: Vantage | None


class ProbeRunner:
    """Every second: have the probes whose interval has passed run, and store their results."""

    def __init__(self, ctx: Context, tick_s: float = 1.0) -> None:
        self.ctx = ctx
        self.loop = ControllerLoop("probe runner", [Job("probes", self.run_due)], tick_s=tick_s)
        self._pool = ThreadPoolExecutor(_PARALLEL_HOSTS, thread_name_prefix="probe")

    def run_due(self) -> int:
        """Run every due probe once; the number run."""
        with self.ctx.db.read_session() as s:
            due = self._due(s)
        if not due:
            return 0
        by_host: dict[str, list[_Due]] = defaultdict(list)
        outcomes: dict[str, Outcome] = {}
        for item in due:
            if item.vantage is None:
                reason = "the network has no DHCP or router namespace to probe from yet"
                outcomes[item.probe_id] = Outcome(False, 0.0, reason, measured=False)
            else:
                by_host[item.vantage.host_id].append(item)
        for answers in self._pool.map(self._ask, by_host.values()):
            outcomes.update(answers)
        self._store(due, outcomes)
        with self.ctx.db.session() as s:
            for item in due:
                self._save(s, item, outcomes[item.probe_id])
        return len(due)

    def _ask(self, items: list[_Due]) -> dict[str, Outcome]:
        """Have one host's agent run ``items`` (all of that host) and answer their outcomes."""
        vantage = items[0].vantage
        assert vantage is not None
        request = ProbeRun(tuple(ProbeCheck(i.vantage.netns if i.vantage else "", i.check) for i in items))
        timeout_s = max(i.check.timeout_s for i in items) + _ANSWER_SLACK_S
        try:
            answer = hostops.call_blocking(
                self.ctx, vantage.host_id, request, vantage.host_id[:40], timeout_s
            )
            results = [Outcome(**o) for o in answer["outcomes"]]
        except (StepFailed, KeyError, TypeError) as exc:
            reason = f"host {vantage.host} did not run the checks: {exc}"
            return {i.probe_id: Outcome(False, 0.0, reason[:500], measured=False) for i in items}
        return {i.probe_id: o for i, o in zip(items, results, strict=True)}

    def _store(self, due: list[_Due], outcomes: dict[str, Outcome]) -> None:
        samples: list[Sample] = []
        ms = int(time.time() * 1000)
        for item in due:
            outcome = outcomes[item.probe_id]
            if outcome.measured:
                labels = {
                    "probe_id": item.probe_id,
                    "tenant_id": item.tenant_id,
                    "project_id": item.project_id,
                }
                samples.append((Series(SUCCESS, labels), ms, 1.0 if outcome.success else 0.0))
                samples.append((Series(DURATION, labels), ms, outcome.duration_s))
        monitoring = self.ctx.monitoring
        if monitoring is not None:
            monitoring.writer.submit(samples)

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

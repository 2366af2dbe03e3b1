"""Probes and SLOs as tenant resources: validation, writes, and an SLO's budget read from the store."""

from __future__ import annotations

import builtins
import ipaddress
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import ClassVar

from sqlalchemy import select

from novacron import events
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import SLO, VM, AlertRule, IPAllocation, Port, Probe, ProbeResult, Tenant
from novacron.db.resolve import Named, resolve, scoped
from novacron.errors import Conflict, DomainError, InvalidInput, NameTaken, NotFound, Unavailable, on_field
from novacron.monitoring.alerting.rules import RuleSpec
from novacron.monitoring.alerting.service import AlertRuleService
from novacron.monitoring.slo.checks import Check, tls_context
from novacron.monitoring.slo.promql import BurnRule, Indicator, budget, burn_rate, burn_rate_rules
from novacron.monitoring.slo.report import SLORow, measure, month_bounds, scalar_of
from novacron.monitoring.store import MetricsStore
from novacron.service import Service


@dataclass(frozen=True)
class NewProbe:
    """A probe to create (shapes checked by the API): ``kind`` at a VM's port, every ``interval_s``."""

    name: str
    kind: str
    vm_id: str
    port_id: str | None = None
    target_port: int | None = None
    path: str = "/"
    expected_status: int = 200
    body_contains: str | None = None
    interval_s: int = 10
    timeout_s: float = 2.0
    #: https only; None: verify
    tls_verify: bool | None = None
    tls_server_name: str | None = None
    tls_ca_pem: str | None = None


@dataclass(frozen=True)
class ProbeView:
    """A probe as its caller sees it: with its last result, and where that ran from (host and
    namespace: the platform's inside, shown to administrators only, as traces do)."""

    probe: Probe
    last: ProbeResult | None
    show_vantage: bool


class ProbeService(Service):
    """Create, read and delete probes; a probe targets only a port of one of the caller's VMs."""

    def list(self, params: ListParams, *, name: str | None = None) -> tuple[list[ProbeView], str | None]:
        """One page of the probes the caller sees, with their last results."""
        stmt = where_equal(scoped(select(Probe), Probe, self.principal), (Probe.name, name))
        rows, nxt = paginate(self.session, stmt, Probe, params)
        last = self._last_results([p.id for p in rows])
        return [self._view(p, last.get(p.id)) for p in rows], nxt

    def get(self, ref: str) -> Probe:
        """The probe of this id or name, as the caller sees it."""
        return resolve(self.session, self.principal, Probe, ref)

    def view(self, ref: str) -> ProbeView:
        """The probe of this id or name with its last result."""
        probe = self.get(ref)
        return self._view(probe, self._last_results([probe.id]).get(probe.id))

    def _view(self, probe: Probe, last: ProbeResult | None) -> ProbeView:
        return ProbeView(probe, last, show_vantage=self.principal.is_global)

    def _last_results(self, probe_ids: Iterable[str]) -> dict[str, ProbeResult]:
        rows = self.session.scalars(select(ProbeResult).where(ProbeResult.probe_id.in_(probe_ids)))
        return {r.probe_id: r for r in rows}

    def create(self, spec: NewProbe) -> ProbeView:
        """A new probe of the VM's port (its first when none is named) at the port's first address."""
        _check_shape(spec)
        vm = resolve(self.session, self.principal, VM, spec.vm_id, named=Named("vm_id", missing=NotFound))
        port = self._port_of(vm, spec.port_id)
        if self.session.scalar(
            select(Probe.id).where(Probe.project_id == vm.project_id, Probe.name == spec.name)
        ):
            raise NameTaken("probe", spec.name, "name")
        probe = Probe(
            id=new_id("prb"),
            project_id=vm.project_id,
            tenant_id=vm.tenant_id,
            name=spec.name,
            kind=spec.kind,
            port_id=port.id,
            vm_id=vm.id,
            address=self._address_of(port),
            target_port=spec.target_port,
            path=spec.path,
            expected_status=spec.expected_status,
            body_contains=spec.body_contains,
            tls_verify=spec.kind == "https" and spec.tls_verify is not False,
            tls_server_name=spec.tls_server_name,
            tls_ca_pem=spec.tls_ca_pem,
            interval_s=spec.interval_s,
            timeout_s=spec.timeout_s,
            enabled=True,
        )
        self.session.add(probe)
        self.session.flush()
        events.publish(
            self.session, "probe.created", "probe", probe.id, tenant_id=probe.tenant_id, name=probe.name
        )
        return self._view(probe, None)

    def delete(self, ref: str) -> None:
        """Delete a probe no SLO measures."""
        probe = self.get(ref)
        slos = list(self.session.scalars(select(SLO.name).where(SLO.probe_id == probe.id).limit(10)))
        if slos:
            raise Conflict(f"Probe '{probe.name}' is measured by SLOs {', '.join(slos)}; delete them first.")
        events.publish(
            self.session, "probe.deleted", "probe", probe.id, tenant_id=probe.tenant_id, name=probe.name
        )
        self.session.delete(probe)

    def _port_of(self, vm: VM, port_ref: str | None) -> Port:
        ports = list(self.session.scalars(select(Port).where(Port.vm_id == vm.id).order_by(Port.position)))
        if port_ref is not None:
            ports = [p for p in ports if port_ref in (p.id, p.name)]
            if not ports:
                raise on_field(NotFound, "port_id", f"VM '{vm.name}' has no port '{port_ref}'")
        if not ports:
            raise InvalidInput("vm_id", "the VM has no port on a tenant network to probe")
        return ports[0]

    def _address_of(self, port: Port) -> str:
        ips = list(self.session.scalars(select(IPAllocation.ip).where(IPAllocation.port_id == port.id)))
        if not ips:
            raise InvalidInput("port_id", "the port has no address")
        return sorted(ips, key=lambda ip: ipaddress.ip_address(ip).version)[0]


def _check_shape(spec: NewProbe) -> None:
    if spec.kind == "icmp" and spec.target_port is not None:
        raise InvalidInput("target_port", "an icmp probe has no port")
    if spec.kind != "icmp" and spec.target_port is None:
        raise InvalidInput("target_port", f"required for a {spec.kind} probe")
    if spec.timeout_s > spec.interval_s:
        raise InvalidInput("timeout_s", f"at most the interval ({spec.interval_s}s)")
    if spec.kind not in ("http", "https") and (spec.body_contains or spec.path != "/"):
        raise InvalidInput(
            "body_contains" if spec.body_contains else "path", "only for http and https probes"
        )
    _check_tls(spec)


def _check_tls(spec: NewProbe) -> None:
    tls = {
        "tls_verify": spec.tls_verify,
        "tls_server_name": spec.tls_server_name,
        "tls_ca_pem": spec.tls_ca_pem,
    }
    given = [name for name, value in tls.items() if value is not None]
    if spec.kind != "https" and given:
        raise InvalidInput(given[0], "only for https probes")
    if spec.tls_verify is False and (spec.tls_server_name or spec.tls_ca_pem):
        raise InvalidInput(
            "tls_verify", "false ignores the certificate: leave out tls_server_name, tls_ca_pem"
        )
    if spec.tls_ca_pem is not None:
        try:
            tls_context(Check("https", "", tls_ca_pem=spec.tls_ca_pem))
        except (ssl.SSLError, ValueError) as exc:
            reason = f"not PEM CA certificates ({exc}): paste the CA's -----BEGIN CERTIFICATE----- blocks"
            raise InvalidInput("tls_ca_pem", reason) from exc


@dataclass(frozen=True)
class NewSLO:
    """An SLO to create (shapes checked by the API); ``target`` is a fraction (0.999)."""

    name: str
    probe_id: str
    target: float
    indicator: str = "success"
    latency_threshold_s: float | None = None
    window_days: int = 30
    #: make its burn-rate rules in the alerting engine
    alerts: bool = True
    #: receivers (ids or names) its alerts go to
    alert_receivers: tuple[str, ...] = ()


@dataclass(frozen=True)
class SLOStatus:
    """An SLO over its window as of ``at``: the SLI, the budget and how fast it burns now."""

    at: float
    sli: float | None
    error_budget: float
    budget_consumed: float | None
    budget_remaining: float | None
    burn_rate_5m: float | None
    burn_rate_1h: float | None


def indicator_of(slo: SLO, probe: Probe) -> Indicator:
    """The indicator an SLO measures, over its probe's series."""
    return Indicator(slo.tenant_id, probe.id, slo.indicator, slo.latency_threshold_s, probe.interval_s)


@dataclass(frozen=True)
class SLOView:
    """An SLO with its multiwindow, multi-burn-rate alert rules."""

    slo: SLO
    rules: builtins.list[BurnRule]


class SLOService(Service):
    """Create, read and delete SLOs; their status and alert rules from the probe's series."""

    raises: ClassVar[tuple[type[DomainError], ...]] = (Unavailable,)

    def list(
        self, params: ListParams, *, name: str | None = None
    ) -> tuple[builtins.list[SLOView], str | None]:
        """One page of the SLOs the caller sees, with their alert rules."""
        stmt = where_equal(scoped(select(SLO), SLO, self.principal), (SLO.name, name))
        rows, nxt = paginate(self.session, stmt, SLO, params)
        # their probes in one query: each rule set then finds its probe in the session
        self.session.scalars(select(Probe).where(Probe.id.in_({s.probe_id for s in rows}))).all()
        return [self._view(s) for s in rows], nxt

    def get(self, ref: str) -> SLO:
        """The SLO of this id or name, as the caller sees it."""
        return resolve(self.session, self.principal, SLO, ref)

    def view(self, ref: str) -> SLOView:
        """The SLO of this id or name with its alert rules."""
        return self._view(self.get(ref))

    def _view(self, slo: SLO) -> SLOView:
        return SLOView(slo, burn_rate_rules(slo.id, self.indicator(slo), slo.target))

    def create(self, spec: NewSLO) -> SLOView:
        """A new SLO in its probe's project; a latency SLO needs its threshold."""
        probe = resolve(
            self.session, self.principal, Probe, spec.probe_id, named=Named("probe_id", missing=NotFound)
        )
        if (spec.indicator == "latency") != (spec.latency_threshold_s is not None):
            raise InvalidInput("latency_threshold_s", "required for a latency SLO and only for it")
        if self.session.scalar(
            select(SLO.id).where(SLO.project_id == probe.project_id, SLO.name == spec.name)
        ):
            raise NameTaken("SLO", spec.name, "name")
        slo = SLO(
            id=new_id("slo"),
            project_id=probe.project_id,
            tenant_id=probe.tenant_id,
            name=spec.name,
            probe_id=probe.id,
            indicator=spec.indicator,
            latency_threshold_s=spec.latency_threshold_s,
            target=spec.target,
            window_days=spec.window_days,
        )
        self.session.add(slo)
        self.session.flush()
        if spec.alerts and self._ctx is not None and self._ctx.alerting is not None:
            slo.alert_rule_ids = self._make_rules(slo, indicator_of(slo, probe), spec.alert_receivers)
        events.publish(self.session, "slo.created", "slo", slo.id, tenant_id=slo.tenant_id, name=slo.name)
        return self._view(slo)

    def _make_rules(self, slo: SLO, ind: Indicator, receivers: tuple[str, ...]) -> builtins.list[str]:
        """Its burn-rate rules, made through the alerting engine's rule service (checked by vmalert)."""
        rules = AlertRuleService(self.session, self.principal, self._ctx)
        made = []
        for rule in burn_rate_rules(slo.id, ind, slo.target):
            spec = RuleSpec(
                name=rule.name,
                kind="burn_rate",
                expr=rule.expr,
                severity=rule.severity,
                labels={"slo": slo.name, "slo_id": slo.id},
                annotations={"summary": f"SLO {slo.name} burns its error budget: {rule.name}"},
                receivers=list(receivers),
                tenant_id=slo.tenant_id,
            )
            made.append(rules.create(spec).id)
        return made

    def delete(self, ref: str) -> None:
        """Delete an SLO and its alert rules (its probe stays)."""
        slo = self.get(ref)
        rules = AlertRuleService(self.session, self.principal, self._ctx)
        for rule_id in slo.alert_rule_ids or []:
            rule = self.session.get(AlertRule, rule_id)
            if rule is not None:  # its owner may have deleted it already
                rules.delete(rule)
        events.publish(self.session, "slo.deleted", "slo", slo.id, tenant_id=slo.tenant_id, name=slo.name)
        self.session.delete(slo)

    def indicator(self, slo: SLO) -> Indicator:
        """The SLO's indicator."""
        probe = self.session.get(Probe, slo.probe_id)
        assert probe is not None  # the foreign key cascades
        return indicator_of(slo, probe)

    def status(self, ref: str, at: float | None = None) -> SLOStatus:
        """The SLI over the window ending ``at`` (now), the budget spent and left, the burn now."""
        slo = self.get(ref)
        store = self.store()
        when = time.time() if at is None else at
        ind = self.indicator(slo)
        sli = scalar_of(store.query(ind.ratio(f"{slo.window_days}d"), when))
        allowed = budget(slo.target)
        consumed = None if sli is None else (1.0 - sli) / allowed
        return SLOStatus(
            at=when,
            sli=sli,
            error_budget=allowed,
            budget_consumed=consumed,
            budget_remaining=None if consumed is None else 1.0 - consumed,
            burn_rate_5m=scalar_of(store.query(burn_rate(ind, slo.target, "5m"), when)),
            burn_rate_1h=scalar_of(store.query(burn_rate(ind, slo.target, "1h"), when)),
        )

    def report(self, month: str, tenant_ref: str | None = None) -> tuple[str, builtins.list[SLORow]]:
        """The month's report of the caller's tenant (an administrator names one): its tenant's
        name and a row per SLO."""
        start, end = month_bounds(month)
        tenant = self._report_tenant(tenant_ref)
        store = self.store()
        rows = []
        for slo in self.session.scalars(select(SLO).where(SLO.tenant_id == tenant.id).order_by(SLO.name)):
            row = measure(store, self.indicator(slo), slo.target, start, end)
            rows.append(replace(row, slo_id=slo.id, name=slo.name))
        return tenant.name, rows

    def _report_tenant(self, ref: str | None) -> Tenant:
        if ref is None:
            if self.principal.tenant_id is None:
                raise on_field(
                    InvalidInput, "tenant_id", "required for a platform administrator", part="query"
                )
            ref = self.principal.tenant_id
        return resolve(self.session, self.principal, Tenant, ref, named=Named("tenant_id", "query", NotFound))

    def store(self) -> MetricsStore:
        """The metrics store SLOs are read from; ``Unavailable`` on a node without one."""
        store = self.ctx.metrics_store
        if store is None:
            raise Unavailable("This node has no metrics store: SLOs cannot be measured here.")
        return store

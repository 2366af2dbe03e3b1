"""Running the catalogue: a run's results stored with their evidence, drift raised, reports read.

``execute`` runs every check of the catalogue for one tenant or for the platform in the caller's
transaction and stores a ``compliance_runs`` row with one ``compliance_results`` row per check.
When a check that passed in the previous run of the same scope fails now, it publishes a
``compliance.drift`` event (the tenant's, or a platform event for administrators) naming the check,
the controls it backs and the failure, and counts ``novacron_compliance_drift{check}`` for alert
rules. The leader runs the platform and every tenant each ``INTERVAL_S`` (``ComplianceController``,
from ``STARTUP_DELAY_S`` after it starts);
``ComplianceService.run`` runs one scope on demand.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events
from novacron.compliance.catalogue import CHECKS, controls_of
from novacron.compliance.checks import FAIL, NA, PASS, Outcome, Scope
from novacron.db.base import new_id, utcnow
from novacron.db.models import ComplianceResult, ComplianceRun, Tenant
from novacron.db.resolve import resolve
from novacron.errors import Forbidden, NotFound
from novacron.service import Service
from novacron.tasks.controller import ControllerLoop, Job

if TYPE_CHECKING:
    from novacron.context import Context

log = logging.getLogger(__name__)
COMPLIANCE_CONTROLLER = "novacron.compliance"
#: how often the leader runs every scope
INTERVAL_S = 3600.0
STARTUP_DELAY_S = 300.0


def _run_check(scope: Scope, check_id: str) -> Outcome:
    check = next(c for c in CHECKS if c.id == check_id)
    try:
        with scope.session.begin_nested():
            return check.run(scope)
    except Exception as exc:  # noqa: BLE001 - a check that cannot run fails, saying why
        log.exception("compliance check %s failed to run", check_id)
        return Outcome(
            FAIL, f"the check could not run: {exc}", {"error": f"{type(exc).__name__}: {exc}"[:500]}
        )


def execute(session: Session, ctx: Context, tenant_id: str | None, trigger: str) -> ComplianceRun:
    """Run every check for ``tenant_id`` (None: the platform); store the run; raise drift."""
    started = utcnow()
    run = ComplianceRun(
        id=new_id("cmp"), tenant_id=tenant_id, trigger=trigger[:64], started_at=started, finished_at=started
    )
    previous = last_run(session, tenant_id)
    before = {r.check_id: r.status for r in results_of(session, previous)} if previous else {}
    results = []
    for check in CHECKS:
        scope = Scope(session=session, ctx=ctx, tenant_id=tenant_id, now=utcnow())
        out = _run_check(scope, check.id)
        results.append(
            ComplianceResult(
                id=new_id("cmr"),
                run_id=run.id,
                check_id=check.id,
                status=out.status,
                summary=out.summary[:2000],
                evidence=out.evidence,
                checked_at=scope.now,
            )
        )
    run.finished_at = utcnow()
    run.passed = sum(r.status == PASS for r in results)
    run.failed = sum(r.status == FAIL for r in results)
    run.not_applicable = sum(r.status == NA for r in results)
    session.add(run)
    session.flush()
    session.add_all(results)
    for r in results:
        if r.status == FAIL and before.get(r.check_id) == PASS:
            _drift(session, ctx, run, r, previous)
    session.flush()
    return run


def _drift(
    session: Session,
    ctx: Context,
    run: ComplianceRun,
    result: ComplianceResult,
    previous: ComplianceRun | None,
) -> None:
    controls = [f"{c.framework} {c.id}" for c in controls_of(result.check_id)]
    events.publish(
        session,
        "compliance.drift",
        "compliance_check",
        result.check_id,
        tenant_id=run.tenant_id,
        check=result.check_id,
        summary=result.summary,
        controls=controls,
        run_id=run.id,
        previous_run_id=previous.id if previous else None,
        scope="platform" if run.tenant_id is None else "tenant",
    )
    metrics = getattr(ctx, "platform_metrics", None)
    if metrics is not None:
        metrics.compliance_drift(result.check_id)


def last_run(session: Session, tenant_id: str | None) -> ComplianceRun | None:
    scope = ComplianceRun.tenant_id.is_(None) if tenant_id is None else ComplianceRun.tenant_id == tenant_id
    stmt = (
        select(ComplianceRun).where(scope).order_by(ComplianceRun.started_at.desc(), ComplianceRun.id.desc())
    )
    return session.scalars(stmt.limit(1)).first()


def results_of(session: Session, run: ComplianceRun) -> list[ComplianceResult]:
    order = {c.id: i for i, c in enumerate(CHECKS)}
    rows = session.scalars(select(ComplianceResult).where(ComplianceResult.run_id == run.id))
    return sorted(rows, key=lambda r: order.get(r.check_id, len(order)))


class ComplianceService(Service):
    """Run the checks and read their evidence: platform administrators for any scope, a tenant's
    administrators (``compliance:run``) for their own tenant only."""

    raises = (Forbidden,)

    def scope_of(self, tenant: str | None) -> str | None:
        """The tenant id a caller's request means (None: the platform, administrators only)."""
        if tenant is None:
            if self.principal.is_global:
                return None
            return self.principal.tenant_id
        return resolve(self.session, self.principal, Tenant, tenant).id

    def run(self, tenant: str | None) -> tuple[ComplianceRun, list[ComplianceResult]]:
        """Run every check now for the tenant (or the platform) and return the stored run."""
        run = execute(self.session, self.ctx, self.scope_of(tenant), self.principal.username or "api")
        return run, results_of(self.session, run)

    def latest(self, tenant: str | None) -> tuple[ComplianceRun, list[ComplianceResult]]:
        """The last run of the scope, with its results (404 when none was made yet)."""
        scope = self.scope_of(tenant)
        run = last_run(self.session, scope)
        if run is None:
            raise NotFound("compliance run", scope or "platform")
        return run, results_of(self.session, run)

    def history(self, tenant: str | None, limit: int = 50) -> list[ComplianceRun]:
        scope = self.scope_of(tenant)
        cond = ComplianceRun.tenant_id.is_(None) if scope is None else ComplianceRun.tenant_id == scope
        stmt = select(ComplianceRun).where(cond).order_by(ComplianceRun.started_at.desc()).limit(limit)
        return list(self.session.scalars(stmt))


class ComplianceController:
    """Leader only: a run for the platform and one for each tenant when the platform's last run is
    ``interval_s`` old, not before ``STARTUP_DELAY_S`` after this process started (a node starting,
    or a short-lived test server, has other work first)."""

    def __init__(self, ctx: Context, interval_s: float = INTERVAL_S) -> None:
        self.ctx = ctx
        self.interval_s = interval_s
        self._started = time.monotonic()
        self.loop = ControllerLoop("compliance", [Job("checks", self.run_due, every_s=60.0)], tick_s=30.0)

    def run_due(self) -> int | None:
        """``run_all`` if due (see the class); None when not."""
        if time.monotonic() - self._started < STARTUP_DELAY_S:
            return None
        with self.ctx.db.read_session() as s:
            last = last_run(s, None)
            started = last.started_at if last is not None else None
        if started is not None and (utcnow() - started).total_seconds() < self.interval_s:
            return None
        return self.run_all()

    def run_all(self) -> int:
        """One run per scope, each in its own transaction; returns how many checks failed."""
        with self.ctx.db.read_session() as s:
            tenants = list(s.scalars(select(Tenant.id)))
        failed = 0
        for tenant_id in [None, *tenants]:
            with self.ctx.db.session() as s:
                failed += execute(s, self.ctx, tenant_id, "schedule").failed
        return failed

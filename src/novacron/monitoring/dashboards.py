"""Custom dashboards: panels of PromQL queries a user saves for themself.

A dashboard belongs to the user who made it and is seen by no one else (not even an administrator
reads another user's dashboards: they are a view, not shared data). Its panels' queries are checked
on save by running them once through the tenant query service (``monitoring/query.py``), so a
saved query is one the store accepts and that reads only the owner's tenant's series; the browser
runs them the same way, through ``/v1/metrics/query_range``, when it draws the panels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import Dashboard
from novacron.db.resolve import resolve, scoped
from novacron.errors import InvalidInput, NameTaken, Unavailable
from novacron.monitoring.query import MetricsQueryService
from novacron.service import Service

#: how each panel is drawn: a line chart, a filled area chart, or the latest value alone
CHART_TYPES = ("line", "area", "stat")
#: the units a panel's values are shown in
UNITS = ("", "cores", "bytes", "bytes/s", "ops/s", "percent", "seconds", "load", "count")
MAX_PANELS = 24
#: how long checking one panel's query may take in the store
CHECK_TIMEOUT = "5s"


@dataclass(frozen=True)
class Panel:
    """One chart of a dashboard: its title, PromQL query, unit and chart type."""

    title: str
    query: str
    unit: str = ""
    chart: str = "line"

    def as_json(self) -> dict[str, Any]:
        return {"title": self.title, "query": self.query, "unit": self.unit, "chart": self.chart}


@dataclass(frozen=True)
class DashboardSpec:
    """A dashboard as a user writes it."""

    name: str
    panels: list[Panel]


class DashboardService(Service):
    """The caller's own dashboards: list, read, create, replace, delete."""

    raises = (Unavailable,)

    def _mine(self) -> Any:
        return scoped(select(Dashboard), Dashboard, self.principal)

    def list(self, params: ListParams, *, name: str | None = None) -> tuple[list[Dashboard], str | None]:
        """One page of the caller's dashboards."""
        return paginate(self.session, where_equal(self._mine(), (Dashboard.name, name)), Dashboard, params)

    def get(self, ref: str) -> Dashboard:
        """The caller's dashboard of this id or name; NotFound for anyone else's."""
        return resolve(self.session, self.principal, Dashboard, ref)

    def create(self, spec: DashboardSpec) -> Dashboard:
        """A new dashboard of the caller's, once every panel's query ran in the caller's scope."""
        self._check(spec)
        self._name_free(spec.name)
        row = Dashboard(
            id=new_id("dsh"),
            tenant_id=self.principal.tenant_id,
            user_id=self.principal.user_id,
            name=spec.name,
            panels=[p.as_json() for p in spec.panels],
        )
        self.session.add(row)
        self.session.flush()
        return row

    def replace(self, dashboard: Dashboard, spec: DashboardSpec) -> Dashboard:
        """New name and panels for one of the caller's dashboards, checked as a create is."""
        dashboard_id = dashboard.id
        self._check(spec)
        row = self.get(dashboard_id)
        if spec.name != row.name:
            self._name_free(spec.name)
        row.name = spec.name
        row.panels = [p.as_json() for p in spec.panels]
        self.session.flush()
        return row

    def delete(self, dashboard: Dashboard) -> None:
        """Delete one of the caller's dashboards."""
        self.session.delete(dashboard)
        self.session.flush()

    def _name_free(self, name: str) -> None:
        if self.session.scalar(self._mine().where(Dashboard.name == name)) is not None:
            raise NameTaken("dashboard", name, "name", scope="among your dashboards")

    def _check(self, spec: DashboardSpec) -> None:
        if not spec.panels:
            raise InvalidInput("panels", "a dashboard needs at least one panel")
        if len(spec.panels) > MAX_PANELS:
            raise InvalidInput("panels", f"at most {MAX_PANELS} panels")
        for n, panel in enumerate(spec.panels):
            if panel.chart not in CHART_TYPES:
                raise InvalidInput(f"panels.{n}.chart", f"one of {', '.join(CHART_TYPES)}")
            if panel.unit not in UNITS:
                raise InvalidInput(f"panels.{n}.unit", "one of " + ", ".join(u or "''" for u in UNITS))
        # the store is read next: no transaction may stay open meanwhile (nothing is written yet)
        self.session.rollback()
        queries = MetricsQueryService(self.session, self.principal, self.ctx)
        for n, panel in enumerate(spec.panels):
            try:
                queries.query(panel.query, None, CHECK_TIMEOUT)
            except InvalidInput as exc:
                reason = exc.fields[0].reason if exc.fields else str(exc)
                raise InvalidInput(f"panels.{n}.query", reason) from exc

"""The monthly SLA report of a tenant: per SLO its target, the SLI achieved, budget used, incidents.

The month's SLI is the indicator's good ratio over the whole month (up to now for the month in
progress). Incidents are the periods in which the probe failed: the month is read in steps (at most
``_MAX_POINTS`` of them, never finer than the probe's interval), a step is failing when any run in
it was bad (``min_over_time``), and consecutive failing steps make one incident, so an incident's
bounds are exact to one step.
"""

from __future__ import annotations

import csv
import html
import io
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from novacron.errors import InvalidInput, on_field
from novacron.monitoring.slo.promql import Indicator
from novacron.monitoring.store import MetricsStore

_MAX_POINTS = 10_000


@dataclass(frozen=True)
class Incident:
    """A period of failure: from ``start`` to ``end`` (unix seconds)."""

    start: float
    end: float


@dataclass(frozen=True)
class SLORow:
    """One SLO's month."""

    slo_id: str
    name: str
    indicator: str
    target: float
    sli: float | None
    budget_used: float | None
    incidents: list[Incident]


def month_bounds(month: str) -> tuple[float, float]:
    """``2026-11`` -> its first second and the first second of the next month (unix s, UTC)."""
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
        nxt = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
    except ValueError:
        raise on_field(InvalidInput, "month", "a month as YYYY-MM", part="query") from None
    return start.timestamp(), nxt.timestamp()


def measure(store: MetricsStore, ind: Indicator, target: float, start: float, end: float) -> SLORow:
    """The SLI and incidents of ``ind`` from ``start`` to ``end`` (clipped to now); the row's
    identity fields are filled in by the caller."""
    end = min(end, time.time())
    seconds = max(int(end - start), 1)
    sli = scalar_of(store.query(ind.ratio(f"{seconds}s"), end)) if end > start else None
    step = max(ind.interval_s, -(-seconds // _MAX_POINTS))
    incidents: list[Incident] = []
    if end > start:
        data = store.query_range(ind.worst(f"{step}s", span=f"{seconds}s"), start + step, end, step)
        for series in data.get("result", [])[:1]:
            incidents = _failing_periods([(float(t), float(v)) for t, v in series["values"]], step)
    used = None if sli is None else (1.0 - sli) / (1.0 - target)
    return SLORow("", "", ind.kind, target, sli, used, incidents)


def scalar_of(data: Any) -> float | None:
    """The single value of an instant query's vector (None when it has no series)."""
    result = data.get("result") or []
    if not result:
        return None
    return float(result[0]["value"][1])


def _failing_periods(points: list[tuple[float, float]], step: float) -> list[Incident]:
    out: list[Incident] = []
    for t, value in points:
        if value >= 1.0:
            continue
        if out and t - out[-1].end <= step + 1e-6:
            out[-1] = Incident(out[-1].start, t)
        else:
            out.append(Incident(t - step, t))
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pct(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value * 100:.{digits}f}"


CSV_HEADER = (
    "slo_id",
    "slo",
    "indicator",
    "target_percent",
    "achieved_percent",
    "budget_used_percent",
    "incidents",
    "downtime_seconds",
    "incident_periods",
)


def to_csv(rows: list[SLORow]) -> str:
    """One line per SLO; ``incident_periods`` lists ``start/end`` ISO intervals separated by ``;``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for r in rows:
        periods = ";".join(f"{_iso(i.start)}/{_iso(i.end)}" for i in r.incidents)
        downtime = int(sum(i.end - i.start for i in r.incidents))
        writer.writerow(
            (
                r.slo_id,
                r.name,
                r.indicator,
                _pct(r.target, 3),
                _pct(r.sli),
                _pct(r.budget_used, 2),
                len(r.incidents),
                downtime,
                periods,
            )
        )
    return out.getvalue()


def to_html(tenant: str, month: str, rows: list[SLORow]) -> str:
    """A self-contained page: a table of the SLOs and, under it, each SLO's incidents."""
    e = html.escape
    lines = [
        "<!doctype html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>SLA report {e(month)}: {e(tenant)}</title>',
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}.missed{color:#b00}</style></head><body>",
        f"<h1>SLA report for {e(tenant)}, {e(month)}</h1>",
        "<table><thead><tr><th>SLO</th><th>indicator</th><th>target %</th><th>achieved %</th>"
        "<th>budget used %</th><th>incidents</th></tr></thead><tbody>",
    ]
    for r in rows:
        row_class = ' class="missed"' if r.sli is not None and r.sli < r.target else ""
        lines.append(
            f"<tr{row_class}><td>{e(r.name)}</td><td>{e(r.indicator)}</td>"
            f"<td>{_pct(r.target, 3)}</td><td>{_pct(r.sli) or 'no data'}</td>"
            f"<td>{_pct(r.budget_used, 2)}</td><td>{len(r.incidents)}</td></tr>"
        )
    lines.append("</tbody></table>")
    for r in rows:
        if r.incidents:
            lines.append(f"<h2>Incidents of {e(r.name)}</h2><ul>")
            lines.extend(
                f"<li>{_iso(i.start)} to {_iso(i.end)} ({int(i.end - i.start)} s)</li>" for i in r.incidents
            )
            lines.append("</ul>")
    lines.append("</body></html>")
    return "\n".join(lines) + "\n"

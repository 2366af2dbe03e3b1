"""The PromQL of SLOs: the good-sample ratio of an indicator, burn rates and the burn-rate alerts.

An SLO's indicator is read from its probe's series (``novacron_probe_success`` is 1 or 0 per run,
``novacron_probe_duration_seconds`` the run's duration). Probes run at a fixed interval, so the
share of good samples over a window is the share of good time: ``avg_over_time`` of the success
series, or for a latency SLO the same over a subquery of "succeeded and fast enough".

Burn rate = the error ratio over a window / the error budget (1 - target): 1 spends the budget in
exactly the SLO window. The alerts are the Google SRE workbook's multiwindow, multi-burn-rate ones
(chapter 5, "Alerting on SLOs"): page at 14.4x over 1 h and 5 min (2 % of a 30-day budget in an hour)
or 6x over 6 h and 30 min (5 % in 6 hours); ticket at 1x over 3 days and 6 h (10 % in 3 days). The
short window makes an alert stop soon after the failure does, and the long one keeps a single failed
run from paging.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

SUCCESS = "novacron_probe_success"
DURATION = "novacron_probe_duration_seconds"
MAX_SUBQUERY_POINTS = 25_000
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(window: str) -> int:
    """``30d`` -> 2592000 (the windows this module writes: a number and one unit)."""
    return int(window[:-1]) * _UNIT_S[window[-1]]


@dataclass(frozen=True)
class Indicator:
    """What an SLO measures: the probe's series, and for ``latency`` the threshold of a good run."""

    tenant_id: str
    probe_id: str
    kind: str = "success"
    latency_threshold_s: float | None = None
    #: the probe's interval, the step of a latency subquery (one point per run)
    interval_s: int = 10

    def selector(self, metric: str) -> str:
        """``metric`` of this probe, always with its tenant's matcher."""
        return f"{metric}{{tenant_id={json.dumps(self.tenant_id)},probe_id={json.dumps(self.probe_id)}}}"

    def good(self) -> str:
        """Per sample: 1 for a good run, 0 for a bad one."""
        if self.kind == "latency":
            threshold = self.latency_threshold_s if self.latency_threshold_s is not None else 0.0
            return f"({self.selector(DURATION)} <= bool {threshold:g}) * {self.selector(SUCCESS)}"
        return self.selector(SUCCESS)

    def ratio(self, window: str) -> str:
        """The share of good runs over ``window`` ending at the evaluation time."""
        if self.kind == "latency":
            return f"avg_over_time(({self.good()})[{window}:{self.step(window)}s])"
        return f"avg_over_time({self.good()}[{window}])"

    def worst(self, window: str, span: str | None = None) -> str:
        """0 when any run in ``window`` was bad, else 1 (a report's failure periods); ``span``: the
        whole range a range query evaluates this over (its subquery points count over all of it)."""
        if self.kind == "latency":
            return f"min_over_time(({self.good()})[{window}:{self.step(span or window)}s])"
        return f"min_over_time({self.good()}[{window}])"

    def step(self, span: str) -> int:
        """A latency subquery's step over ``span``: one point per run, but at most
        ``MAX_SUBQUERY_POINTS`` (a 30-day window of a 10 s probe would be 259,200: VictoriaMetrics
        1.79 refuses more than 30,000 a series), so long spans are sampled."""
        return max(self.interval_s, -(-seconds(span) // MAX_SUBQUERY_POINTS))


def burn_rate(indicator: Indicator, target: float, window: str) -> str:
    """The burn rate over ``window``: its error ratio over the error budget ``1 - target``."""
    return f"(1 - {indicator.ratio(window)}) / {budget(target):g}"


def budget(target: float) -> float:
    """The error budget of ``target``: the share of bad runs allowed (0.999 -> 0.001)."""
    return round(1.0 - target, 12)


@dataclass(frozen=True)
class BurnAlert:
    """One multiwindow burn-rate condition: burn > ``factor`` over both windows."""

    name: str
    severity: str
    factor: float
    long: str
    short: str


#: the SRE workbook's recommended conditions for a 30-day SLO; a page is ``critical``, a ticket a
#: ``warning`` (the alerting engine's severities)
BURN_ALERTS = (
    BurnAlert("page-fast", "critical", 14.4, "1h", "5m"),
    BurnAlert("page-slow", "critical", 6.0, "6h", "30m"),
    BurnAlert("ticket", "warning", 1.0, "3d", "6h"),
)


@dataclass(frozen=True)
class BurnRule:
    """A generated alert rule: its name, severity and the PromQL the engine evaluates."""

    name: str
    severity: str
    expr: str


def burn_rate_rules(ref: str, indicator: Indicator, target: float) -> list[BurnRule]:
    """The SLO's three alert rules, named ``<ref>-page-fast`` ...; each fires while burn > factor
    over its long AND short window."""
    rules = []
    for alert in BURN_ALERTS:
        long = burn_rate(indicator, target, alert.long)
        short = burn_rate(indicator, target, alert.short)
        expr = f"({long} > {alert.factor:g}) and ({short} > {alert.factor:g})"
        rules.append(BurnRule(f"{ref}-{alert.name}", alert.severity, expr))
    return rules

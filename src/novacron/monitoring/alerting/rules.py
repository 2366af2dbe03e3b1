"""Alert rules: what a caller asks for (a kind and its parameters) turned into the PromQL vmalert
evaluates, checked field by field, and rendered into vmalert's rule file.

Tenancy is enforced by the engine, not by trusting the expression: each tenant's rules are one
vmalert group whose queries carry ``extra_label=tenant_id=<t>`` (VictoriaMetrics ANDs it into
every selector of the query, whatever the query says), and the rules the kinds build carry the
tenant matcher in their selectors too (so a Prometheus store, which has no ``extra_label``, is
scoped as well). Platform rules, written by administrators, are a group of their own without it.
Annotations are Go templates in vmalert; a tenant's may only use ``$value`` and ``$labels.x``,
since the template functions (``query``) would read series outside the group's scope.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from novacron.errors import InvalidInput
from novacron.monitoring.series import ANOMALY_SCORE

KINDS = ("threshold", "rate_of_change", "absence", "anomaly", "burn_rate")
COMPARISONS = (">", ">=", "<", "<=", "==", "!=")
#: range functions a threshold may apply to its series before comparing
FUNCTIONS = ("rate", "increase", "avg_over_time", "max_over_time", "min_over_time")
SEVERITIES = ("info", "warning", "critical")
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w))+$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: labels the platform sets on every alert; a rule may not set them itself
RULE_ID, RECEIVERS, SCOPE, TENANT = "novacron_rule_id", "novacron_receivers", "novacron_scope", "tenant_id"
_RESERVED = ("alertname", "severity", TENANT)
_ALLOWED_TEMPLATE = re.compile(r"^\{\{\s*(\$value|\$labels\.[a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}$")
_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{\{|\}\}", re.S)
MAX_EXPR = 2000
#: the store engine that applies ``extra_label`` to every selector of an expression: the only one
#: a tenant's own whole expression (kind burn_rate) is safe on
ENFORCING = "victoriametrics"


def seconds(duration: str) -> float:
    """``1m30s`` -> 90.0 (a Prometheus duration, already matched by ``DURATION``)."""
    return sum(int(n) * _UNIT_S[unit] for n, unit in re.findall(r"(\d+)(ms|s|m|h|d|w)", duration))


@dataclass(frozen=True)
class RuleSpec:
    """A rule to create, as the caller asked for it (shapes already checked by the API)."""

    name: str
    kind: str
    metric: str | None = None
    #: label equality filters on the metric's series
    matchers: dict[str, str] = field(default_factory=dict)
    #: threshold only: a range function applied first (``rate`` for counters), or None
    function: str | None = None
    window: str = "1m"
    op: str = ">"
    value: float | None = None
    #: burn_rate: the whole expression (the SLO work generates these)
    expr: str | None = None
    for_: str = "0s"
    severity: str = "warning"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    #: receivers (ids or names) its alerts are sent to
    receivers: list[str] = field(default_factory=list)
    #: admins: the tenant the rule belongs to; None for a platform rule over every series
    tenant_id: str | None = None
    enabled: bool = True


def quote(value: str) -> str:
    """A PromQL string literal (JSON escaping is a subset PromQL reads the same way)."""
    return json.dumps(value)


def selector(metric: str, matchers: dict[str, str]) -> str:
    inner = ",".join(f"{name}={quote(value)}" for name, value in sorted(matchers.items()))
    return f"{metric}{{{inner}}}"


def _check_matchers(matchers: dict[str, str]) -> None:
    for name in matchers:
        if not LABEL_NAME.match(name) or name.startswith("__"):
            raise InvalidInput(f"matchers.{name}", "not a label name")


def _metric(spec: RuleSpec) -> str:
    if spec.metric is None:
        raise InvalidInput("metric", f"required for a {spec.kind} rule")
    if not METRIC_NAME.match(spec.metric):
        raise InvalidInput("metric", "not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)")
    return spec.metric


def _comparison(spec: RuleSpec, default: float | None = None) -> str:
    """``<op> <value>`` closing the rule's expression."""
    if spec.op not in COMPARISONS:  # it is written into the expression as it is
        raise InvalidInput("op", f"one of {', '.join(COMPARISONS)}")
    value = spec.value if spec.value is not None else default
    if value is None:
        raise InvalidInput("value", f"required for a {spec.kind} rule")
    return f"{spec.op} {value}"


def build_expr(spec: RuleSpec, tenant_id: str | None) -> str:
    """The PromQL of a rule; a tenant's selectors carry its tenant matcher."""
    if spec.kind not in KINDS:
        raise InvalidInput("kind", f"one of {', '.join(KINDS)}")
    if spec.kind == "burn_rate":
        if not spec.expr or len(spec.expr) > MAX_EXPR:
            raise InvalidInput("expr", f"a PromQL expression of 1 to {MAX_EXPR} characters is required")
        return spec.expr.strip()
    _check_matchers(spec.matchers)
    if not DURATION.match(spec.window) or seconds(spec.window) < 1:
        raise InvalidInput("window", "a duration of at least 1s, like 30s or 5m")
    matchers = dict(spec.matchers)
    if tenant_id is not None:
        matchers[TENANT] = tenant_id
    window = spec.window
    if spec.kind == "anomaly":
        if spec.metric is not None:  # the anomaly score's ``metric`` label names the series scored
            matchers["metric"] = _metric(spec)
        sel = selector(ANOMALY_SCORE, matchers)
        return f"max_over_time({sel}[{window}]) {_comparison(spec, 0.8)}"
    sel = selector(_metric(spec), matchers)
    if spec.kind == "absence":
        return f"absent_over_time({sel}[{window}])"
    if spec.kind == "rate_of_change":
        return f"deriv({sel}[{window}]) {_comparison(spec)}"
    if spec.function is not None:
        if spec.function not in FUNCTIONS:
            raise InvalidInput("function", f"one of {', '.join(FUNCTIONS)}")
        sel = f"{spec.function}({sel}[{window}])"
    return f"{sel} {_comparison(spec)}"


def check_labels(labels: dict[str, str], annotations: dict[str, str], *, tenant: bool) -> None:
    """Refuse labels the platform owns and, for tenants, templates beyond $value and $labels."""
    for name in labels:
        if not LABEL_NAME.match(name) or name in _RESERVED or name.startswith(("novacron_", "__")):
            raise InvalidInput(f"labels.{name}", "not a label name a rule may set (reserved or invalid)")
    for name in annotations:
        if not LABEL_NAME.match(name):
            raise InvalidInput(f"annotations.{name}", "not an annotation name")
    # vmalert expands templates in label values as well as in annotations
    for part, texts in (("labels", labels), ("annotations", annotations)):
        for name, text in texts.items():
            if tenant and any(not _ALLOWED_TEMPLATE.match(t) for t in _TEMPLATE.findall(text)):
                raise InvalidInput(f"{part}.{name}", "only {{ $value }} and {{ $labels.name }} may be used")


def receivers_label(receiver_ids: Iterable[str]) -> str:
    """``,a,b,``: what a receiver's route matches with ``=~".*,<id>,.*"``."""
    return "," + ",".join(sorted(receiver_ids)) + ","


@dataclass(frozen=True)
class RenderedRule:
    """What the rule file needs of a stored rule."""

    id: str
    tenant_id: str | None
    name: str
    expr: str
    for_s: int
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    receiver_ids: Sequence[str]


def _rule_entry(rule: RenderedRule) -> dict[str, Any]:
    labels = {
        **rule.labels,
        "severity": rule.severity,
        RULE_ID: rule.id,
        RECEIVERS: receivers_label(rule.receiver_ids),
        SCOPE: "tenant" if rule.tenant_id is not None else "platform",
    }
    if rule.tenant_id is not None:
        labels[TENANT] = rule.tenant_id
    return {
        "alert": rule.name,
        "expr": rule.expr,
        "for": f"{rule.for_s}s",
        "labels": labels,
        "annotations": dict(rule.annotations),
    }


def render_rule_file(rules: Iterable[RenderedRule], interval_s: float) -> str:
    """vmalert's rule file (JSON, which YAML reads): one group per tenant, scoped by extra_label,
    and one group of platform rules; groups in a fixed order so equal input renders equal text."""
    by_tenant: dict[str | None, list[RenderedRule]] = {}
    for rule in rules:
        by_tenant.setdefault(rule.tenant_id, []).append(rule)
    groups = []
    for tenant_id in sorted(by_tenant, key=lambda t: (t is not None, t or "")):
        group: dict[str, Any] = {
            "name": f"tenant-{tenant_id}" if tenant_id else "platform",
            "interval": f"{interval_s:g}s",
            "rules": [_rule_entry(r) for r in sorted(by_tenant[tenant_id], key=lambda r: r.id)],
        }
        if tenant_id is not None:
            group["params"] = {"extra_label": [f"{TENANT}={tenant_id}"]}
            group["labels"] = {TENANT: tenant_id}
        groups.append(group)
    return json.dumps({"groups": groups}, indent=1, sort_keys=True)

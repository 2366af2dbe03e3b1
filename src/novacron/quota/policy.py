"""The policy engine: rules stored in the database, evaluated on every request that charges quota.

Kinds (``PolicyRule.params``):

- ``threshold``: ``warn_pct`` (the request passes with a warning above it) and ``deny_pct``
  (refused above it; 100 when absent) of a node's limit;
- ``burst``: usage may reach ``burst_pct`` of the limit, for at most ``max_duration_s`` from the
  moment it first went above the limit (then new requests are refused until it falls back);
- ``max_size``: one request may ask for at most ``max`` of the resource (for example members,
  ``role: member``, create VMs of at most 8 vCPU).

A rule applies to a resource (or ``*``), to one role (or everyone) and to one node's subtree (or
everywhere). Without rules a limit refuses at 100 %. Every refusal names the rule and the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.db.models import PolicyRule
from novacron.errors import FieldError, Forbidden, InvalidInput

KINDS = ("threshold", "burst", "max_size")
#: the implicit rule of a plain limit
LIMIT_RULE = "limit"


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    resource: str
    role: str | None
    node_id: str | None
    params: dict[str, Any]

    def applies(self, resource: str, role: str | None, chain: list[str]) -> bool:
        return (
            self.resource in ("*", resource)
            and (self.role is None or self.role == role)
            and (self.node_id is None or self.node_id in chain)
        )


@dataclass
class Ceiling:
    """How far usage may go on one node and resource, and which rule says so."""

    limit: int
    normal: int
    normal_rule: str
    burst: int | None = None
    burst_rule: str | None = None
    burst_cutoff: datetime | None = None
    warn_at: float | None = None
    warn_rule: str | None = None


@dataclass
class Decisions:
    """What the engine decided for one request: recorded in the audit log and returned as warnings."""

    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, outcome: str, rule: str, message: str, **numbers: Any) -> None:
        self.items.append({"outcome": outcome, "rule": rule, "message": message, **numbers})

    @property
    def warnings(self) -> list[str]:
        return [d["message"] for d in self.items if d["outcome"] in ("warn", "burst", "override")]


def refused(decisions: Decisions, rule: str, message: str, **numbers: Any) -> Forbidden:
    """The refusal of ``rule`` (recorded in ``decisions``), naming the resource and the numbers."""
    decisions.add("deny", rule, message, **numbers)
    return Forbidden(
        message,
        title="Refused by policy",
        fields=[FieldError(f"quota.{numbers.get('resource', 'request')}", message, part="")],
        extra={"policy": {"rule": rule, **numbers}},
    )


def validate_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a rule of ``kind``, checked (``InvalidInput`` naming the bad one)."""

    def num(key: str, lo: float, hi: float, required: bool = True) -> None:
        v = params.get(key)
        if v is None:
            if required:
                raise InvalidInput(f"params.{key}", f"required for a {kind} rule")
            return
        if not isinstance(v, int | float) or isinstance(v, bool) or not lo <= v <= hi:
            raise InvalidInput(f"params.{key}", f"must be a number from {lo:g} to {hi:g}")

    allowed = {
        "threshold": {"warn_pct", "deny_pct"},
        "burst": {"burst_pct", "max_duration_s"},
        "max_size": {"max"},
    }
    if kind not in allowed:
        raise InvalidInput("kind", f"must be one of {', '.join(KINDS)}")
    extra = set(params) - allowed[kind]
    if extra:
        raise InvalidInput(f"params.{sorted(extra)[0]}", f"not a parameter of a {kind} rule")
    if kind == "threshold":
        num("warn_pct", 1, 1000, required=False)
        num("deny_pct", 1, 1000, required=False)
        if "warn_pct" not in params and "deny_pct" not in params:
            raise InvalidInput("params", "a threshold rule needs warn_pct, deny_pct or both")
    elif kind == "burst":
        num("burst_pct", 100, 1000)
        num("max_duration_s", 1, 366 * 86400)
    else:
        num("max", 0, 2**40)
    return params


# built once: read on every charge
_LOAD = (
    select(
        PolicyRule.name,
        PolicyRule.kind,
        PolicyRule.resource,
        PolicyRule.role,
        PolicyRule.node_id,
        PolicyRule.params,
    )
    .where(PolicyRule.enabled.is_(True))
    .order_by(PolicyRule.name)
)


def load(session: Session) -> list[Rule]:
    rows = session.connection().execute(_LOAD)
    return [Rule(r.name, r.kind, r.resource, r.role, r.node_id, dict(r.params or {})) for r in rows]


def check_size(
    rules: list[Rule], role: str | None, chain: list[str], amounts: dict[str, int], decisions: Decisions
) -> None:
    for resource, amount in sorted(amounts.items()):
        for rule in rules:
            if (
                rule.kind == "max_size"
                and rule.applies(resource, role, chain)
                and amount > rule.params["max"]
            ):
                who = f"role {rule.role}" if rule.role else "any request"
                raise refused(
                    decisions,
                    rule.name,
                    f"Rule '{rule.name}' (max_size): {who} may ask for at most {rule.params['max']} "
                    f"{resource} at once; this request asks for {amount}.",
                    resource=resource,
                    requested=amount,
                    max=rule.params["max"],
                )


def ceiling(
    rules: list[Rule],
    resource: str,
    role: str | None,
    node_id: str,
    chain: list[str],
    limit: int,
    now: datetime,
) -> Ceiling:
    """The effective ceilings of one node: from the strictest deny threshold, and a burst allowance."""
    below = chain[chain.index(node_id) :]  # a rule scoped to a node covers that node's subtree
    c = Ceiling(limit=limit, normal=limit, normal_rule=LIMIT_RULE)
    for rule in rules:
        if not rule.applies(resource, role, below):
            continue
        if rule.kind == "threshold":
            if "deny_pct" in rule.params:
                value = math.floor(limit * rule.params["deny_pct"] / 100)
                if value < c.normal or c.normal_rule == LIMIT_RULE:
                    c.normal, c.normal_rule = value, rule.name
            if "warn_pct" in rule.params:
                at = limit * rule.params["warn_pct"] / 100
                if c.warn_at is None or at < c.warn_at:
                    c.warn_at, c.warn_rule = at, rule.name
        elif rule.kind == "burst":
            value = math.floor(limit * rule.params["burst_pct"] / 100)
            if c.burst is None or value > c.burst:
                c.burst, c.burst_rule = value, rule.name
                c.burst_cutoff = now - timedelta(seconds=float(rule.params["max_duration_s"]))
    return c

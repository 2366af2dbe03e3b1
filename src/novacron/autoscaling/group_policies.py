"""Scaling policies attached to a group: the service behind /v1/scaling-groups/{id}/policies.

A policy is a kind (``target_tracking``, ``step``, ``scheduled``, ``predictive``) and its
parameters, validated here into one normal form kept as JSON (``ScalingPolicy.params``); the
evaluation loop (``evaluate.py``) turns them into the pure decision functions of ``policies.py``.
Metrics: ``cpu`` is the average guest CPU % of the group's serving VMs, ``requests_per_member``
the requests per second its load-balancer pools answer, per serving member. A policy is reached
only through its group, so another tenant's is absent (404) like the group.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from novacron import events
from novacron.autoscaling.groups import MAX_GROUP_SIZE
from novacron.db.base import new_id
from novacron.db.models import ScalingGroup, ScalingPolicy
from novacron.db.resolve import resolve
from novacron.errors import InvalidInput, NameTaken, NotFound
from novacron.service import Service

KINDS = ("target_tracking", "step", "scheduled", "predictive")
METRICS = ("cpu", "requests_per_member")
MAX_STEPS = 16
MAX_ACTIONS = 16
#: a reactive policy's metric window: the default (the store's 60 s step before it was a
#: parameter) and the shortest (two of the load balancers' 10 s statistics reports)
DEFAULT_WINDOW_S = 60.0
MIN_WINDOW_S = 20.0
_AT = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
Params = dict[str, Any]


@dataclass(frozen=True)
class PolicySpec:
    """A policy as the caller asked for it; ``params`` is checked per kind by the service."""

    name: str
    kind: str
    params: Params
    enabled: bool = True
    cooldown_s: int | None = None


@dataclass(frozen=True)
class PolicyChange:
    """An update: each field left None stays (``params`` replaces the parameters as a whole)."""

    params: Params | None = None
    enabled: bool | None = None
    cooldown_s: int | None = None


def _number(  # noqa: PLR0913  (the bounds, the default, and where the field sits)
    params: Params, key: str, low: float, high: float, default: float | None = None, where: str = "params"
) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{where}.{key}", "must be a number" if key in params else "is required")
    if not low <= value <= high:
        raise InvalidInput(f"{where}.{key}", f"must be between {low:g} and {high:g}")
    return float(value)


def _metric(params: Params) -> str:
    metric = params.get("metric")
    if metric not in METRICS:
        raise InvalidInput("params.metric", f"must be one of {', '.join(METRICS)}")
    return str(metric)


def _target(params: Params, metric: str) -> float:
    target = _number(params, "target", 0.0, 100.0 if metric == "cpu" else 1e6)
    if target <= 0:
        raise InvalidInput("params.target", "must be positive")
    return target


def _steps(params: Params) -> builtins.list[Params]:
    steps = params.get("steps")
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_STEPS:
        raise InvalidInput("params.steps", f"must be a list of 1 to {MAX_STEPS} steps")
    out = []
    for i, step in enumerate(steps):
        where = f"params.steps.{i}"
        if not isinstance(step, dict):
            raise InvalidInput(where, "must be an object {lower, upper, change}")
        lower = _number(step, "lower", -1e9, 1e9, where=where)
        upper = None if step.get("upper") is None else _number(step, "upper", -1e9, 1e9, where=where)
        change = step.get("change")
        if isinstance(change, bool) or not isinstance(change, int) or change == 0:
            raise InvalidInput(f"{where}.change", "must be a non-zero whole number of VMs")
        if upper is not None and upper <= lower:
            raise InvalidInput(f"{where}.upper", "must be above lower")
        out.append({"lower": lower, "upper": upper, "change": change})
    return out


def _size(action: Params, where: str, key: str) -> int | None:
    value = action.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_GROUP_SIZE:
        raise InvalidInput(f"{where}.{key}", f"must be a whole number between 0 and {MAX_GROUP_SIZE}")
    return value


def _action(action: Any, where: str) -> Params:
    """One scheduled action: its time, weekdays, and any of desired / min_size / max_size."""
    if not isinstance(action, dict):
        raise InvalidInput(where, "must be an object {at, desired, min_size, max_size, days}")
    if not isinstance(action.get("at"), str) or not _AT.match(action["at"]):
        raise InvalidInput(f"{where}.at", "must be a UTC time HH:MM")
    sizes = {k: v for k in ("desired", "min_size", "max_size") if (v := _size(action, where, k)) is not None}
    if not sizes:
        raise InvalidInput(f"{where}.desired", "give desired, min_size or max_size (or several)")
    low, high = sizes.get("min_size", 0), sizes.get("max_size", MAX_GROUP_SIZE)
    if low > high:
        raise InvalidInput(f"{where}.min_size", f"must be at most max_size ({high})")
    if not low <= sizes.get("desired", low) <= high:
        raise InvalidInput(f"{where}.desired", f"must be between min_size ({low}) and max_size ({high})")
    days = action.get("days", list(range(7)))
    if not isinstance(days, list) or not days or any(d not in range(7) for d in days):
        raise InvalidInput(f"{where}.days", "must be weekdays 0 (Monday) to 6")
    return {"at": action["at"], **sizes, "days": sorted(set(days))}


def _actions(params: Params) -> builtins.list[Params]:
    actions = params.get("actions")
    if not isinstance(actions, list) or not 1 <= len(actions) <= MAX_ACTIONS:
        raise InvalidInput("params.actions", f"must be a list of 1 to {MAX_ACTIONS} actions")
    return [_action(action, f"params.actions.{i}") for i, action in enumerate(actions)]


def _with_cost_cap(params: Params, out: Params) -> Params:
    if params.get("max_cost_per_hour") is not None:
        out["max_cost_per_hour"] = _number(params, "max_cost_per_hour", 0.0, 1e9)
    return out


def _window(params: Params) -> float:
    """``window_s``: a reactive policy's metric is its rate over this last span (see
    ``evaluate.StoreMetrics``: never shorter than two reports of the metric's counter)."""
    return _number(params, "window_s", MIN_WINDOW_S, 3600, DEFAULT_WINDOW_S)


def _target_tracking(params: Params) -> Params:
    metric = _metric(params)
    return {"metric": metric, "target": _target(params, metric), "window_s": _window(params)}


def _step(params: Params) -> Params:
    return {"metric": _metric(params), "steps": _steps(params), "window_s": _window(params)}


def _scheduled(params: Params) -> Params:
    return {"actions": _actions(params)}


def _predictive(params: Params) -> Params:
    metric = _metric(params)
    return {
        "metric": metric,
        "target": _target(params, metric),
        "boot_delay_s": _number(params, "boot_delay_s", 0, 3600, 120),
        "max_mase": _number(params, "max_mase", 0.0, 10.0, 1.0),
        "max_width": _number(params, "max_width", 0.0, 10.0, 1.0),
        "max_width_vms": _number(params, "max_width_vms", 0.0, 100.0, 1.0),
        "history_s": _number(params, "history_s", 3600, 28 * 86_400, 2 * 86_400),
        "step_s": _number(params, "step_s", 60, 3600, 300),
    }


_CHECKS: dict[str, Callable[[Params], Params]] = {
    "target_tracking": _target_tracking,
    "step": _step,
    "scheduled": _scheduled,
    "predictive": _predictive,
}


def normal_params(kind: str, params: Params) -> Params:
    """``params`` of a ``kind`` checked (each refusal naming its field) and in their normal form."""
    check = _CHECKS.get(kind)
    if check is None:
        raise InvalidInput("kind", f"must be one of {', '.join(KINDS)}")
    return _with_cost_cap(params, check(params))


class ScalingPolicyService(Service):
    """Create, read, change and delete the policies of the caller's scaling groups."""

    def group(self, ref: str) -> ScalingGroup:
        """The group of this id or name, as the caller sees it (another tenant's: 404)."""
        return resolve(self.session, self.principal, ScalingGroup, ref)

    def list(self, group: ScalingGroup) -> builtins.list[ScalingPolicy]:
        """The group's policies by name."""
        stmt = select(ScalingPolicy).where(ScalingPolicy.group_id == group.id)
        return list(self.session.scalars(stmt.order_by(ScalingPolicy.name)))

    def get(self, group: ScalingGroup, ref: str) -> ScalingPolicy:
        """The group's policy of this id or name."""
        stmt = select(ScalingPolicy).where(
            ScalingPolicy.group_id == group.id, (ScalingPolicy.id == ref) | (ScalingPolicy.name == ref)
        )
        policy = self.session.scalars(stmt).first()
        if policy is None:
            raise NotFound(
                "scaling policy", ref, detail=f"Scaling group '{group.name}' has no policy '{ref}'."
            )
        return policy

    def create(self, group: ScalingGroup, spec: PolicySpec) -> ScalingPolicy:
        """A new policy of ``group``; the evaluation loop runs it from its next round."""
        params = normal_params(spec.kind, spec.params)
        taken = select(ScalingPolicy.id).where(
            ScalingPolicy.group_id == group.id, ScalingPolicy.name == spec.name
        )
        if self.session.scalar(taken):
            raise NameTaken("scaling policy", spec.name, "name")
        policy = ScalingPolicy(
            id=new_id("asp"),
            group_id=group.id,
            tenant_id=group.tenant_id,
            name=spec.name,
            kind=spec.kind,
            params=params,
            enabled=spec.enabled,
            cooldown_s=spec.cooldown_s,
            state={},
        )
        self.session.add(policy)
        self.session.flush()
        self._publish("scaling_policy.created", group, policy)
        return policy

    def update(self, group: ScalingGroup, policy: ScalingPolicy, change: PolicyChange) -> ScalingPolicy:
        """Change a policy's parameters, whether it runs, or its cooldown."""
        if change.params is not None:
            policy.params = normal_params(policy.kind, change.params)
        if change.enabled is not None:
            policy.enabled = change.enabled
        if change.cooldown_s is not None:
            policy.cooldown_s = change.cooldown_s
        self.session.flush()
        self._publish("scaling_policy.updated", group, policy)
        return policy

    def delete(self, group: ScalingGroup, policy: ScalingPolicy) -> None:
        """Remove a policy: the group keeps its size."""
        self._publish("scaling_policy.deleted", group, policy)
        self.session.delete(policy)
        self.session.flush()

    def _publish(self, kind: str, group: ScalingGroup, policy: ScalingPolicy) -> None:
        events.publish(
            self.session,
            kind,
            "scaling_group",
            group.id,
            tenant_id=group.tenant_id,
            project_id=group.project_id,
            policy=policy.name,
            policy_id=policy.id,
        )

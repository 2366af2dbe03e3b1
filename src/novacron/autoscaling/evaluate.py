"""The policy evaluation loop: each group's enabled policies, from its real metrics, to a desired count.

Every ``autoscaling_evaluate_s`` (leader only, next to the reconcile in ``reconcile.py``), for each
group with an enabled policy: the group's load is read from the metrics store in the group's
tenant's own scope (``monitoring/query.py``), an ``Observation`` is built (``current`` = the desired
count, booting VMs included; ``ready`` = members in service), and each policy's pure decision
function (``policies.py``) votes. Votes combine AWS-style: the largest desired wins, so a scale-out
by any policy goes ahead and a scale-in only as far as every policy agrees. A scheduled action
votes once, at its time; a step policy only when one of its steps matches.

Before a scale-out the tenant's budget (and a policy's ``max_cost_per_hour``) is checked
(``cost.within_budget``); a refusal is recorded as a failed ``scale_out`` activity with its reason
(once per cooldown). Otherwise ``groups.scale_to`` records the activity with the winning policy's
name, reason and numbers and starts the scale task.

Metrics (``group_policies.py``): ``cpu`` is the members' guest CPU % (vCPU seconds rate over the
flavor's vCPUs), ``requests_per_member`` the HTTP responses per second of the group's pools over
the members in service. Predictive forecasts are fitted apart from the decisions (``Forecasts``,
the controller's ``forecasts`` job); until a policy's first fit it decides as target tracking (its
reactive floor).
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from novacron.autoscaling import forecast, policies
from novacron.autoscaling.cost import Shape, within_budget
from novacron.autoscaling.groups import scale_to
from novacron.db.base import new_id
from novacron.db.models import Flavor, ScalingActivity, ScalingGroup, ScalingGroupMember, ScalingPolicy
from novacron.errors import DomainError
from novacron.monitoring.query import PromAPI, Scope, store_endpoint
from novacron.tasks.service import wake_on_commit

if TYPE_CHECKING:
    from novacron.context import Context

log = logging.getLogger(__name__)
#: the window the latest value of a non-predictive metric is read over
RECENT_S = 600
RECENT_STEP_S = 60
#: a rate needs two samples of its counter in its window: the load balancers' counters come with
#: an agent report every 10 s (``agent/runtime.py`` LB_METRICS_INTERVAL_S); CPU keeps the two
#: minutes rightsizing reads it over
MIN_RATE_WINDOW_S = {"cpu": 120, "requests_per_member": 20}
REFIT_S = 3600.0
#: how long one run of the ``forecasts`` job fits (about 0.5 s a forecaster on this machine)
REFIT_BUDGET_S = 5.0
Span = tuple[float, float, float]
_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
CPU_QUERY = (
    '100 * avg(sum by (vm_id) (rate(novacron_vm_cpu_seconds_total{{vm_id=~"{ids}"}}[{w}s]))) / {vcpus}'
)
REQUESTS_QUERY = 'sum(rate(novacron_lb_member_responses_total{{pool_id=~"{ids}"}}[{w}s]))'


@dataclass(frozen=True)
class Reading:
    """A group's metric now (per serving VM, the policy's unit) and its load history (metric x VMs)."""

    metric: float
    load: list[float]
    step_s: float


class MetricSource(Protocol):
    """Where a group's metric comes from (the metrics store; a bench's synthetic rows)."""

    def read(
        self, session: Session, group: ScalingGroup, metric: str, ready: list[str], span: Span
    ) -> Reading | None:
        """``metric`` of ``group`` (serving members ``ready``) over (start, end, step); None: no samples."""
        ...


def _alternatives(ids: list[str]) -> str:
    return "|".join(i for i in ids if _ID.match(i))


class StoreMetrics:
    """The metrics store, read in each group's tenant's own scope."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._vcpus: dict[str, int] = {}

    def _flavor_vcpus(self, session: Session, flavor_id: str) -> int:
        if flavor_id not in self._vcpus:
            flavor = session.get(Flavor, flavor_id)
            self._vcpus[flavor_id] = flavor.vcpus if flavor is not None else 1
        return self._vcpus[flavor_id]

    def read(
        self, session: Session, group: ScalingGroup, metric: str, ready: list[str], span: Span
    ) -> Reading | None:
        """The group's metric from the store, scoped to its tenant."""
        start, end, step = span
        window = max(int(step), MIN_RATE_WINDOW_S.get(metric, 120))
        if metric == "cpu":
            ids = _alternatives(ready)
            vcpus = self._flavor_vcpus(session, group.template["flavor_id"])
            promql = CPU_QUERY.format(ids=ids, w=window, vcpus=vcpus)
        else:
            ids = _alternatives([p["pool_id"] for p in group.lb_pools])
            promql = REQUESTS_QUERY.format(ids=ids, w=window)
        if not ids or not ready:
            return None
        api = PromAPI(store_endpoint(self.ctx), Scope(group.tenant_id))
        params = [("query", api.scoped_query(promql)), ("start", f"{start:.3f}"), ("end", f"{end:.3f}")]
        result = api.get("query_range", [*params, ("step", f"{step:g}")])["data"].get("result", [])
        values = [float(v) for _, v in result[0]["values"]] if result else []
        values = [v for v in values if math.isfinite(v)]
        if not values:
            return None
        if metric == "cpu":  # an average per VM: the load is it times the VMs serving
            return Reading(values[-1], [v * len(ready) for v in values], step)
        return Reading(values[-1] / len(ready), values, step)


@dataclass(frozen=True)
class Vote:
    """One policy's decision, or None when it abstains this round."""

    policy: ScalingPolicy
    decision: policies.Decision


@dataclass
class _Fitted:
    fitted_at: float
    seen_until: float
    forecaster: forecast.Forecaster


@dataclass
class Forecasts:
    """Fitted forecasters per policy. Fitting is the costly part (``forecast.fit``: a backtest of
    every candidate model), so it is not done while deciding: a decision uses the forecaster
    fitted last, given the samples that came since (``Forecaster.update``), and asks for a refit
    when there is none or it is older than ``REFIT_S``; ``refit`` (a job of its own) fits those."""

    fitted: dict[str, _Fitted] = field(default_factory=dict)
    #: policy id -> the history and horizon a refit is asked with, and when it was read
    wanted: dict[str, tuple[Reading, int, float]] = field(default_factory=dict)

    def predict(
        self, policy_id: str, reading: Reading, steps: int, now: float
    ) -> policies.LoadForecast | None:
        """The load over the next ``steps`` from the fitted forecaster (None: none fitted yet)."""
        cached = self.fitted.get(policy_id)
        if cached is None or now - cached.fitted_at >= REFIT_S:
            self.wanted[policy_id] = (reading, steps, now)
        if cached is None:
            return None
        new = min(len(reading.load), int((now - cached.seen_until) // reading.step_s))
        if new > 0:
            cached.forecaster.update(reading.load[-new:])
            cached.seen_until += new * reading.step_s
        mean, lower, upper = cached.forecaster.predict(steps)
        model = cached.forecaster
        return policies.LoadForecast(
            [float(x) for x in mean],
            [float(x) for x in lower],
            [float(x) for x in upper],
            model.mase,
            model.model,
        )

    def refit(self, budget_s: float = REFIT_BUDGET_S) -> int:
        """Fit the forecasters asked for, oldest request first, for about ``budget_s`` (the rest
        wait for the next call: the controller's other jobs are not held up); how many."""
        started, done = time.monotonic(), 0
        for policy_id in list(self.wanted):
            if done and time.monotonic() - started >= budget_s:
                break
            reading, steps, read_at = self.wanted.pop(policy_id)
            self.fitted[policy_id] = _Fitted(
                read_at, read_at, forecast.fit(reading.load, reading.step_s, steps)
            )
            done += 1
        return done


def _epoch(when: datetime) -> float:
    return when.replace(tzinfo=when.tzinfo or UTC).timestamp()


@dataclass
class GroupState:
    """What one round knows of a group: its members in service and its last scaling action."""

    group: ScalingGroup
    ready: list[str]
    last_action_at: float | None
    readings: dict[str, Reading | None] = field(default_factory=dict)

    def observation(self, now: float, metric: float) -> policies.Observation:
        g = self.group
        return policies.Observation(
            now=now, current=g.desired, ready=len(self.ready), metric=metric,
            min_size=g.min_size, max_size=g.max_size, last_action_at=self.last_action_at,
        )  # fmt: skip


def group_state(session: Session, group: ScalingGroup) -> GroupState:
    """The group's members in service and the start of its last scale-out or scale-in."""
    ready = list(
        session.scalars(
            select(ScalingGroupMember.vm_id).where(
                ScalingGroupMember.group_id == group.id, ScalingGroupMember.state == "in_service"
            )
        )
    )
    last = session.scalar(
        select(func.max(ScalingActivity.started_at)).where(
            ScalingActivity.group_id == group.id, ScalingActivity.action.in_(("scale_out", "scale_in"))
        )
    )
    return GroupState(group, ready, _epoch(last) if last is not None else None)


def _set_limits(  # noqa: PLR0913  (the group, who set the limits, which, why and when)
    session: Session,
    group: ScalingGroup,
    policy: ScalingPolicy,
    limits: tuple[int, int],
    why: str,
    now: float,
) -> None:
    """A scheduled action's new min/max: set on the group and recorded in its history."""
    was = {"was_min_size": group.min_size, "was_max_size": group.max_size}
    group.min_size, group.max_size = limits
    when = datetime.fromtimestamp(now, UTC)
    session.add(
        ScalingActivity(
            id=new_id("sact"), group_id=group.id, tenant_id=group.tenant_id, action="limits",
            reason=f"policy {policy.name} (scheduled): {why}, min {limits[0]} max {limits[1]}",
            policy=policy.name, numbers={"min_size": limits[0], "max_size": limits[1], **was},
            started_at=when, finished_at=when, outcome="succeeded",
        )
    )  # fmt: skip


class Evaluator:
    """Runs the policies of every group; ``evaluate_group`` is one group's decision."""

    def __init__(self, source: MetricSource, forecasts: Forecasts | None = None) -> None:
        self.source = source
        self.forecasts = forecasts or Forecasts()

    def _reading(self, session: Session, state: GroupState, metric: str, span: Span) -> Reading | None:
        key = f"{metric}/{span[1] - span[0]:g}/{span[2]:g}"
        if key not in state.readings:
            try:
                state.readings[key] = self.source.read(session, state.group, metric, state.ready, span)
            except DomainError as exc:  # the store down or refusing: the metric's policies abstain
                log.warning("scaling group %s: no %s metric: %s", state.group.name, metric, exc)
                state.readings[key] = None
        return state.readings[key]

    def vote(self, session: Session, state: GroupState, policy: ScalingPolicy, now: float) -> Vote | None:
        """``policy``'s decision for the group now, or None when it has nothing to say."""
        p = policy.params
        cooldown = float(policy.cooldown_s if policy.cooldown_s is not None else state.group.cooldown_s)
        if policy.kind == "scheduled":
            return self._scheduled(session, state, policy, now)
        if policy.kind == "predictive":
            span = (now - p["history_s"], now, p["step_s"])
        else:  # the rate over the policy's window, read at that step (only the last point counts)
            window = float(p.get("window_s", RECENT_STEP_S))
            span = (now - max(RECENT_S, 10 * window), now, window)
        reading = self._reading(session, state, p["metric"], span)
        if reading is None:
            return None
        obs = state.observation(now, reading.metric)
        if policy.kind == "target_tracking":
            return Vote(policy, policies.target_tracking(obs, p["target"], cooldown))
        if policy.kind == "step":
            steps = [policies.Step(s["lower"], s["upper"], s["change"]) for s in p["steps"]]
            decision = policies.step_scaling(obs, steps, cooldown)
            return Vote(policy, decision) if "change" in decision.numbers else None
        horizon = policies.horizon_steps(p["boot_delay_s"], p["step_s"])
        predicted = self.forecasts.predict(policy.id, reading, horizon, now)
        # policies stored before max_width_vms existed get its default
        confidence = policies.Confidence(
            p["max_mase"], p["max_width"], max_width_vms=p.get("max_width_vms", 1.0)
        )
        return Vote(policy, policies.predictive(obs, p["target"], predicted, confidence, cooldown))

    def _scheduled(
        self, session: Session, state: GroupState, policy: ScalingPolicy, now: float
    ) -> Vote | None:
        group = state.group
        actions = [
            policies.ScheduledAction(
                a["at"], a.get("min_size", group.min_size), a.get("max_size", group.max_size),
                a.get("desired"), frozenset(a["days"]),
            )
            for a in policy.params["actions"]
        ]  # fmt: skip
        decision = policies.scheduled(state.observation(now, 0.0), actions)
        since = decision.numbers.get("since")
        if since is None or since <= float(policy.state.get("applied_since", -math.inf)):
            return None  # an action votes once, at its time
        policy.state = {**policy.state, "applied_since": since}
        limits = (int(decision.numbers["min_size"]), int(decision.numbers["max_size"]))
        if limits != (group.min_size, group.max_size):
            _set_limits(session, group, policy, limits, decision.reason, now)
            decision = policies.scheduled(state.observation(now, 0.0), actions)  # held to the new limits
        return Vote(policy, decision)

    def evaluate_group(
        self, session: Session, group: ScalingGroup, enabled: list[ScalingPolicy], now: float
    ) -> ScalingActivity | None:
        """Decide the group's size from its ``enabled`` policies and act on it; the activity, if any."""
        if group.status != "active" or not enabled:
            return None
        state = group_state(session, group)
        votes = [v for p in enabled if (v := self.vote(session, state, p, now)) is not None]
        if not votes:
            return None
        winner = max(votes, key=lambda v: v.decision.desired)
        decision = winner.decision
        if decision.desired == group.desired:
            return None
        numbers: dict[str, Any] = {
            **decision.numbers,
            "votes": {v.policy.name: v.decision.desired for v in votes},
        }
        if decision.desired > group.desired:
            refusal = self._over_budget(session, state, winner, decision.desired - group.desired, now)
            if refusal is not None:
                return refusal
        reason = f"policy {winner.policy.name} ({winner.policy.kind}): {decision.reason}"
        return scale_to(session, group, decision.desired, reason, winner.policy.name, numbers)

    def _over_budget(
        self, session: Session, state: GroupState, winner: Vote, extra: int, now: float
    ) -> ScalingActivity | None:
        group = state.group
        flavor = session.get(Flavor, group.template["flavor_id"])
        shape = Shape(flavor.vcpus, flavor.ram_mb, flavor.disk_gb) if flavor is not None else Shape(1, 512)
        caps = [p.params["max_cost_per_hour"] for p in [winner.policy] if "max_cost_per_hour" in p.params]
        check = within_budget(
            session, group.tenant_id, [shape] * extra, min(caps) if caps else None,
            datetime.fromtimestamp(now, UTC),
        )  # fmt: skip
        if check.ok:
            return None
        last = state.last_action_at
        if last is not None and now - last < group.cooldown_s:
            return None  # refused (or acted) within the cooldown: not recorded again every round
        activity = ScalingActivity(
            id=new_id("sact"),
            group_id=group.id,
            tenant_id=group.tenant_id,
            action="scale_out",
            reason=f"policy {winner.policy.name} ({winner.policy.kind}) asked for "
            f"{group.desired + extra} VMs: {winner.decision.reason}",
            policy=winner.policy.name,
            numbers={
                **winner.decision.numbers,
                **check.numbers,
                "desired": group.desired,
                "asked": group.desired + extra,
            },
            started_at=datetime.fromtimestamp(now, UTC),
            finished_at=datetime.fromtimestamp(now, UTC),
            outcome="failed",
            detail=f"over budget: {check.reason}",
        )
        session.add(activity)
        session.flush()
        return activity


def _evaluate_one(ctx: Context, evaluator: Evaluator, group_id: str, when: float) -> int:
    with ctx.db.session() as s:
        group = s.get(ScalingGroup, group_id)
        if group is None:
            return 0
        enabled = list(
            s.scalars(
                select(ScalingPolicy)
                .where(ScalingPolicy.group_id == group_id, ScalingPolicy.enabled.is_(True))
                .order_by(ScalingPolicy.name)
            )
        )
        activity = evaluator.evaluate_group(s, group, enabled, when)
        if activity is None:
            return 0
        log.info("scaling group %s: %s (%s)", group.name, activity.action, activity.reason)
        wake_on_commit(s, ctx)
        return 1


def evaluate_all(ctx: Context, evaluator: Evaluator, now: float | None = None) -> int:
    """One round over every group with an enabled policy, each in its own transaction; how many acted."""
    when = now if now is not None else time.time()
    with ctx.db.read_session() as s:
        ids = list(
            s.scalars(select(ScalingPolicy.group_id).where(ScalingPolicy.enabled.is_(True)).distinct())
        )
    acted = 0
    for group_id in ids:
        try:
            acted += _evaluate_one(ctx, evaluator, group_id, when)
        except Exception:  # noqa: BLE001 - one group's failure (a concurrent change) must not stop the round
            log.exception("scaling group %s: policy evaluation failed", group_id)
    return acted

"""The scaling-group controller (leader only): health replacement and convergence, periodically,
and every ``autoscaling_evaluate_s`` the groups' scaling policies (``evaluate.py``).

Every ``autoscaling_reconcile_s``, each group without a scale task in flight is checked: a member
whose VM is gone or in ERROR, or down in a pool past the warm-up, is marked unhealthy and a
``replace`` activity starts the scale task; a group whose count is off its desired (a VM deleted
behind its back, a scale-out that was refused) gets a ``converge`` one, except while the last
activity failed less than the group's cooldown ago (a refused quota is not asked every round).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from novacron.autoscaling.evaluate import Evaluator, StoreMetrics, evaluate_all
from novacron.autoscaling.groups import request_scale, scale_in_flight
from novacron.autoscaling.members import GOING, check_health
from novacron.db.base import utcnow
from novacron.db.models import ScalingActivity, ScalingGroup, ScalingGroupMember
from novacron.tasks.controller import ControllerLoop, Job
from novacron.tasks.service import wake_on_commit

if TYPE_CHECKING:
    from novacron.context import Context

log = logging.getLogger(__name__)
AUTOSCALING_CONTROLLER = "novacron.autoscaling"


def _recently_failed(session: Session, group: ScalingGroup) -> bool:
    last = session.execute(
        select(ScalingActivity.outcome, ScalingActivity.finished_at)
        .where(ScalingActivity.group_id == group.id, ScalingActivity.finished_at.is_not(None))
        .order_by(ScalingActivity.finished_at.desc())
        .limit(1)
    ).first()
    if last is None or last.outcome != "failed":
        return False
    return bool(utcnow() - last.finished_at < timedelta(seconds=group.cooldown_s))


def reconcile_group(session: Session, group: ScalingGroup) -> str | None:
    """Start the scale task the group needs now, if any; the activity's action."""
    if scale_in_flight(session, group) is not None:
        return None
    unhealthy = check_health(session, group, utcnow())
    if unhealthy:
        reasons = "; ".join(f"{m.vm_id}: {m.health_reason}" for m in unhealthy)
        request_scale(session, group, "replace", f"replacing unhealthy members ({reasons})")
        return "replace"
    count = session.scalar(
        select(func.count())
        .select_from(ScalingGroupMember)
        .where(ScalingGroupMember.group_id == group.id, ScalingGroupMember.state.not_in(GOING))
    )
    off = count != group.desired or group.status == "deleting"
    if off and not _recently_failed(session, group):
        reason = f"{count} members for a desired count of {group.desired}"
        request_scale(session, group, "converge", reason, numbers={"members": count})
        return "converge"
    return None


class AutoscalingController:
    """Reconciles every scaling group each ``autoscaling_reconcile_s``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        tick = ctx.settings.autoscaling_reconcile_s
        self.evaluator = Evaluator(StoreMetrics(ctx))

        def every() -> float:  # the live configuration's, read each round
            return ctx.settings.autoscaling_evaluate_s

        jobs = [
            Job("reconcile", self.reconcile),
            Job("evaluate", self.evaluate, every_s=every),
            Job("forecasts", self.evaluator.forecasts.refit, every_s=every),
        ]
        self.loop = ControllerLoop("autoscaling controller", jobs, tick_s=tick)

    def evaluate(self) -> None:
        """One round of every group's scaling policies (``evaluate.py``)."""
        evaluate_all(self.ctx, self.evaluator)

    def reconcile(self) -> None:
        """One round over every group, each in its own transaction."""
        with self.ctx.db.read_session() as s:
            ids = list(s.scalars(select(ScalingGroup.id)))
        for group_id in ids:
            with self.ctx.db.session() as s:
                group = s.get(ScalingGroup, group_id)
                if group is None:
                    continue
                action = reconcile_group(s, group)
                if action is not None:
                    log.info("scaling group %s: %s", group.name, action)
                    wake_on_commit(s, self.ctx)

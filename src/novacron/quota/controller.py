"""The quota controller (leader only): opens and closes reservation windows, meters usage into the
ledger, and reconciles counters (reporting drift; ``novacron quota reconcile --repair`` repairs)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from novacron import events
from novacron.quota import billing, reconcile, reservations
from novacron.tasks.controller import ControllerLoop, Job

if TYPE_CHECKING:
    from novacron.context import Context

log = logging.getLogger(__name__)
QUOTA_CONTROLLER = "novacron.quota"


class QuotaController:
    """Every ``reservation_tick_s``: reservation windows; metering and reconciliation on their own
    intervals."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        settings = ctx.settings
        self.loop = ControllerLoop(
            "quota controller",
            [
                Job("reservations", self._reservations),
                Job("metering", self._meter, every_s=lambda: ctx.settings.metering_interval_s),
                Job(
                    "reconciliation", self._reconcile, every_s=lambda: ctx.settings.quota_reconcile_interval_s
                ),
            ],
            tick_s=settings.reservation_tick_s,
        )

    def _reservations(self) -> None:
        with self.ctx.db.session() as s:
            done = reservations.tick(s)
            if done["activated"] or done["expired"]:
                log.info("reservations: %s", done)

    def _meter(self) -> None:
        with self.ctx.db.session() as s:
            billing.meter(s)

    def _reconcile(self) -> None:
        with self.ctx.db.session() as s:
            found = reconcile.reconcile(s, repair=False)
            if found["drift"]:
                log.warning("quota drift found (repair with 'novacron quota reconcile --repair'): %s", found)
                events.publish(
                    s,
                    "quota.drift",
                    "quota",
                    "system",
                    tenant_id=None,
                    project_id=None,
                    orphans=len(found["orphan_charges"]),
                    missing=len(found["missing_charges"]),
                )

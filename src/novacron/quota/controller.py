"""The quota controller (leader only): opens and closes reservation windows, meters usage into the
ledger, and reconciles counters (reporting drift; ``novacron quota reconcile --repair`` repairs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from novacron import events
from novacron.quota import billing, reconcile, reservations

if TYPE_CHECKING:
    from novacron.context import Context

log = logging.getLogger(__name__)
QUOTA_CONTROLLER = "novacron.quota"


class QuotaController:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._stop = asyncio.Event()

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

    async def run_forever(self) -> None:
        settings = self.ctx.settings
        next_meter = next_reconcile = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            jobs = [self._reservations]
            if now >= next_meter:
                jobs.append(self._meter)
                next_meter = now + settings.metering_interval_s
            if now >= next_reconcile:
                jobs.append(self._reconcile)
                next_reconcile = now + settings.quota_reconcile_interval_s
            for job in jobs:
                try:
                    await asyncio.to_thread(job)
                except Exception:  # noqa: BLE001 - one failed round must not stop the controller
                    log.exception("quota controller: %s failed", job.__name__)
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the controller's cancel
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.reservation_tick_s):
                    await self._stop.wait()

    async def stop(self) -> None:
        self._stop.set()

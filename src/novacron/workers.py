"""The controllers and the embedded node agent run on their own thread and event loop.

Their database work blocks (SQLite waits for the write lock), and the API's event
loop must never wait on it: a request holding the lock commits in a thread that
the API loop schedules, so a blocked API loop would deadlock with it.

The embedded agent runs on every replica that has one (agents are per host). Each
controller runs only while this replica leads for it (``tasks/leader.py``): on SQLite
that is always; on PostgreSQL while this process holds the controller's advisory lock.
A controller starts when leadership is won and is stopped the moment it is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from novacron.context import Context
from novacron.tasks.controller import ControllerLoop
from novacron.tasks.leader import Leadership, leadership_for

log = logging.getLogger(__name__)

TASKS_CONTROLLER = "novacron.tasks"
HA_CONTROLLER = "novacron.ha"
BACKUP_CONTROLLER = "novacron.backups"


@dataclass
class Controller:
    """Something that must run once in the cluster."""

    name: str
    run: Callable[[], Coroutine[Any, Any, None]]
    stop: Callable[[], Awaitable[None]]
    #: told True once leading proves no other process runs it (after the old leader's detection
    #: window), False the moment leadership is lost
    set_exclusive: Callable[[bool], None] | None = None

    @classmethod
    def of_loop(cls, name: str, loop: ControllerLoop) -> Controller:
        """A controller that is a ``ControllerLoop`` (the HA monitor, backup scheduler, quota controller)."""
        return cls(name, loop.run_forever, loop.stop)


def is_leader(ctx: Context, name: str = TASKS_CONTROLLER) -> bool:
    leadership = ctx.leaders.get(name)
    return leadership is not None and leadership.is_leader


class BackgroundWorkers:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="novacron-workers", daemon=True)
        self._started: Future[None] = Future()
        self.controllers: list[Controller] = []
        self._stopping = False
        tasks = ctx.tasks
        if tasks is not None:

            def tasks_exclusive(value: bool) -> None:
                tasks.exclusive = value
                if value:
                    tasks.wake()

            self.controllers.append(
                Controller(TASKS_CONTROLLER, tasks.run_forever, tasks.stop, tasks_exclusive)
            )
        if ctx.tasks is not None:  # its restarts are tasks
            from novacron.compute.ha import HAMonitor

            monitor = HAMonitor(ctx)
            self.controllers.append(Controller.of_loop(HA_CONTROLLER, monitor.loop))
            from novacron.backup.scheduler import BackupScheduler

            backups = BackupScheduler(ctx)
            self.controllers.append(Controller.of_loop(BACKUP_CONTROLLER, backups.loop))
            from novacron.lbaas.acme_service import RENEWAL_CONTROLLER, RenewalController

            renewals = RenewalController(ctx)
            self.controllers.append(Controller.of_loop(RENEWAL_CONTROLLER, renewals.loop))
            from novacron.autoscaling.reconcile import AUTOSCALING_CONTROLLER, AutoscalingController

            scaling = AutoscalingController(ctx)
            self.controllers.append(Controller.of_loop(AUTOSCALING_CONTROLLER, scaling.loop))
        from novacron.quota.controller import QUOTA_CONTROLLER, QuotaController

        quota = QuotaController(ctx)
        self.controllers.append(Controller.of_loop(QUOTA_CONTROLLER, quota.loop))
        from novacron.webhooks.dispatch import WEBHOOK_CONTROLLER, WebhookDispatcher

        webhooks = WebhookDispatcher(ctx)
        self.controllers.append(Controller.of_loop(WEBHOOK_CONTROLLER, webhooks.loop))
        from novacron.monitoring.slo.runner import PROBE_CONTROLLER, ProbeRunner

        probes = ProbeRunner(ctx)
        self.controllers.append(Controller.of_loop(PROBE_CONTROLLER, probes.loop))
        from novacron.compliance.service import COMPLIANCE_CONTROLLER, ComplianceController

        compliance = ComplianceController(ctx)
        self.controllers.append(Controller.of_loop(COMPLIANCE_CONTROLLER, compliance.loop))
        self.leaders: dict[str, Leadership] = {
            c.name: leadership_for(ctx.settings.database_url, c.name) for c in self.controllers
        }
        ctx.leaders = self.leaders

    def start(self, timeout_s: float = 60.0) -> None:
        self._thread.start()
        self._started.result(timeout_s)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        loops: list[asyncio.Task[None]] = []
        try:
            if self.ctx.agent is not None:
                # registers and reports once before serving, so states reflect QEMU after a restart
                await self.ctx.agent.start()
                loops.append(asyncio.create_task(self.ctx.agent.run_forever(), name="agent"))
            if self.ctx.tasks is not None:
                self.ctx.tasks.bind_loop(self.loop)
            for controller in self.controllers:
                leadership = self.leaders[controller.name]
                loops.append(asyncio.create_task(leadership.run(), name=f"leader:{controller.name}"))
                loops.append(
                    asyncio.create_task(self._supervise(controller, leadership), name=controller.name)
                )
        except BaseException as exc:
            self._started.set_exception(exc)
            raise
        self._started.set_result(None)
        await asyncio.gather(*loops, return_exceptions=True)

    async def _supervise(self, controller: Controller, leadership: Leadership) -> None:
        """Run the controller exactly while this process leads for it."""
        if controller.set_exclusive is not None:
            set_exclusive = controller.set_exclusive
            # synchronous, so the controller stops trusting its exclusivity before anything else runs
            leadership.on_change(lambda leader: None if leader else set_exclusive(False))
        while True:
            await leadership.wait_until_leader()
            log.info("controller %s starts: this replica leads", controller.name)
            run = asyncio.create_task(controller.run(), name=f"{controller.name}:run")
            lost = asyncio.create_task(leadership.wait_until_lost(), name=f"{controller.name}:lost")
            grant = asyncio.create_task(self._grant_exclusive(controller, leadership))
            try:
                done, _ = await asyncio.wait({run, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                grant.cancel()
                lost.cancel()
                if controller.set_exclusive is not None:
                    controller.set_exclusive(False)
                if not run.done():
                    with contextlib.suppress(Exception):
                        await controller.stop()
                    run.cancel()
                await asyncio.gather(run, grant, lost, return_exceptions=True)
            if self._stopping:
                return
            if run in done:
                exc = run.exception() if not run.cancelled() else None
                log.error("controller %s ended while leading (%r); restarting it", controller.name, exc)
                await asyncio.sleep(1.0)
            else:
                log.warning("controller %s stopped: this replica no longer leads", controller.name)

    async def _grant_exclusive(self, controller: Controller, leadership: Leadership) -> None:
        if controller.set_exclusive is None or not leadership.exclusive:
            return
        # a leader that lost its lock without dying stops within loss_detection_s; after that,
        # holding the lock proves that no other process runs this controller
        await asyncio.sleep(leadership.loss_detection_s)
        if leadership.is_leader:
            log.info("controller %s: exclusive; leases of other runners are void", controller.name)
            controller.set_exclusive(True)

    def stop(self, timeout_s: float = 30.0) -> None:
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            self._stopping = True
            if self.ctx.agent is not None:
                self.ctx.agent.stop()
            if self.ctx.tasks is not None:
                await self.ctx.tasks.stop()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout_s)
        self._thread.join(timeout_s)

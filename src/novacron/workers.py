"""The controllers and the embedded node agent run on their own thread and event loop.

Their database work blocks (SQLite waits for the write lock), and the API's event
loop must never wait on it: a request holding the lock commits in a thread that
the API loop schedules, so a blocked API loop would deadlock with it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future

from novacron.context import Context

log = logging.getLogger(__name__)


class BackgroundWorkers:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="novacron-workers", daemon=True)
        self._started: Future[None] = Future()

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
                loops.append(asyncio.create_task(self.ctx.tasks.run_forever(), name="tasks"))
        except BaseException as exc:
            self._started.set_exception(exc)
            raise
        self._started.set_result(None)
        await asyncio.gather(*loops, return_exceptions=True)

    def stop(self, timeout_s: float = 30.0) -> None:
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            if self.ctx.agent is not None:
                self.ctx.agent.stop()
            if self.ctx.tasks is not None:
                await self.ctx.tasks.stop()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout_s)
        self._thread.join(timeout_s)

"""Applying the live configuration in a running process, on every replica.

``LiveConfig`` keeps the start-up ``Settings`` (``base``) and puts ``base`` overlaid by the newest
document in ``ctx.settings`` (and the token service's): the controllers and services read
``ctx.settings`` when they act, never a copy taken at start, so the swap is the whole of
"applied". The swap is one reference assignment: a reader sees the old settings or the new,
never a mix.

Every replica learns of a new version through the event bus: ``config.changed`` is an event, and
its commit wakes this process's bus (here) or its ``LISTEN`` thread (elsewhere, on PostgreSQL);
``follow`` then reads the newest version number (one indexed row) and applies it when it moved.
A lost notification costs at most ``eventbus.FALLBACK_POLL_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from anyio import to_thread

from novacron import eventbus
from novacron.configsvc import schema
from novacron.configsvc.service import latest

if TYPE_CHECKING:
    from novacron.config import Settings
    from novacron.context import Context

log = logging.getLogger(__name__)


class LiveConfig:
    """The version of the live configuration this process runs with, and its application."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.base: Settings = ctx.settings
        self.version = 0
        self.document: dict[str, Any] = {}
        self._lock = threading.Lock()
        #: how many versions this process applied (tests, /healthz readers)
        self.applied = 0

    def apply(self, version: int, document: dict[str, Any]) -> None:
        """Run with ``document`` from now on (an older version than the one in force is ignored:
        the commit hook and the follower may deliver one change twice, in either order)."""
        with self._lock:
            if version <= self.version:
                return
            settings = schema.overlay(self.base, document)
            self.ctx.settings = settings
            self.ctx.tokens.settings = settings
            if self.ctx.trace_store is not None:  # its pruning reads these two, set at start
                self.ctx.trace_store.retention = timedelta(hours=settings.trace_retention_hours)
                self.ctx.trace_store.max_spans = settings.trace_max_spans
            self.version, self.document = version, dict(document)
            self.applied += 1
        log.info("live configuration version %d applied", version)

    def refresh(self) -> None:
        """Apply the newest stored version if it is not the one in force."""
        with self.ctx.db.read_session() as s:
            row = latest(s)
            if row is not None and row.version > self.version:
                self.apply(row.version, dict(row.document))

    async def follow(self) -> None:
        """Apply each new version as the bus announces commits (until cancelled)."""
        while True:
            with eventbus.BUS.waiter() as woken:
                try:
                    await to_thread.run_sync(self.refresh)
                except Exception:  # noqa: BLE001 - the database restarts; applying must outlive it
                    log.exception("live configuration: reading the newest version failed")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(eventbus.FALLBACK_POLL_S):
                        await woken.wait()


async def start(ctx: Context) -> asyncio.Task[None]:
    """The process's live configuration, with the newest stored version applied before it serves
    (a restarted replica runs with what operators set), and its follower running."""
    if ctx.live_config is None:
        ctx.live_config = LiveConfig(ctx)
    live = ctx.live_config
    await to_thread.run_sync(live.refresh)
    return asyncio.create_task(live.follow(), name="live-config")

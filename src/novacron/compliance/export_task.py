"""The durable task of a tenant's GDPR export: the zip written table by table into
``<state_dir>/exports/<task id>.zip`` (0600), the task's progress updated as tables are written.

A runner that dies mid-way leaves a partial file; the step runs again from the start and replaces
it (written to a temporary name, renamed when complete). ``GET /v1/tenants/{id}/exports/{task}``
serves it once the task succeeded.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from novacron.compliance.gdpr import exported, write_export
from novacron.db.models import Task, Tenant
from novacron.tasks.runner import StepFailed, TaskHandler

if TYPE_CHECKING:
    from novacron.context import Context


def export_path(settings: Any, task_id: str) -> Path:
    return Path(settings.state_dir) / "exports" / f"{task_id}.zip"


def _write(ctx: Context, task_id: str, tenant_id: str, by: str) -> None:
    path = export_path(ctx.settings, task_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_suffix(".part")

    def progress(percent: int) -> None:
        with ctx.db.session() as w:
            w.execute(update(Task).where(Task.id == task_id).values(progress=percent))

    # a read transaction: progress is written beside it (SQLite has one writer)
    with ctx.db.read_session() as s:
        tenant = s.get(Tenant, tenant_id)
        if tenant is None:
            raise StepFailed(f"tenant {tenant_id} no longer exists")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            manifest = write_export(s, tenant, by, out, progress)
    os.replace(partial, path)
    with ctx.db.session() as w:
        exported(w, tenant_id, manifest)


class TenantExport(TaskHandler):
    kind = "tenant.export"
    steps = ["export"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        await asyncio.to_thread(
            _write, ctx, task.id, task.resource_id, str((task.params or {}).get("by", ""))
        )


HANDLERS = [TenantExport()]

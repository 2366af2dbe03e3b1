"""Copy into a running instance's disk what it still reads from its backing file (QEMU ``block-stream``).

An instant restore boots a VM from an overlay backed by the backup (``novacron.backup.instant``);
this job copies every block the overlay lacks into it and drops the backing file, at a rate the
operator may cap. Resumable: a job already running is followed, not started again.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from novacron.virt.base import DriverError, Progress

if TYPE_CHECKING:
    from novacron.virt.qemu import QemuDriver

JOB = "restore-vda"
DEVICE = "vda"
POLL_S = 0.5


async def stream(d: QemuDriver, instance_id: str, speed: int, report: Progress | None) -> None:
    """Run (or follow) the stream job to its end, reporting its progress."""
    jobs = {j["device"]: j for j in await d.qmp(instance_id, "query-block-jobs")}
    if JOB not in jobs:
        args: dict[str, Any] = {"job-id": JOB, "device": DEVICE, "auto-dismiss": False}
        if speed:
            args["speed"] = speed
        await d.qmp(instance_id, "block-stream", args)
    while True:
        job = next((j for j in await d.qmp(instance_id, "query-block-jobs") if j["device"] == JOB), None)
        if job is None:
            raise DriverError("the copy job of the restore is gone (the VM was stopped?)")
        if job.get("status") == "concluded":
            await d.qmp(instance_id, "job-dismiss", {"id": JOB})
            if job.get("error"):
                raise DriverError(f"copying the backup into the disk failed: {job['error']}")
            return
        if report is not None:
            total = max(int(job.get("len") or 0), 1)
            done = int(job.get("offset") or 0)
            await report(
                {"phase": "stream", "bytes_done": done, "bytes_total": total, "fraction": done / total}
            )
        await asyncio.sleep(POLL_S)

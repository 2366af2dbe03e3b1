"""VM snapshots on the SIMULATED driver (the seam scale runs use; no disk is snapshotted): a
snapshot records the simulated disk counter, a revert puts it back, a delete forgets it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from novacron.virt.base import DriverError, InstanceSpec
from novacron.virt.simulated import SimulatedDriver


def test_simulated_snapshots_take_revert_and_delete(tmp_path: Path) -> None:
    async def run() -> None:
        d = SimulatedDriver(state_dir=tmp_path)
        spec = InstanceSpec(id="a", name="a", vcpus=1, ram_mb=256, disk_gb=1, image_path=Path("/img"),
                            image_format="qcow2", mac="52:54:00:00:00:01")  # fmt: skip
        await d.launch(spec)
        d._get("a").disk_written = 100
        taken = await d.create_snapshot("a", "s1", memory=True, quiesce=True)
        assert (
            taken["consistency"] == "memory" and taken["simulated"] and taken["vm_state_bytes"] == 256 << 20
        )
        d._get("a").disk_written = 500
        reverted = await d.revert_snapshot("a", "s1")
        assert reverted["memory"] and not reverted["restarted"] and d._get("a").disk_written == 100
        await d.delete_snapshot("a", "s1")
        await d.delete_snapshot("a", "s1")  # idempotent
        with pytest.raises(DriverError, match="no snapshot s1"):
            await d.revert_snapshot("a", "s1")

    asyncio.run(run())

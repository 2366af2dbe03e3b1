"""The simulated driver: same state machine as QEMU, counters that grow, configurable size."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from novacron.virt import make_driver
from novacron.virt.base import DriverError, InstanceSpec, PowerState
from novacron.virt.simulated import SimulatedDriver


def spec(i: str) -> InstanceSpec:
    return InstanceSpec(
        id=i,
        name=f"n-{i}",
        vcpus=2,
        ram_mb=512,
        disk_gb=10,
        image_path=Path("/img/x.qcow2"),
        image_format="qcow2",
        mac="52:54:00:00:00:01",
        user_data="hello",
    )


def test_lifecycle_and_counters(tmp_path: Path) -> None:
    async def run() -> None:
        d = SimulatedDriver(cpus=8, ram_mb=32768, state_dir=tmp_path)
        assert d.host_facts().cpus == 8 and d.host_facts().ram_mb == 32768
        assert (await d.observe("a")).power_state == PowerState.ABSENT
        await d.prepare(spec("a"))
        assert (await d.observe("a")).power_state == PowerState.SHUTOFF
        await d.launch(spec("a"))
        await d.launch(spec("a"))
        obs = await d.observe("a")
        assert obs.power_state == PowerState.RUNNING and obs.pid
        s1 = await d.sample("a")
        await asyncio.sleep(0.05)
        s2 = await d.sample("a")
        assert s1 and s2 and s2.cpu_time_s > s1.cpu_time_s and s2.disk_write_bytes >= s1.disk_write_bytes
        # the guest's CPU (vCPU threads) grows and stays below the emulator process's
        assert s1.vcpu_time_s < s2.vcpu_time_s < s2.cpu_time_s
        # memory as the guest sees it: within its RAM, free <= available <= total
        total, available = s2.guest_mem_total_bytes, s2.guest_mem_available_bytes
        free = s2.guest_mem_free_bytes
        assert total and available and free and free <= available <= total <= spec("a").ram_mb << 20
        await d.pause("a")
        assert (await d.observe("a")).power_state == PowerState.PAUSED
        await d.resume("a")
        with pytest.raises(DriverError):
            await d.snapshot_disk("a", tmp_path / "s.qcow2")
        assert "user-data: hello" in d.console_log("a").read_text()
        assert await d.shutdown("a", 1) is True
        assert await d.sample("a") is None
        assert (await d.snapshot_disk("a", tmp_path / "s.qcow2")).format == "qcow2"
        with pytest.raises(DriverError):
            await d.pause("a")
        await d.destroy("a")
        await d.destroy("a")
        assert d.list_instances() == []

    asyncio.run(run())


def test_thousand_instances_are_cheap() -> None:
    async def run() -> None:
        d = SimulatedDriver()
        for n in range(1000):
            await d.launch(spec(f"vm{n}"))
        assert len(d.list_instances()) == 1000
        states = {(await d.observe(i)).power_state for i in d.list_instances()}
        assert states == {PowerState.RUNNING}

    asyncio.run(run())


def test_factory(tmp_path: Path) -> None:
    from novacron.config import Settings

    settings = Settings(state_dir=tmp_path, database_url="sqlite://")
    assert make_driver("simulated", settings).name == "simulated"
    qemu = make_driver("qemu", Settings(state_dir=tmp_path, database_url="sqlite://", accelerator="tcg"))
    assert qemu.name == "qemu" and qemu.host_facts().accelerator == "tcg"
    with pytest.raises(DriverError):
        make_driver("xen", settings)

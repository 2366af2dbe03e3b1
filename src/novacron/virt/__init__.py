"""Hypervisor drivers: ``qemu`` (real QEMU over QMP) and ``simulated`` (scale simulations)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from novacron.virt.base import ComputeDriver, DriverError

if TYPE_CHECKING:
    from novacron.config import Settings

DRIVERS = ("qemu", "simulated")


def make_driver(name: str, settings: Settings, **kwargs: Any) -> ComputeDriver:
    """The compute driver ``name`` configured from ``settings`` (extra kwargs go to its constructor)."""
    if name == "qemu":
        from novacron.virt.qemu import QemuDriver

        return QemuDriver(
            instances_dir=settings.instances_dir,
            run_dir=settings.run_dir,
            accelerator=settings.accelerator,
            shared_dir=settings.shared_storage_dir,
            sriov_vfs=settings.sriov_vfs,
            vhost_user_dir=settings.vhost_user_dir,
            **kwargs,
        )
    if name == "simulated":
        from novacron.virt.simulated import SimulatedDriver

        kwargs.setdefault("state_dir", settings.state_dir / "sim")
        return SimulatedDriver(**kwargs)
    raise DriverError(f"unknown compute driver {name!r}; use one of {', '.join(DRIVERS)}")

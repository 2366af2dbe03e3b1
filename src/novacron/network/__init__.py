"""Tenant networks: the control plane (networks, subnets, IPAM, ports, routers, floating IPs,
security groups, QoS) and the per-host datapath behind ``model.NetworkBackend``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from novacron.config import Settings
    from novacron.network.model import NetworkBackend

BACKENDS = ("linux", "simulated", "none")


def make_backend(settings: Settings, scope: str = "") -> NetworkBackend | None:
    """The host's network backend (None for ``none``); ``scope`` tags its namespaces."""
    if settings.network_backend == "none":
        return None
    if settings.network_backend == "linux":
        from novacron.network.linux import LinuxBackend

        return LinuxBackend.for_host(settings.state_dir / "network", settings.underlay_ip or None, scope)
    if settings.network_backend == "simulated":
        from novacron.network.simulated import SimulatedBackend

        return SimulatedBackend(scope)
    raise ValueError(f"NOVACRON_NETWORK_BACKEND must be one of {', '.join(BACKENDS)}")

"""The ``linux`` network backend: bridges, VXLAN, dnsmasq, routers, nftables firewall, tc QoS."""

from novacron.network.linux.backend import LinuxBackend

__all__ = ["LinuxBackend"]

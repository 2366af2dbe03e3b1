"""The ``linux`` network backend: bridges, VXLAN, veths and namespaces (pyroute2), nftables, dnsmasq."""

from novacron.network.linux.backend import LinuxBackend

__all__ = ["LinuxBackend"]

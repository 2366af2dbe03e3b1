"""Tenant networks: the control plane (networks, subnets, IPAM, ports, routers, floating IPs,
security groups, QoS) and the per-host datapath behind ``model.NetworkBackend``."""

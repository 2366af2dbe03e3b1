"""The ``linux`` network backend: bridges, VXLAN, dnsmasq, routers, nftables firewall, tc QoS."""

"""Device and namespace names: deterministic from ids, at most 15 characters (IFNAMSIZ - 1).

Devices live in the host's own network namespace, so their names need only be unique per host.
Named namespaces are global to the kernel (``/run/netns``), and in tests several "hosts" share
one kernel: their names carry a tag of the host (``scope``) so one host never touches another's.
"""

from __future__ import annotations

import hashlib

#: prefixes of everything the backend creates: what it may remove when it is no longer wanted
BRIDGE, VXLAN, DHCP_VETH, DHCP_PEER, ROUTER_VETH, GATEWAY_VETH = "ncb", "ncx", "ncd", "nce", "ncq", "ncg"
LB_VETH = "ncl"
#: a load balancer's leg inside its namespace (an amphora's ``vrrp_interface``)
LB_INNER = "lb0"


def h(*parts: str, n: int = 8) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:n]


def bridge(network_id: str) -> str:
    return BRIDGE + h(network_id)


def vxlan(network_id: str) -> str:
    return VXLAN + h(network_id)


def dhcp_veth(network_id: str) -> str:
    return DHCP_VETH + h(network_id)


def dhcp_peer(network_id: str) -> str:
    return DHCP_PEER + h(network_id)


def router_veth(router_id: str, network_id: str) -> str:
    return ROUTER_VETH + h(router_id, network_id)


def router_inner(network_id: str) -> str:
    """The router's interface on a network, inside the router's namespace."""
    return "qr-" + h(network_id)


def gateway_veth(router_id: str) -> str:
    return GATEWAY_VETH + h(router_id)


GATEWAY_INNER = "qg-ext"


def ns_prefix(scope: str) -> str:
    return "nc" + h(scope, n=4) + "-"


def dhcp_ns(scope: str, network_id: str) -> str:
    return ns_prefix(scope) + "d" + h(network_id)


def router_ns(scope: str, router_id: str) -> str:
    return ns_prefix(scope) + "r" + h(router_id)


def lb_ns(scope: str, leg_id: str) -> str:
    """The namespace of a load balancer's (or an amphora's) leg: HAProxy and keepalived run in it."""
    return ns_prefix(scope) + "l" + h(leg_id)


def lb_veth(leg_id: str) -> str:
    """The host end of a load balancer's leg, on its network's bridge (the VIP port's ``device``)."""
    return LB_VETH + h(leg_id)

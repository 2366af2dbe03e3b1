"""A router: a namespace with a leg on each of its tenant networks' bridges and one on the external
network, forwarding between them, with nftables SNAT (masquerade) out and DNAT for floating IPs.

Only the tenant's own networks get a leg, so two tenants' networks have no path between them
through a router; from outside, only established flows and floating IPs come in.
"""

from __future__ import annotations

from novacron.network.linux import links, names
from novacron.network.model import NetworkSpec, RouterSpec

TABLE = "novacron_router"


def ruleset(router: RouterSpec) -> str:
    """The router's whole nftables state, replaced in one transaction."""
    ext = names.GATEWAY_INNER
    pre, post = [], []
    if router.external_ip:
        for fip in router.floating_ips:
            pre.append(f"ip daddr {fip.external_ip} dnat to {fip.internal_ip}")
            post.append(f'ip saddr {fip.internal_ip} oifname "{ext}" snat to {fip.external_ip}')
        if router.snat:
            post.append(f'oifname "{ext}" snat to {router.external_ip}')
    lines = [
        f"table ip {TABLE}",
        f"delete table ip {TABLE}",
        f"table ip {TABLE} {{",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        *(f"    {r}" for r in pre),
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        *(f"    {r}" for r in post),
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        "    ct state established,related accept",
        "    ct status dnat accept",
        # nothing from outside is routed in except replies and floating IPs
        f'    iifname "{ext}" drop',
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def ensure(scope: str, router: RouterSpec, networks: dict[str, NetworkSpec]) -> None:
    ns = names.router_ns(scope, router.id)
    links.ensure_ns(ns)
    wanted_inner: set[str] = {"lo"}
    with links.route() as ipr:
        legs: list[tuple[str, str, NetworkSpec, list[str]]] = []
        for itf in router.interfaces:
            net = networks.get(itf.network_id)
            if net is None:
                raise links.NetError(f"router {router.id}: network {itf.network_id} is not on this host")
            legs.append(
                (
                    names.router_veth(router.id, net.id),
                    names.router_inner(net.id),
                    net,
                    [f"{itf.ip}/{itf.prefix_len}"],
                )
            )
        if router.external_network_id and router.external_ip:
            ext = networks.get(router.external_network_id)
            if ext is None:
                raise links.NetError(
                    f"router {router.id}: external network {router.external_network_id} is not on this host"
                )
            # floating IPs are extra addresses of the external leg: it answers ARP for them
            addrs = [f"{router.external_ip}/{router.external_prefix_len or 32}"]
            addrs += [f"{f.external_ip}/32" for f in router.floating_ips]
            legs.append((names.gateway_veth(router.id), names.GATEWAY_INNER, ext, addrs))
        for outer, inner, net, _ in legs:
            links.ensure_veth_into(ipr, outer, inner, ns)
            bridge = links.index(ipr, names.bridge(net.id))
            if bridge is None:
                raise links.NetError(f"router {router.id}: network {net.id} has no bridge on this host")
            links.ensure_port_link(ipr, outer, bridge, net.mtu, link_kind="veth")
    with links.route(ns) as inner_ipr:
        for _, inner, net, addrs in legs:
            inner_ipr.link("set", index=links.index(inner_ipr, inner), mtu=net.mtu)
            links.sync_addresses(inner_ipr, inner, addrs)
            wanted_inner.add(inner)
        for name in links.names(inner_ipr):
            if name not in wanted_inner:
                links.delete(inner_ipr, name)
        links.ensure_default_route(inner_ipr, router.external_gateway if router.external_ip else None)
    links.in_ns(ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    links.nft_apply(ruleset(router), ns)


def remove_ns_named(ns: str) -> None:
    if ns in links.list_ns(ns):
        # deleting the inner ends takes the veth pairs with them now, not when the kernel gets
        # round to destroying the namespace
        with links.route(ns) as inner:
            for name in links.names(inner):
                if name != "lo":
                    links.delete(inner, name)
    links.remove_ns(ns)

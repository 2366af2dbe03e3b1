"""``LinuxBackend``: one host's datapath from the kernel's own parts.

Per network a bridge, joined to the other hosts that have the network by a VXLAN device (no
learning, no multicast: one all-zero FDB entry per peer VTEP, so broadcasts are replicated to
each peer and unicast floods likewise until the bridge has learnt the MAC); a provider network's
bridge has a physical interface instead. Ports are taps on their network's bridge; their firewall
and shaping are applied for all the host's ports at once (nftables and tc are replaced wholesale).
DHCP/DNS, routers and load balancers' legs live in namespaces (dhcp.py, router.py, lbns.py).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from novacron.network import wire
from novacron.network.linux import dhcp, lbns, linkbatch, links, names, router
from novacron.network.model import (
    AddressSet,
    LoadBalancerLeg,
    NetworkBackend,
    NetworkSpec,
    PortSpec,
    RouterSpec,
)


class PortPolicy(Protocol):
    """Host-wide port policy (firewall, shaping): made to match the ports given, as a whole."""

    def apply(self, ports: Sequence[PortSpec], address_sets: Mapping[str, AddressSet]) -> None: ...

    def sets_changed(self, ports: Sequence[PortSpec], address_sets: Mapping[str, AddressSet]) -> None:
        """Only the remote address sets changed since ``apply`` (the ports are the same)."""

    def clear(self) -> None: ...


class LinuxBackend(NetworkBackend):
    """The host's datapath from bridges, VXLAN, taps, namespaces, nftables and tc."""

    name = "linux"

    def __init__(
        self,
        state_dir: Path,
        underlay_ip: str | None,
        scope: str = "",
        policies: Sequence[PortPolicy] = (),
    ) -> None:
        """``scope`` tags the namespaces of this host (hosts sharing a kernel pass different ones);
        ``policies`` are applied to every port of the host after each change of its ports."""
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.underlay_ip = underlay_ip
        self.scope = scope
        self.policies = tuple(policies)
        self.dnsmasq = dhcp.Dnsmasq(self.state_dir, scope)
        self._lock = threading.RLock()
        self._batch = 0
        self._dirty = False
        self._sets_dirty = False
        self._shared: Any = None
        self._ports_file = self.state_dir / "ports.json"
        #: the device group this backend deletes its ports through (linkbatch.delete)
        self._group = linkbatch.group_of(str(self.state_dir))
        self._ports: dict[str, PortSpec] = self._load_ports()
        self._sets_file = self.state_dir / "address_sets.json"
        #: the remote groups' addresses the ports' rules refer to, as the last sync gave them
        self._sets: dict[str, AddressSet] = self._load_sets()
        #: the load balancers' legs as last ensured, with their network's MTU (``_ensure_legs``)
        self._legs: dict[str, tuple[LoadBalancerLeg, int]] = {}
        #: the networks whose bridges this backend made: what ``release`` may remove
        self._networks_file = self.state_dir / "networks.json"

    @classmethod
    def for_host(cls, state_dir: Path, underlay_ip: str | None, scope: str = "") -> LinuxBackend:
        """The backend as an agent runs it: with the port firewall and the QoS shaper."""
        from novacron.network.linux.firewall import Firewall
        from novacron.network.linux.qos import Shaper

        state_dir = Path(state_dir)
        return cls(
            state_dir,
            underlay_ip,
            scope,
            (Firewall(None, state_dir / "firewall"), Shaper(None, state_dir / "qos")),
        )

    # ---- networks ----------------------------------------------------------------------------

    def ensure_network(self, network: NetworkSpec, peers: tuple[str, ...]) -> None:
        with self._lock, self._route() as ipr:
            br = links.ensure_bridge(ipr, names.bridge(network.id))
            if network.external:
                if not network.physical_interface:
                    raise links.NetError(f"external network {network.id} names no physical interface")
                links.ensure_port_link(ipr, network.physical_interface, br, network.mtu, link_kind="phys")
                return
            others = tuple(p for p in peers if p != self.underlay_ip)
            if not self.underlay_ip and not others:
                # a single host (all-in-one): the network needs no tunnel until another host has it
                links.delete(ipr, names.vxlan(network.id))
                return
            if not self.underlay_ip:
                raise links.NetError(
                    "this host has no underlay address (NOVACRON_UNDERLAY_IP): it cannot join VXLAN networks"
                )
            vx = links.ensure_vxlan(
                ipr, names.vxlan(network.id), network.vni, self.underlay_ip, network.mtu, br
            )
            links.sync_flood_entries(ipr, vx, names.vxlan(network.id), others)

    # ---- ports -------------------------------------------------------------------------------

    def ensure_port(self, port: PortSpec, network: NetworkSpec) -> None:
        if len(port.device) > 15:
            raise links.NetError(f"port {port.id}: device name {port.device!r} is longer than 15 characters")
        with self._lock:
            if port.vnic_type == "normal":
                with self._route() as ipr:
                    br = links.index(ipr, names.bridge(network.id))
                    if br is None:
                        raise links.NetError(f"port {port.id}: no bridge of network {network.id} here")
                    links.ensure_port_link(ipr, port.device, br, network.mtu)
            self._remember(port)

    def _remember(self, port: PortSpec) -> None:
        if self._ports.get(port.id) != port:
            self._ports[port.id] = port
            self._changed()

    def remove_port(self, port_id: str) -> None:
        with self._lock:
            port = self._ports.pop(port_id, None)
            if port is None:
                return
            with self._route() as ipr:
                links.delete(ipr, port.device)
            self._changed()

    # ---- DHCP and routers --------------------------------------------------------------------

    def ensure_dhcp(self, network: NetworkSpec, ports: tuple[PortSpec, ...]) -> None:
        with self._lock, self._route() as ipr:
            br = links.index(ipr, names.bridge(network.id))
            if br is None:
                raise links.NetError(f"DHCP of network {network.id}: no bridge on this host")
        self.dnsmasq.ensure(network, ports, br)

    def ensure_router(self, router_spec: RouterSpec, networks: tuple[NetworkSpec, ...]) -> None:
        with self._lock:
            router.ensure(self.scope, router_spec, {n.id: n for n in networks})

    # ---- the whole host ----------------------------------------------------------------------

    def sync(self, state: wire.HostState) -> dict[str, int]:
        """Make the host match ``state`` exactly: what it lists is ensured, everything else of
        ours (networks, ports, DHCP servers, routers, load balancers' legs) is removed. Returns
        counts for the caller."""
        with self._lock, self.batch():
            nets = {hn.network.id: hn.network for hn in state.networks}
            # recorded before anything is made, so a sync that fails halfway can still be undone
            known = self._known_networks()
            self._record_networks(known | set(nets))
            for hn in state.networks:
                self.ensure_network(hn.network, hn.peers)
            # one dump and two `ip -batch` runs instead of netlink round trips per port (linkbatch.py)
            table = linkbatch.link_table()
            sets = {a.name: a for a in state.address_sets}
            if sets != self._sets:
                self._sets = sets
                self._sets_dirty = True
            self._sync_ports(state.ports, nets, table)
            dhcp = [hn for hn in state.networks if hn.dhcp]
            for hn in dhcp:
                self.ensure_dhcp(hn.network, hn.leases)
            for r in state.routers:
                self.ensure_router(r, tuple(nets.values()))
            self._ensure_legs(state.loadbalancers, nets, table)
            wanted_ns = {names.dhcp_ns(self.scope, hn.network.id) for hn in dhcp}
            wanted_ns |= {names.router_ns(self.scope, r.id) for r in state.routers}
            wanted_ns |= {names.lb_ns(self.scope, leg.id) for leg in state.loadbalancers}
            self._prune(set(nets), wanted_ns, known, table)
            self._record_networks(set(nets))
        return {
            "networks": len(nets),
            "ports": len(state.ports),
            "routers": len(state.routers),
            "loadbalancers": len(state.loadbalancers),
        }

    def _sync_ports(
        self, ports: tuple[PortSpec, ...], nets: dict[str, NetworkSpec], table: dict[str, linkbatch.LinkState]
    ) -> None:
        """Remove the ports not wanted, then make or correct the wanted ones whose device is missing,
        off its bridge, of another MTU or down; a port already right costs nothing."""
        wanted = {p.id for p in ports}
        gone = [self._ports.pop(port_id) for port_id in list(self._ports) if port_id not in wanted]
        linkbatch.delete([p.device for p in gone if p.device in table], self._group)
        if gone:
            self._changed()
        plugs = []
        for port in ports:
            network = nets.get(port.network_id)
            if network is None:
                raise links.NetError(f"port {port.id}: its network {port.network_id} is not in the state")
            if len(port.device) > 15:
                raise links.NetError(f"port {port.id}: device name {port.device!r} is longer than 15 chars")
            if port.vnic_type != "normal":
                continue
            link, bridge = table.get(port.device), names.bridge(network.id)
            if bridge not in table:
                raise links.NetError(f"port {port.id}: no bridge of network {network.id} here")
            if link is None or link.master != bridge or link.mtu != network.mtu or not link.up:
                plugs.append(linkbatch.Plug(port.device, bridge, network.mtu, create=link is None))
        linkbatch.plug(plugs)
        for port in ports:
            self._remember(port)

    def _ensure_legs(
        self,
        legs: tuple[LoadBalancerLeg, ...],
        nets: dict[str, NetworkSpec],
        table: dict[str, linkbatch.LinkState],
    ) -> None:
        """Each load balancer's leg made or corrected. A leg as this backend last ensured it, whose
        veth is still on its bridge and up (``have``: the sync's one dump of links), is left
        alone: its namespace holds nothing else of ours, and re-checking every leg (a netlink
        round trip or three each, and a sysctl) made each sync of a host cost ~0.25 s per load
        balancer, which creates queued behind (bench_lb_scale). ``table``: the sync's one dump."""
        for leg in legs:
            network = nets.get(leg.network_id)
            if network is None:
                raise links.NetError(f"load balancer {leg.id}: its network {leg.network_id} is not here")
            link = table.get(names.lb_veth(leg.id))
            intact = (
                link is not None
                and link.master == names.bridge(leg.network_id)
                and link.mtu == network.mtu
                and link.up
            )
            if not (intact and self._legs.get(leg.id) == (leg, network.mtu)):
                lbns.ensure(self.scope, leg, network)
                self._legs[leg.id] = (leg, network.mtu)
        for gone in set(self._legs) - {leg.id for leg in legs}:
            del self._legs[gone]

    def _prune(
        self, networks: set[str], wanted_ns: set[str], known: set[str], table: dict[str, linkbatch.LinkState]
    ) -> None:
        """Only bridges of networks this backend made (``known``) are removed: another host sharing
        the namespace (all-in-one servers in the root one) keeps its own."""
        wanted_bridges = {names.bridge(n) for n in networks}
        ours = {names.bridge(n) for n in known}
        self._remove_namespaces(wanted_ns)
        stale = [b for b in table if b.startswith(names.BRIDGE) and b in ours and b not in wanted_bridges]
        for bridge in stale:
            self._remove_bridge_named(bridge)

    def _remove_namespaces(self, wanted: set[str]) -> None:
        """This host's DHCP, router and load balancer namespaces (by its scope's prefix), but the
        ``wanted``."""
        prefix = names.ns_prefix(self.scope)
        for ns in links.list_ns(prefix):
            if ns not in wanted:
                # a router's and a load balancer's namespace are both veth legs into bridges
                if ns.startswith((prefix + "r", prefix + "l")):
                    router.remove_ns_named(ns)
                else:
                    self.dnsmasq.stop_ns_named(ns)

    def _remove_bridge_named(self, bridge: str) -> None:
        """A network known only by its bridge (the host restarted since): remove what hangs on it."""
        with self._route() as ipr:
            idx = links.index(ipr, bridge)
            if idx is None:
                return
            for link in ipr.get_links():
                if link.get_attr("IFLA_MASTER") == idx:
                    name = link.get_attr("IFLA_IFNAME")
                    if links.kind(link) in ("veth", "tun", "vxlan") and name.startswith("nc"):
                        links.delete(ipr, name)
                    else:
                        ipr.link("set", index=link["index"], master=0)
            links.delete(ipr, bridge)
            links.delete(ipr, names.VXLAN + bridge[len(names.BRIDGE) :])

    def clear(self) -> None:
        """Remove everything of ours from the host (the backend's state included)."""
        self.sync(wire.HostState(host_id=""))
        for policy in self.policies:
            policy.clear()

    def release(self) -> None:
        """Remove what this backend made and nothing else: its ports, its scope's namespaces and the
        bridges of the networks it recorded, as ``clear`` does, but without a sync. The nftables
        tables and tc trees are host-wide: they go with the last port, as in any sync."""
        with self._lock:
            with self.batch():
                table = linkbatch.link_table()
                linkbatch.delete([p.device for p in self._ports.values() if p.device in table], self._group)
                self._ports.clear()
                self._changed()
            self._remove_namespaces(set())
            for network_id in self._known_networks():
                self._remove_bridge_named(names.bridge(network_id))
            self._networks_file.unlink(missing_ok=True)

    def _known_networks(self) -> set[str]:
        """The networks recorded, and those of the ports remembered (a state from before the record)."""
        try:
            recorded = set(json.loads(self._networks_file.read_text()))
        except (OSError, ValueError):
            recorded = set()
        return recorded | {p.network_id for p in self._ports.values()}

    def _record_networks(self, network_ids: set[str]) -> None:
        tmp = self._networks_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(network_ids)))
        tmp.replace(self._networks_file)

    # ---- port policies -----------------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Apply the port policies once, at the end, however many ports change inside; share one
        netlink socket meanwhile (opening one costs more than most changes)."""
        with self._lock:
            self._batch += 1
            outer = self._batch == 1
            try:
                if outer:
                    with links.route() as ipr:
                        self._shared = ipr
                        try:
                            yield
                        finally:
                            self._shared = None
                else:
                    yield
            finally:
                self._batch -= 1
                if self._batch == 0 and (self._dirty or self._sets_dirty):
                    self._flush()

    @contextlib.contextmanager
    def _route(self) -> Iterator[Any]:
        if self._shared is not None:
            yield self._shared
        else:
            with links.route() as ipr:
                yield ipr

    def _changed(self) -> None:
        self._dirty = True
        if self._batch == 0:
            self._flush()

    def _flush(self) -> None:
        ports_changed, self._dirty, self._sets_dirty = self._dirty, False, False
        tmp = self._ports_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([wire.to_dict(p) for p in self._ports.values()]))
        tmp.replace(self._ports_file)
        tmp = self._sets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([wire.to_dict(a) for a in self._sets.values()]))
        tmp.replace(self._sets_file)
        ports = sorted(self._ports.values(), key=lambda p: p.device)
        for policy in self.policies:
            if ports and not ports_changed:  # a membership change alone
                policy.sets_changed(ports, self._sets)
            elif ports:
                policy.apply(ports, self._sets)
            else:  # no port left: no table, qdisc or classifier either
                policy.clear()

    def _load_ports(self) -> dict[str, PortSpec]:
        try:
            raw = json.loads(self._ports_file.read_text())
        except (OSError, ValueError):
            return {}
        ports = [wire.from_dict(PortSpec, p) for p in raw]
        return {p.id: p for p in ports}

    def _load_sets(self) -> dict[str, AddressSet]:
        try:
            raw = json.loads(self._sets_file.read_text())
        except (OSError, ValueError):
            return {}
        return {a.name: a for a in (wire.from_dict(AddressSet, x) for x in raw)}

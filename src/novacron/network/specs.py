"""Desired network state, resolved from the database into the datapath's specs (``model.py``).

Pure functions over a session: security-group rules naming a remote group or a label selector are
resolved to the current addresses of the member ports, so the datapath never reads the database.
Those addresses travel once per host as a named ``AddressSet`` that the rules refer to: a change of
labels, membership or addresses changes the set, not the rules (nor the ports' firewall chains).

Where services run: DHCP for a network and a router run on the first host (by name) that is up
and carries the trait ``network-node``; without one, on the host of the earliest-created bound
port of the network (for a router: of any of its networks). A network is present on a host when
a port of it is bound there, or a load balancer's leg (``LoadBalancerLeg``: a namespace with the
VIP or an amphora's VRRP address, held by an ``owner="lbaas"`` port, never a tap) is placed
there, or when that host serves its DHCP or one of its routers; the VTEP
peers of a host on a network are the underlay addresses of the other hosts where it is present.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections import defaultdict
from dataclasses import replace
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from novacron.db.models import (
    VM,
    FloatingIP,
    Host,
    IPAllocation,
    LbAmphora,
    LoadBalancer,
    Network,
    Port,
    PortSecurityGroup,
    QosPolicy,
    Router,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
)
from novacron.network.model import (
    AddressSet,
    FixedIP,
    LoadBalancerLeg,
    NatRule,
    NetworkSpec,
    PortSpec,
    QosSpec,
    RouterInterface,
    RouterSpec,
    Rule,
    SubnetSpec,
)
from novacron.network.wire import HostNetwork, HostState

NETWORK_NODE_TRAIT = "network-node"


def label_match(selector: dict[str, Any] | None, labels: dict[str, Any] | None) -> bool:
    """A selector matches labels holding every one of its pairs (an empty selector matches nothing)."""
    if not selector:
        return False
    have = labels or {}
    return all(have.get(k) == v for k, v in selector.items())


def _host_cidr(ip: str) -> str:
    return f"{ip}/{32 if ipaddress.ip_address(ip).version == 4 else 128}"


def subnet_spec(subnet: Subnet) -> SubnetSpec:
    return SubnetSpec(
        id=subnet.id,
        cidr=subnet.cidr,
        gateway_ip=subnet.gateway_ip,
        dhcp=subnet.dhcp,
        allocation_pools=tuple((a, b) for a, b in subnet.allocation_pools),
        dns_servers=tuple(subnet.dns_servers),
        host_routes=tuple((d, n) for d, n in subnet.host_routes),
    )


def network_spec(session: Session, network: Network) -> NetworkSpec:
    subnets = session.scalars(
        select(Subnet).where(Subnet.network_id == network.id).order_by(Subnet.created_at, Subnet.id)
    )
    return NetworkSpec(
        id=network.id,
        tenant_id=network.tenant_id,
        vni=network.vni,
        mtu=network.mtu,
        subnets=tuple(subnet_spec(s) for s in subnets),
        external=network.external,
        physical_interface=network.physical_interface,
    )


class _Tenant:
    """One tenant's ports, labels, addresses and groups, read once to resolve many ports."""

    def __init__(self, session: Session, tenant_id: str) -> None:
        rows = session.execute(
            select(Port.id, Port.project_id, VM.labels)
            .outerjoin(VM, VM.id == Port.vm_id)
            .where(Port.tenant_id == tenant_id, Port.owner == "compute")
        )
        self.project: dict[str, str] = {}
        self.labels: dict[str, dict[str, str]] = {}
        for port_id, project_id, labels in rows:
            self.project[port_id] = project_id
            self.labels[port_id] = labels or {}
        self.ips: dict[str, list[str]] = defaultdict(list)
        self.fixed: dict[str, list[FixedIP]] = defaultdict(list)
        for port_id, subnet_id, ip in session.execute(
            select(IPAllocation.port_id, IPAllocation.subnet_id, IPAllocation.ip)
            .join(Port, Port.id == IPAllocation.port_id)
            .where(Port.tenant_id == tenant_id, Port.owner == "compute")
            .order_by(IPAllocation.port_id, IPAllocation.subnet_id)
        ):
            self.ips[port_id].append(ip)
            self.fixed[port_id].append(FixedIP(subnet_id, ip))
        self.explicit: dict[str, set[str]] = defaultdict(set)
        for port_id, group_id in session.execute(
            select(PortSecurityGroup.port_id, PortSecurityGroup.group_id)
            .join(Port, Port.id == PortSecurityGroup.port_id)
            .where(Port.tenant_id == tenant_id)
        ):
            self.explicit[port_id].add(group_id)
        self.groups = {
            g.id: g
            for g in session.scalars(select(SecurityGroup).where(SecurityGroup.tenant_id == tenant_id))
        }
        self.rules: dict[str, list[SecurityGroupRule]] = defaultdict(list)
        for rule in session.scalars(
            select(SecurityGroupRule)
            .where(SecurityGroupRule.tenant_id == tenant_id)
            .order_by(SecurityGroupRule.created_at, SecurityGroupRule.id)
        ):
            self.rules[rule.group_id].append(rule)
        self._groups_of: dict[str, list[str]] = {}
        self._members: dict[str, list[str]] | None = None
        self.tenant_id = tenant_id
        self._remote: dict[tuple[str, str, str], AddressSet] = {}
        self._resolved: dict[str, Rule] = {}

    def groups_of(self, port_id: str) -> list[str]:
        if port_id not in self._groups_of:
            labelled = [
                g.id
                for g in self.groups.values()
                if g.selector
                and g.project_id == self.project.get(port_id)
                and label_match(g.selector, self.labels.get(port_id))
            ]
            self._groups_of[port_id] = sorted(self.explicit.get(port_id, set()) | set(labelled))
        return self._groups_of[port_id]

    def members(self, group_id: str) -> list[str]:
        if self._members is None:  # one pass over the ports answers every group
            self._members = defaultdict(list)
            for p in self.project:
                for g in self.groups_of(p):
                    self._members[g].append(p)
        return self._members.get(group_id, [])

    def selected(self, selector: dict[str, str]) -> list[str]:
        return [p for p, labels in self.labels.items() if label_match(selector, labels)]

    def addresses(self, port_ids: list[str], ethertype: str) -> tuple[str, ...]:
        version = 4 if ethertype == "IPv4" else 6
        return tuple(
            sorted(
                {
                    _host_cidr(ip)
                    for p in port_ids
                    for ip in self.ips.get(p, [])
                    if ipaddress.ip_address(ip).version == version
                }
            )
        )

    def remote_set(self, r: SecurityGroupRule) -> AddressSet:
        """The set of a rule's remote group or selector: its members' current addresses."""
        key = (r.remote_group_id or "", json.dumps(r.remote_labels, sort_keys=True), r.ethertype)
        if key not in self._remote:
            if r.remote_group_id:
                ports = self.members(r.remote_group_id)
            else:
                ports = self.selected(r.remote_labels or {})
            # named by what it selects (not by its members), so a membership change keeps the name
            digest = hashlib.sha1(f"{self.tenant_id} {key}".encode()).hexdigest()[:16]
            name = f"r{digest}_{4 if r.ethertype == 'IPv4' else 6}"
            self._remote[key] = AddressSet(name, r.ethertype, self.addresses(ports, r.ethertype))  # type: ignore[arg-type]
        return self._remote[key]

    def rule(self, r: SecurityGroupRule) -> Rule:
        """The rule with its remote side resolved: a CIDR, or the set of a group's members."""
        remote_set = None
        if r.remote_group_id or r.remote_labels:
            remote_set = self.remote_set(r).name
        return Rule(
            direction=r.direction,  # type: ignore[arg-type]
            ethertype=r.ethertype,  # type: ignore[arg-type]
            protocol=r.protocol,  # type: ignore[arg-type]
            port_min=r.port_min,
            port_max=r.port_max,
            remote_cidrs=(r.remote_cidr,) if r.remote_cidr else (),
            remote_set=remote_set,
            sni_allow=tuple(r.sni_allow or ()),
            action=r.action,  # type: ignore[arg-type]
        )

    def address_sets(self) -> dict[str, AddressSet]:
        return {a.name: a for a in self._remote.values()}

    def rules_of(self, port_id: str) -> tuple[Rule, ...]:
        out: list[Rule] = []
        seen: set[Rule] = set()
        for group_id in self.groups_of(port_id):
            for r in self.rules.get(group_id, []):
                if r.id not in self._resolved:  # a rule resolves the same for every port
                    self._resolved[r.id] = self.rule(r)
                resolved = self._resolved[r.id]
                if resolved not in seen:
                    seen.add(resolved)
                    out.append(resolved)
        return tuple(out)


class Resolver:
    """Resolves many ports of one session with each tenant's data read once."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._tenants: dict[str, _Tenant] = {}
        self._qos: dict[str, QosSpec] = {}

    def tenant(self, tenant_id: str) -> _Tenant:
        if tenant_id not in self._tenants:
            self._tenants[tenant_id] = _Tenant(self.session, tenant_id)
        return self._tenants[tenant_id]

    def qos(self, policy_id: str | None) -> QosSpec | None:
        if policy_id is None:
            return None
        if policy_id not in self._qos:
            p = self.session.get(QosPolicy, policy_id)
            if p is None:
                return None
            self._qos[policy_id] = QosSpec(p.ingress_kbps, p.egress_kbps, p.guaranteed_kbps, p.dscp)
        return self._qos[policy_id]

    def port(self, port: Port) -> PortSpec:
        tenant = self.tenant(port.tenant_id)
        if port.id in tenant.project:
            fixed = list(tenant.fixed.get(port.id, []))
        else:  # a port made after the tenant was read
            rows = self.session.execute(
                select(IPAllocation.subnet_id, IPAllocation.ip)
                .where(IPAllocation.port_id == port.id)
                .order_by(IPAllocation.subnet_id)
            )
            fixed = [FixedIP(sub, ip) for sub, ip in rows]
        return PortSpec(
            id=port.id,
            network_id=port.network_id,
            tenant_id=port.tenant_id,
            mac=port.mac,
            fixed_ips=tuple(fixed),
            device=port.device,
            port_security=port.port_security,
            rules=tenant.rules_of(port.id) if port.port_security else (),
            qos=self.qos(port.qos_policy_id),
            vnic_type=port.vnic_type,  # type: ignore[arg-type]
        )

    def address_sets(self, ports: list[PortSpec]) -> tuple[AddressSet, ...]:
        """The sets the rules of ``ports`` refer to, by name."""
        known: dict[str, AddressSet] = {}
        for tenant in self._tenants.values():
            known.update(tenant.address_sets())
        names = sorted({r.remote_set for p in ports for r in p.rules if r.remote_set})
        return tuple(known[n] for n in names)


def port_spec(session: Session, port: Port) -> PortSpec:
    """A port's spec with its remote sets written out as addresses (what an operator reads); a rule
    whose set is empty matches nothing and is left out."""
    resolver = Resolver(session)
    spec = resolver.port(port)
    sets = {a.name: a for a in resolver.address_sets([spec])}
    rules = [r for r in spec.rules if not r.remote_set or sets[r.remote_set].cidrs]
    return replace(
        spec,
        rules=tuple(
            replace(r, remote_cidrs=sets[r.remote_set].cidrs, remote_set=None) if r.remote_set else r
            for r in rules
        ),
    )


def router_spec(session: Session, router: Router) -> RouterSpec:
    interfaces: list[RouterInterface] = []
    external_ip = prefix = gateway = None
    for port, subnet_id, ip in session.execute(
        select(Port, IPAllocation.subnet_id, IPAllocation.ip)
        .join(IPAllocation, IPAllocation.port_id == Port.id)
        .where(Port.router_id == router.id)
        .order_by(Port.created_at, Port.id)
    ):
        subnet = session.get(Subnet, subnet_id)
        assert subnet is not None
        prefix_len = ipaddress.ip_network(subnet.cidr).prefixlen
        if port.owner == "router_gateway":
            if external_ip is None or ipaddress.ip_address(ip).version == 4:
                external_ip, prefix, gateway = ip, prefix_len, subnet.gateway_ip
        else:
            interfaces.append(RouterInterface(port.network_id, subnet_id, ip, prefix_len))
    nat: list[NatRule] = []
    for fip in session.scalars(
        select(FloatingIP).where(FloatingIP.router_id == router.id, FloatingIP.port_id.is_not(None))
    ):
        inside = internal_ipv4(session, fip.port_id or "")
        if inside is not None:
            nat.append(NatRule(fip.ip, inside))
    return RouterSpec(
        id=router.id,
        tenant_id=router.tenant_id,
        interfaces=tuple(interfaces),
        external_network_id=router.external_network_id,
        external_ip=external_ip,
        external_prefix_len=prefix,
        external_gateway=gateway,
        snat=router.snat,
        floating_ips=tuple(sorted(nat, key=lambda n: n.external_ip)),
    )


def internal_ipv4(session: Session, port_id: str) -> str | None:
    ips = session.scalars(select(IPAllocation.ip).where(IPAllocation.port_id == port_id))
    return next((ip for ip in ips if ipaddress.ip_address(ip).version == 4), None)


# ---- where things are --------------------------------------------------------------------------


def bound_ports(session: Session, moving: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """port id -> (host id, network id) of every VM port on a host; ``moving``: vm id -> host overrides."""
    rows = session.execute(
        select(Port.id, Port.network_id, Port.vm_id, func.coalesce(VM.host_id, Port.host_id))
        .outerjoin(VM, VM.id == Port.vm_id)
        .where(Port.owner == "compute")
        .order_by(Port.created_at, Port.id)
    )
    out: dict[str, tuple[str, str]] = {}
    for port_id, network_id, vm_id, host_id in rows:
        host = (moving or {}).get(vm_id or "", host_id)
        if host is not None:
            out[port_id] = (host, network_id)
    return out


def network_nodes(session: Session) -> list[str]:
    hosts = session.execute(select(Host.id, Host.traits).where(Host.state == "up").order_by(Host.name))
    return [h for h, traits in hosts if NETWORK_NODE_TRAIT in (traits or [])]


class Layout:
    """Which host serves each network's DHCP and each router, and where each network is present."""

    def __init__(self, session: Session, moving: dict[str, str] | None = None) -> None:
        self.session = session
        self.bound = bound_ports(session, moving)
        self.underlay: dict[str, str | None] = {
            h: ip for h, ip in session.execute(select(Host.id, Host.underlay_ip))
        }
        nodes = network_nodes(session)
        self.node = nodes[0] if nodes else None
        first_host: dict[str, str] = {}
        self.presence: dict[str, set[str]] = defaultdict(set)
        for host, network in [*self.bound.values(), *lb_leg_places(session)]:
            first_host.setdefault(network, host)
            self.presence[network].add(host)
        dhcp_networks = set(session.scalars(select(Subnet.network_id).where(Subnet.dhcp.is_(True))))
        self.dhcp_host: dict[str, str] = {}
        for network in self.presence:
            host = self.node or first_host[network]
            if network in dhcp_networks:
                self.dhcp_host[network] = host
                self.presence[network].add(host)
        self.router_host: dict[str, str] = {}
        self.router_networks: dict[str, set[str]] = defaultdict(set)
        for router_id, network_id in session.execute(
            select(Port.router_id, Port.network_id).where(Port.router_id.is_not(None))
        ):
            if router_id is not None:
                self.router_networks[router_id].add(network_id)
        for router_id, networks in self.router_networks.items():
            candidates = [first_host[n] for n in sorted(networks) if n in first_host]
            where = self.node or (candidates[0] if candidates else None)
            if where is not None:
                self.router_host[router_id] = where
                for n in networks:
                    self.presence[n].add(where)

    def hosts(self) -> set[str]:
        return set().union(*self.presence.values()) if self.presence else set()


def host_state(
    session: Session,
    host_id: str,
    moving: dict[str, str] | None = None,
    *,
    layout: Layout | None = None,
    resolver: Resolver | None = None,
) -> HostState:
    """Everything the host's datapath must have; ``moving`` places VMs about to arrive there.

    ``layout`` and ``resolver`` may be shared by the states of several hosts of one session.
    """
    layout = layout or Layout(session, moving)
    underlay = layout.underlay
    resolver = resolver or Resolver(session)
    networks: list[HostNetwork] = []
    for network_id in sorted(n for n, hosts in layout.presence.items() if host_id in hosts):
        network = session.get(Network, network_id)
        if network is None:
            continue
        peers = sorted({ip for h in layout.presence[network_id] if h != host_id and (ip := underlay.get(h))})
        leases: tuple[PortSpec, ...] = ()
        if layout.dhcp_host.get(network_id) == host_id:
            on_network = session.scalars(
                select(Port).where(Port.network_id == network_id, Port.owner == "compute").order_by(Port.id)
            )
            leases = tuple(replace(resolver.port(p), rules=()) for p in on_network)
        networks.append(
            HostNetwork(
                network=network_spec(session, network),
                peers=tuple(peers),
                dhcp=layout.dhcp_host.get(network_id) == host_id,
                leases=leases,
            )
        )
    here = [p for p, (h, _) in layout.bound.items() if h == host_id]
    ports = [
        resolver.port(p) for p in session.scalars(select(Port).where(Port.id.in_(here)).order_by(Port.id))
    ]
    routers = [
        router_spec(session, r)
        for r in session.scalars(
            select(Router)
            .where(Router.id.in_([r for r, h in layout.router_host.items() if h == host_id]))
            .order_by(Router.id)
        )
    ]
    return HostState(
        host_id=host_id,
        underlay_ip=underlay.get(host_id),
        networks=tuple(networks),
        ports=tuple(ports),
        routers=tuple(routers),
        loadbalancers=lb_legs(session, host_id),
        address_sets=resolver.address_sets(ports),
    )


def lb_leg_places(session: Session) -> list[tuple[str, str]]:
    """(host id, network id) of every placed load-balancer leg: its network is present there."""
    rows = session.execute(
        select(LbAmphora.host_id, Port.network_id)
        .join(Port, Port.id == LbAmphora.port_id)
        .where(LbAmphora.host_id.is_not(None))
        .order_by(LbAmphora.created_at, LbAmphora.id)
    )
    return [(host, network) for host, network in rows if host is not None]


def lb_legs(session: Session, host_id: str) -> tuple[LoadBalancerLeg, ...]:
    """The load balancers' (or amphorae's) namespaces on this host, each with its address on its
    leg's network (the VIP for SINGLE, the amphora's VRRP address for ACTIVE_STANDBY)."""
    rows = session.execute(
        select(LbAmphora, Port.network_id, Port.mac, Subnet.cidr, Subnet.gateway_ip, LoadBalancer.tenant_id)
        .join(Port, Port.id == LbAmphora.port_id)
        .join(LoadBalancer, LoadBalancer.id == LbAmphora.loadbalancer_id)
        .join(Subnet, Subnet.id == LoadBalancer.vip_subnet_id)
        .where(LbAmphora.host_id == host_id)
        .order_by(LbAmphora.id)
    )
    return tuple(
        LoadBalancerLeg(
            id=leg.id,
            tenant_id=tenant_id,
            network_id=network_id,
            mac=mac,
            addresses=(f"{leg.address}/{ipaddress.ip_network(cidr).prefixlen}",),
            gateway=gateway,
        )
        for leg, network_id, mac, cidr, gateway, tenant_id in rows
    )


def affected_hosts(session: Session, tenant_id: str) -> set[str]:
    """Hosts whose state may change with a change of this tenant's networks, ports, groups or labels."""
    owned = select(Network.id).where(Network.tenant_id == tenant_id)
    rows = session.execute(
        select(func.coalesce(VM.host_id, Port.host_id))
        .select_from(Port)
        .outerjoin(VM, VM.id == Port.vm_id)
        .where(or_(Port.tenant_id == tenant_id, Port.network_id.in_(owned)))
        .distinct()
    )
    hosts = {h for (h,) in rows if h is not None}
    return hosts | set(network_nodes(session)[:1])

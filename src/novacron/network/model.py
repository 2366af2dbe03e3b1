"""The seam between the network control plane and a host's datapath.

The control plane (API, database, IPAM, policy resolution) describes what a host must have in these
frozen dataclasses, gathered in one ``wire.HostState``; a ``NetworkBackend`` (``linux`` today:
bridges, VXLAN, nftables, tc, dnsmasq in namespaces; OVN later; ``fake`` for tests) makes the host
match it with ``sync``, which is idempotent and converges (re-applying the same state changes
nothing; a changed one is applied in place; what the state no longer lists is removed), so the
agent can simply re-apply after a restart. Security-group and label policies arrive already
resolved to addresses (a remote group or selector as one named ``AddressSet`` per host, which its
rules refer to): the datapath never reads the database.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from novacron.network.wire import HostState

Direction = Literal["ingress", "egress"]
EtherType = Literal["IPv4", "IPv6"]
#: transport protocols, or application protocols detected from the traffic itself
Protocol = Literal["tcp", "udp", "icmp", "icmpv6", "http", "tls", "ssh", "dns"]
VnicType = Literal["normal", "direct", "vhost-user"]


@dataclass(frozen=True)
class SubnetSpec:
    """A subnet of a tenant network: its range, gateway, DHCP pools and options."""

    id: str
    cidr: str
    gateway_ip: str | None
    dhcp: bool = True
    #: inclusive (first, last) address ranges handed out by IPAM
    allocation_pools: tuple[tuple[str, str], ...] = ()
    dns_servers: tuple[str, ...] = ()
    #: (destination CIDR, next hop)
    host_routes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class NetworkSpec:
    """A tenant network as a host builds it: its VNI, MTU and subnets."""

    id: str
    tenant_id: str
    #: the VXLAN network identifier, unique in the cluster
    vni: int
    mtu: int = 1450
    subnets: tuple[SubnetSpec, ...] = ()
    #: a provider network: bridged to the host's ``physical_interface`` instead of VXLAN
    external: bool = False
    physical_interface: str | None = None


@dataclass(frozen=True)
class FixedIP:
    """One address of a port, on one subnet."""

    subnet_id: str
    ip: str


@dataclass(frozen=True)
class Rule:
    """One allow (or deny) rule of a port, with its remote side resolved.

    A rule naming a remote security group or a label selector arrives with ``remote_set``: the
    name of the host state's ``AddressSet`` holding its members' current addresses (an empty set
    matches nothing). Otherwise ``remote_cidrs``; both empty means anywhere.
    """

    direction: Direction
    ethertype: EtherType = "IPv4"
    #: None: any protocol
    protocol: Protocol | None = None
    port_min: int | None = None
    port_max: int | None = None
    remote_cidrs: tuple[str, ...] = ()
    remote_set: str | None = None
    #: for ``tls``: the server names allowed (exact, or ``*.example.com`` for a suffix)
    sni_allow: tuple[str, ...] = ()
    action: Literal["allow", "deny"] = "allow"


@dataclass(frozen=True)
class AddressSet:
    """The current addresses of a remote security group or label selector, for one ethertype.

    Every rule naming the group refers to the set by ``name``, so a membership change rewrites the
    set's elements in place (an nftables named set) and no rule.
    """

    name: str
    ethertype: EtherType
    #: host addresses (``/32`` or ``/128``), sorted
    cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class QosSpec:
    """Port limits in kbit/s; the port's class sits under its network's and its tenant's."""

    ingress_kbps: int | None = None
    egress_kbps: int | None = None
    #: the rate guaranteed to the port within its network's class (HTB ``rate``; the limits are ``ceil``)
    guaranteed_kbps: int | None = None
    #: DSCP value (0-63) written on the port's egress packets
    dscp: int | None = None


@dataclass(frozen=True)
class PortSpec:
    """A VM's port on a tenant network: MAC, addresses, security groups and QoS."""

    id: str
    network_id: str
    tenant_id: str
    mac: str
    fixed_ips: tuple[FixedIP, ...]
    #: the tap (or veth) device on the host, at most 15 characters
    device: str
    #: enforce anti-spoofing and ``rules`` (default deny inbound, stateful); False: pass everything
    port_security: bool = True
    rules: tuple[Rule, ...] = ()
    qos: QosSpec | None = None
    vnic_type: VnicType = "normal"


@dataclass(frozen=True)
class NatRule:
    """A floating IP: ``external_ip`` on the external network is DNAT'ed to ``internal_ip``."""

    external_ip: str
    internal_ip: str


@dataclass(frozen=True)
class RouterInterface:
    """A router's leg on one subnet."""

    network_id: str
    subnet_id: str
    #: the router's address on that subnet (usually the gateway)
    ip: str
    prefix_len: int


@dataclass(frozen=True)
class RouterSpec:
    """A tenant router: its interfaces, external gateway and floating IPs."""

    id: str
    tenant_id: str
    interfaces: tuple[RouterInterface, ...] = ()
    #: the external network, and the router's address on it (SNAT source for the inside)
    external_network_id: str | None = None
    external_ip: str | None = None
    external_prefix_len: int | None = None
    external_gateway: str | None = None
    snat: bool = True
    floating_ips: tuple[NatRule, ...] = ()


@dataclass(frozen=True)
class LoadBalancerLeg:
    """A load balancer's namespace on this host with its leg on one tenant network: the whole
    load balancer (SINGLE) or one amphora (ACTIVE_STANDBY, where keepalived adds the VIP)."""

    #: the load balancer's id (SINGLE) or the amphora's: names the namespace
    id: str
    tenant_id: str
    network_id: str
    mac: str
    #: CIDR form on the leg: the VIP for SINGLE, the amphora's own VRRP address for ACTIVE_STANDBY
    addresses: tuple[str, ...]
    #: the default route inside the namespace (the subnet's gateway)
    gateway: str | None = None


class NetworkBackend(abc.ABC):
    """One host's datapath, as its agent drives it (or a test, against a namespace or the fake)."""

    name: str
    #: tags this host's namespaces (hosts sharing one kernel have different ones): the agent finds
    #: a load balancer's namespace by it (``linux/names.lb_ns``)
    scope: str = ""

    @abc.abstractmethod
    def sync(self, state: HostState) -> dict[str, int]:
        """Make the host match ``state`` exactly: what it lists is ensured, everything else of this
        backend's (networks, ports, DHCP servers, routers, load balancers' legs) is removed.
        Returns counts for the caller. Blocking: the agent runs it in a thread."""

    @abc.abstractmethod
    def release(self) -> None:
        """Remove what this backend made on the host and nothing else (the host leaves, or a test ends)."""

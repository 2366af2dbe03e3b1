"""Tenant networks: networks, subnets, IP allocations, ports, security groups, routers, QoS.

Uniqueness that must hold under concurrency is a database constraint, never a read-then-write:
the VNI (``networks.vni``), an address in a subnet (``ip_allocations`` primary key) and a MAC in
a network; the allocators insert in a savepoint and move on when the constraint refuses.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, Versioned


class Network(Timestamped, Versioned, Base):
    __tablename__ = "networks"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    #: VXLAN network identifier, unique in the cluster
    vni: Mapped[int] = mapped_column(Integer, unique=True)
    mtu: Mapped[int] = mapped_column(Integer, default=1450)
    #: a provider network (admins only): bridged to ``physical_interface``, a router's gateway side
    external: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    physical_interface: Mapped[str | None] = mapped_column(String(15), nullable=True)
    #: other tenants may put ports on it (admins only)
    shared: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Subnet(Timestamped, Versioned, Base):
    __tablename__ = "subnets"
    __table_args__ = (UniqueConstraint("network_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    ip_version: Mapped[int] = mapped_column(Integer)
    cidr: Mapped[str] = mapped_column(String(64))
    gateway_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: [[first, last], ...] inclusive
    allocation_pools: Mapped[list[list[str]]] = mapped_column(JSON, default=list)
    dns_servers: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: [[destination cidr, next hop], ...]
    host_routes: Mapped[list[list[str]]] = mapped_column(JSON, default=list)
    dhcp: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class SecurityGroup(Timestamped, Versioned, Base):
    """Rules applied to its member ports; with a ``selector`` also to every port of matching VMs.

    A selector (``{"tier": "db"}``) makes the group a label policy: a zero-trust segment whose
    membership follows the VMs' labels, not lists of ports.
    """

    __tablename__ = "security_groups"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(255), default="")
    selector: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)


class SecurityGroupRule(Timestamped, Base):
    __tablename__ = "security_group_rules"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("security_groups.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    direction: Mapped[str] = mapped_column(String(8))
    ethertype: Mapped[str] = mapped_column(String(4), default="IPv4")
    protocol: Mapped[str | None] = mapped_column(String(8), nullable=True)
    port_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    port_max: Mapped[int | None] = mapped_column(Integer, nullable=True)
    remote_cidr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    remote_group_id: Mapped[str | None] = mapped_column(
        ForeignKey("security_groups.id", ondelete="CASCADE"), nullable=True, index=True
    )
    #: label selector: the addresses of the ports of the tenant's VMs whose labels match all of it
    remote_labels: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    sni_allow: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    action: Mapped[str] = mapped_column(String(8), default="allow")


class QosPolicy(Timestamped, Versioned, Base):
    __tablename__ = "qos_policies"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    ingress_kbps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    egress_kbps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    guaranteed_kbps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dscp: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Router(Timestamped, Versioned, Base):
    __tablename__ = "routers"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    external_network_id: Mapped[str | None] = mapped_column(
        ForeignKey("networks.id", ondelete="RESTRICT"), nullable=True
    )
    snat: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class Port(Timestamped, Versioned, Base):
    """A VM's NIC, or a router's leg or a floating IP's address (``owner`` says which)."""

    __tablename__ = "ports"
    __table_args__ = (UniqueConstraint("network_id", "mac"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id", ondelete="RESTRICT"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64), default="")
    #: compute (a VM's NIC, or unbound), router_interface, router_gateway, floating_ip
    owner: Mapped[str] = mapped_column(String(20), default="compute")
    vm_id: Mapped[str | None] = mapped_column(
        ForeignKey("vms.id", ondelete="CASCADE"), nullable=True, index=True
    )
    router_id: Mapped[str | None] = mapped_column(
        ForeignKey("routers.id", ondelete="CASCADE"), nullable=True, index=True
    )
    #: a port bound to a host without a VM (admins); a VM's port is where its VM is
    host_id: Mapped[str | None] = mapped_column(ForeignKey("hosts.id", ondelete="SET NULL"), nullable=True)
    mac: Mapped[str] = mapped_column(String(17))
    #: tap device name, derived from the id (at most 15 characters)
    device: Mapped[str] = mapped_column(String(15))
    port_security: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    vnic_type: Mapped[str] = mapped_column(String(12), default="normal", server_default="normal")
    qos_policy_id: Mapped[str | None] = mapped_column(
        ForeignKey("qos_policies.id", ondelete="RESTRICT"), nullable=True
    )
    #: the NIC's order on its VM
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class PortSecurityGroup(Base):
    __tablename__ = "port_security_groups"
    port_id: Mapped[str] = mapped_column(ForeignKey("ports.id", ondelete="CASCADE"), primary_key=True)
    group_id: Mapped[str] = mapped_column(
        ForeignKey("security_groups.id", ondelete="RESTRICT"), primary_key=True, index=True
    )


class IPAllocation(Base):
    """An address held in a subnet: the primary key is what makes two holders impossible."""

    __tablename__ = "ip_allocations"
    subnet_id: Mapped[str] = mapped_column(ForeignKey("subnets.id", ondelete="RESTRICT"), primary_key=True)
    ip: Mapped[str] = mapped_column(String(64), primary_key=True)
    port_id: Mapped[str] = mapped_column(ForeignKey("ports.id", ondelete="CASCADE"), index=True)
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"), index=True)


class FloatingIP(Timestamped, Versioned, Base):
    """An address on an external network (held by its own port), DNAT'ed to a port's fixed IP."""

    __tablename__ = "floating_ips"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id", ondelete="RESTRICT"), index=True)
    #: the port holding the external address
    own_port_id: Mapped[str] = mapped_column(ForeignKey("ports.id", ondelete="CASCADE"), unique=True)
    ip: Mapped[str] = mapped_column(String(64))
    port_id: Mapped[str | None] = mapped_column(
        ForeignKey("ports.id", ondelete="SET NULL"), nullable=True, index=True
    )
    router_id: Mapped[str | None] = mapped_column(
        ForeignKey("routers.id", ondelete="SET NULL"), nullable=True, index=True
    )

"""Load balancers as a service: Octavia's resources (load balancer, listener, pool, member) and the
amphorae (one leg per host) that realise them.

A load balancer's VIP and each amphora's VRRP address are ``Port`` rows with ``owner="lbaas"``,
so IPAM holds their addresses and DHCP never hands them out. Health monitors, session persistence,
L7 policies (with their rules) and listener protection are JSON columns of their owner: they are
read and written whole. ``applied`` holds the last tree that reached the hosts, the snapshot a
failed change rolls back to; ``task_id`` the change in flight while the status is ``PENDING_*``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, Versioned


class LoadBalancer(Timestamped, Versioned, Base):
    __tablename__ = "loadbalancers"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(255), default="")
    vip_subnet_id: Mapped[str] = mapped_column(ForeignKey("subnets.id", ondelete="RESTRICT"), index=True)
    vip_network_id: Mapped[str] = mapped_column(ForeignKey("networks.id", ondelete="RESTRICT"))
    vip_port_id: Mapped[str | None] = mapped_column(
        ForeignKey("ports.id", ondelete="SET NULL"), nullable=True
    )
    vip_address: Mapped[str] = mapped_column(String(64))
    #: SINGLE or ACTIVE_STANDBY
    topology: Mapped[str] = mapped_column(String(16), default="SINGLE")
    #: the VRRP router id of an ACTIVE_STANDBY load balancer, unique on its network
    vrrp_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    #: PENDING_CREATE, PENDING_UPDATE, PENDING_DELETE, ACTIVE, ERROR
    provisioning_status: Mapped[str] = mapped_column(String(16), default="PENDING_CREATE")
    #: ONLINE, DEGRADED, ERROR, OFFLINE, NO_MONITOR
    operating_status: Mapped[str] = mapped_column(String(16), default="OFFLINE")
    #: the task realising the change in flight (while PENDING_*), or the last one
    task_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: the tree of the last change the hosts applied (``lbaas.snapshot``); None before the first
    applied: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class LbAmphora(Timestamped, Base):
    """One leg of a load balancer on a host: the whole load balancer (SINGLE, its id is the load
    balancer's) or one side of an ACTIVE_STANDBY pair (MASTER or BACKUP)."""

    __tablename__ = "lb_amphorae"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    loadbalancer_id: Mapped[str] = mapped_column(
        ForeignKey("loadbalancers.id", ondelete="CASCADE"), index=True
    )
    #: SINGLE, MASTER or BACKUP
    role: Mapped[str] = mapped_column(String(8))
    host_id: Mapped[str | None] = mapped_column(
        ForeignKey("hosts.id", ondelete="SET NULL"), nullable=True, index=True
    )
    #: the leg's port: the VIP's (SINGLE) or the amphora's own VRRP address (ACTIVE_STANDBY)
    port_id: Mapped[str | None] = mapped_column(ForeignKey("ports.id", ondelete="SET NULL"), nullable=True)
    address: Mapped[str] = mapped_column(String(64))


class LbListener(Timestamped, Versioned, Base):
    __tablename__ = "lb_listeners"
    __table_args__ = (UniqueConstraint("loadbalancer_id", "protocol_port"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    loadbalancer_id: Mapped[str] = mapped_column(
        ForeignKey("loadbalancers.id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(String(255), default="")
    protocol: Mapped[str] = mapped_column(String(20))
    protocol_port: Mapped[int] = mapped_column(Integer)
    default_pool_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    connection_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    timeout_client_data: Mapped[int | None] = mapped_column(Integer, nullable=True)
    timeout_member_connect: Mapped[int | None] = mapped_column(Integer, nullable=True)
    timeout_member_data: Mapped[int | None] = mapped_column(Integer, nullable=True)
    insert_headers: Mapped[list[str]] = mapped_column(JSON, default=list)
    default_tls_container_ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sni_container_refs: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: ``lbaas.protection.ListenerProtection`` as a dict
    protection: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: ``lbaas.qos.ListenerQoS`` as a dict: bandwidth and connection-rate limits
    qos: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: L7 policies, each with its rules (``lbaas.model.L7PolicySpec`` as dicts)
    l7policies: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    operating_status: Mapped[str] = mapped_column(String(16), default="OFFLINE")


class LbPool(Timestamped, Versioned, Base):
    __tablename__ = "lb_pools"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    loadbalancer_id: Mapped[str] = mapped_column(
        ForeignKey("loadbalancers.id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(String(255), default="")
    protocol: Mapped[str] = mapped_column(String(20))
    lb_algorithm: Mapped[str] = mapped_column(String(20), default="ROUND_ROBIN")
    hash_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    session_persistence: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    healthmonitor: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    operating_status: Mapped[str] = mapped_column(String(16), default="OFFLINE")


class LbMember(Timestamped, Versioned, Base):
    __tablename__ = "lb_members"
    __table_args__ = (UniqueConstraint("pool_id", "address", "protocol_port"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    pool_id: Mapped[str] = mapped_column(ForeignKey("lb_pools.id", ondelete="CASCADE"), index=True)
    loadbalancer_id: Mapped[str] = mapped_column(
        ForeignKey("loadbalancers.id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64), default="")
    address: Mapped[str] = mapped_column(String(64))
    protocol_port: Mapped[int] = mapped_column(Integer)
    #: the tenant's subnet holding ``address``
    subnet_id: Mapped[str] = mapped_column(String(40))
    #: the VM whose port address this is, when the member was named by VM
    vm_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    backup: Mapped[bool] = mapped_column(Boolean, default=False)
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    drain: Mapped[bool] = mapped_column(Boolean, default=False)
    #: ONLINE, OFFLINE, DRAINING, DISABLED, NO_MONITOR, ERROR (from the hosts' health reports)
    operating_status: Mapped[str] = mapped_column(String(16), default="NO_MONITOR")

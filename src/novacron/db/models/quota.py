"""Quotas (a tree of limits and usage counters), capacity reservations, prices, budgets, the usage
ledger and policy rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, UTCDateTime, Versioned, utcnow


class QuotaNode(Timestamped, Versioned, Base):
    """One node of the quota tree: ``system``, ``tenant:<id>``, ``project:<id>``, ``user:<project>:<id>``.

    Ids are derived from what the node stands for, so creating a node is an insert that may
    conflict with a concurrent one and never a read-then-write race.
    """

    __tablename__ = "quota_nodes"
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: system, tenant, project, user
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("quota_nodes.id", ondelete="CASCADE"), nullable=True, index=True
    )
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    #: the project or user it stands for (its name is looked up when shown)
    ref_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    depth: Mapped[int] = mapped_column(Integer, default=0)


class QuotaLimit(Base):
    """A node's limit on one resource; no row means the limit is inherited from the ancestors."""

    __tablename__ = "quota_limits"
    node_id: Mapped[str] = mapped_column(ForeignKey("quota_nodes.id", ondelete="CASCADE"), primary_key=True)
    resource: Mapped[str] = mapped_column(String(40), primary_key=True)
    limit: Mapped[int] = mapped_column(BigInteger)


class QuotaUsage(Base):
    """A node's usage counter: its own charges plus its descendants', changed only by conditional
    UPDATEs of ``quota.enforce``."""

    __tablename__ = "quota_usage"
    node_id: Mapped[str] = mapped_column(ForeignKey("quota_nodes.id", ondelete="CASCADE"), primary_key=True)
    resource: Mapped[str] = mapped_column(String(40), primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    #: since when usage is above the limit (a burst rule allows it for a while)
    over_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class QuotaCharge(Base):
    """What one resource row holds on the tree (``vm``, ``vm-...``), released exactly once."""

    __tablename__ = "quota_charges"
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("quota_nodes.id", ondelete="CASCADE"), index=True)
    amounts: Mapped[dict[str, int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class QuotaTemplate(Timestamped, Versioned, Base):
    """Default limits copied onto new nodes of a kind (the default template of that kind)."""

    __tablename__ = "quota_templates"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    #: tenant, project, user
    applies_to: Mapped[str] = mapped_column(String(16))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    limits: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)


class CapacityReservation(Timestamped, Versioned, Base):
    """Capacity booked on one host for a project during a window (Blazar's lease)."""

    __tablename__ = "capacity_reservations"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), index=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mb: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    #: pending (window not begun), active (held on the host), expired, cancelled
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    #: what the project's VMs placed through it use now
    vcpus_used: Mapped[int] = mapped_column(Integer, default=0)
    ram_mb_used: Mapped[int] = mapped_column(Integer, default=0)


class Price(Timestamped, Base):
    """Price of one unit of a resource for one hour (``vcpus``: a vCPU-hour; ``ram_mb``: a GiB-hour)."""

    __tablename__ = "prices"
    resource: Mapped[str] = mapped_column(String(40), primary_key=True)
    per_hour: Mapped[float] = mapped_column(Float)


class Budget(Timestamped, Versioned, Base):
    """A monthly spending cap of a tenant or project (``month`` None: every month)."""

    __tablename__ = "budgets"
    __table_args__ = (UniqueConstraint("node_id", "month"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: ``tenant:<id>`` or ``project:<id>``
    node_id: Mapped[str] = mapped_column(ForeignKey("quota_nodes.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    month: Mapped[str | None] = mapped_column(String(7), nullable=True)
    amount: Mapped[float] = mapped_column(Float)


class LedgerEntry(Base):
    """Metered consumption of one project and resource within one hour (unit-hours and cost)."""

    __tablename__ = "usage_ledger"
    __table_args__ = (UniqueConstraint("project_id", "resource", "hour"),)
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    project_id: Mapped[str] = mapped_column(String(40), index=True)
    resource: Mapped[str] = mapped_column(String(40))
    hour: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    quantity: Mapped[float] = mapped_column(Float, default=0.0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)


class MeterState(Base):
    """When metering last ran: the next run covers the time since (so no second is counted twice)."""

    __tablename__ = "meter_state"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PolicyRule(Timestamped, Versioned, Base):
    """A rule of the policy engine, evaluated on every request that charges quota.

    ``kind``: ``threshold`` (params ``warn_pct``, ``deny_pct``), ``burst`` (``burst_pct``,
    ``max_duration_s``), ``max_size`` (``max``: the most one request may ask for).
    """

    __tablename__ = "policy_rules"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    #: a registered resource, or ``*`` for every resource
    resource: Mapped[str] = mapped_column(String(40), default="*")
    #: only requests by this role (None: everyone)
    role: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: only this node and its subtree (None: everywhere)
    node_id: Mapped[str | None] = mapped_column(
        ForeignKey("quota_nodes.id", ondelete="CASCADE"), nullable=True
    )
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)

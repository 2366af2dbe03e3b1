"""Images, flavors, hosts and virtual machines."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, UTCDateTime, Versioned, utcnow


class Image(Timestamped, Versioned, Base):
    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    #: "queued" (no data yet), "importing", "active", "error"
    status: Mapped[str] = mapped_column(String(16), default="queued")
    #: "raw" or "qcow2", as measured by ``qemu-img info``
    disk_format: Mapped[str | None] = mapped_column(String(16), nullable=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    virtual_size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    checksum_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: visible to every tenant (only admins publish)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    #: direct kernel boot (AKI/ARI style): a kernel and initrd stored beside the disk
    has_kernel: Mapped[bool] = mapped_column(Boolean, default=False)
    has_initrd: Mapped[bool] = mapped_column(Boolean, default=False)
    kernel_cmdline: Mapped[str] = mapped_column(String(1024), default="")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: the VM whose disk this image was made from (a snapshot: counted by the ``snapshots`` quota)
    snapshot_of: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: machine type, firmware, Secure Boot, vTPM asked for (``compute.hardware``): keys left out are unset
    hardware: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    #: a template (``compute/templates.py``): the immutable base of linked clones, kept while they use it
    template: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Flavor(Timestamped, Versioned, Base):
    __tablename__ = "flavors"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    #: traits a host must have (``gpu``, ``hw:avx512``) and traits it must not have
    required_traits: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    forbidden_traits: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    #: machine type, firmware, Secure Boot, vTPM asked for (``compute.hardware``): keys left out are unset
    hardware: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))


class Host(Timestamped, Versioned, Base):
    __tablename__ = "hosts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    driver: Mapped[str] = mapped_column(String(16))
    accelerator: Mapped[str] = mapped_column(String(8))
    cpus: Mapped[int] = mapped_column(Integer)
    cpu_model: Mapped[str] = mapped_column(String(128), default="")
    ram_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer, default=0)
    #: "up", "down", "maintenance"
    state: Mapped[str] = mapped_column(String(16), default="up")
    last_heartbeat: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: when the HA monitor declared the host failed and fenced (its agent's lease had run out)
    fenced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cpu_allocation_ratio: Mapped[float] = mapped_column(default=4.0)
    ram_allocation_ratio: Mapped[float] = mapped_column(default=1.0)
    #: placement counters: the sum of this host's allocations, changed only by the
    #: conditional UPDATEs of ``compute.placement.claims`` (never through the ORM)
    vcpus_used: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ram_mb_used: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: capacity held for active reservations (``quota.reservations``) and not yet used by their VMs:
    #: other projects' claims count it as taken
    vcpus_reserved: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ram_mb_reserved: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: ``{"zone": "a", "rack": "r12"}``: matched by a VM's ``placement.labels``
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    #: free strings (``gpu``, ``hw:avx512``, ``sriov``) matched by flavor traits
    traits: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    #: the agent-reported address its VXLAN tunnels use (NOVACRON_UNDERLAY_IP)
    underlay_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Allocation(Base):
    """What a VM holds on its host (Placement's allocation): released exactly once."""

    __tablename__ = "allocations"
    vm_id: Mapped[str] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), primary_key=True)
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), index=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mb: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: the reservation this VM was placed through, and how much of it it uses (given back on release)
    reservation_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    res_vcpus: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    res_ram_mb: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Aggregate(Timestamped, Versioned, Base):
    """A named group of hosts with metadata (rack, power domain, dedicated hardware)."""

    __tablename__ = "aggregates"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    meta: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)


class AggregateHost(Base):
    __tablename__ = "aggregate_hosts"
    aggregate_id: Mapped[str] = mapped_column(
        ForeignKey("aggregates.id", ondelete="CASCADE"), primary_key=True
    )
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True)


class ServerGroup(Timestamped, Versioned, Base):
    """VMs placed together (affinity) or apart (anti-affinity); hard refuses, soft only weighs."""

    __tablename__ = "server_groups"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    #: "affinity" or "anti-affinity"
    policy: Mapped[str] = mapped_column(String(16))
    hard: Mapped[bool] = mapped_column(Boolean, default=True)


class VM(Timestamped, Versioned, Base):
    __tablename__ = "vms"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        # the list's default order: a page is read in order and stops at its limit, no sort of all
        Index("ix_vms_created_at_id", "created_at", "id"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    image_id: Mapped[str | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"), nullable=True)
    flavor_id: Mapped[str | None] = mapped_column(
        ForeignKey("flavors.id", ondelete="SET NULL"), nullable=True
    )
    host_id: Mapped[str | None] = mapped_column(ForeignKey("hosts.id"), nullable=True, index=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    user_data: Mapped[str] = mapped_column(Text, default="")
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: what the tenant asked for: running, stopped, paused, deleted
    desired_state: Mapped[str] = mapped_column(String(16), default="running")
    #: what the platform observed: building, running, paused, stopped, crashed, error, deleting
    state: Mapped[str] = mapped_column(String(16), default="building", index=True)
    #: the operation in progress, if any ("creating", "stopping", ...)
    task_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    state_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    server_group_id: Mapped[str | None] = mapped_column(
        ForeignKey("server_groups.id", ondelete="SET NULL"), nullable=True, index=True
    )
    #: the request spec, fixed at create time: aggregate id, labels, required/forbidden traits
    placement: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    #: restart on another host when this one fails (after it is fenced); higher priority first
    ha: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    ha_priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: when a migration (live, cold, rebalance or HA restart) last moved it: the rebalance cool-down
    moved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: ``{"tier": "web"}``: what security-group label policies select
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    #: the machine it runs as, fixed at create time from its flavor and image (``compute.hardware``)
    hardware: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    #: live-resize headroom of its running QEMU ({"max_vcpus", "max_ram_mb", "dimms_mb"}; {}: none,
    #: a VM started before it existed): set at each fresh boot, kept by a migration (compute.live_resize)
    hotplug: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))

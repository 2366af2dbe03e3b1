"""Images, flavors, hosts and virtual machines."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, UTCDateTime, Versioned


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


class Flavor(Timestamped, Versioned, Base):
    __tablename__ = "flavors"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)


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
    cpu_allocation_ratio: Mapped[float] = mapped_column(default=4.0)
    ram_allocation_ratio: Mapped[float] = mapped_column(default=1.0)


class VM(Timestamped, Versioned, Base):
    __tablename__ = "vms"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
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

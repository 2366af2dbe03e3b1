"""Volumes: block devices of a project, kept in a storage pool, attached to at most one VM; and
their snapshots (points in time of one volume, kept inside its qcow2 as internal snapshots)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, Versioned


class Volume(Timestamped, Versioned, Base):
    """A block device in a storage pool (``compute/pools.py``); ``vm_id`` is the VM it is attached to.

    ``status``: creating, available, attaching, in-use, detaching, extending, snapshotting,
    limiting, cloning (a clone reads it), deleting, error. A volume attached to a stopped VM is
    ``in-use`` too: the VM's spec carries it to its next start.
    """

    __tablename__ = "volumes"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    size_gb: Mapped[int] = mapped_column(Integer)
    #: the storage pool's driver (``file``; ``rbd`` later)
    pool: Mapped[str] = mapped_column(String(16), default="file")
    #: where the pool keeps it, as a host opens it (the ``file`` pool: the qcow2's path)
    location: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="creating")
    source_image_id: Mapped[str | None] = mapped_column(
        ForeignKey("images.id", ondelete="SET NULL"), nullable=True
    )
    #: made as a copy of this snapshot, or a clone of this volume (ids kept after their delete)
    source_snapshot_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    source_volume_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    vm_id: Mapped[str | None] = mapped_column(
        ForeignKey("vms.id", ondelete="SET NULL"), nullable=True, index=True
    )
    #: the VM's root disk (bootindex 1) rather than a data disk: it stays with the VM until deleted
    boot: Mapped[bool] = mapped_column(Boolean, default=False)
    #: QEMU throttle-group limits (``compute/volume_limits.py``): absent keys are unlimited
    io_limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class VolumeSnapshot(Timestamped, Versioned, Base):
    """A point in time of one volume: a qcow2 internal snapshot (named by this id) in its file.

    ``status``: creating, available, deleting, error. ``size_gb`` is the volume's size then (a
    volume made from it is at least that large).
    """

    __tablename__ = "volume_snapshots"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    volume_id: Mapped[str] = mapped_column(ForeignKey("volumes.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    size_gb: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="creating")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

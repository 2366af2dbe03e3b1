"""Volumes: block devices of a project, kept in a storage pool, attached to at most one VM."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, Versioned


class Volume(Timestamped, Versioned, Base):
    """A block device in a storage pool (``compute/pools.py``); ``vm_id`` is the VM it is attached to.

    ``status``: creating, available, attaching, in-use, detaching, extending, error. A volume
    attached to a stopped VM is ``in-use`` too: the VM's spec carries it to its next start.
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
    vm_id: Mapped[str | None] = mapped_column(
        ForeignKey("vms.id", ondelete="SET NULL"), nullable=True, index=True
    )
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

"""VM snapshots: points in time of a VM's root disk (and RAM), a tree per VM (virt/snapshots.py)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, Versioned


class VmSnapshot(Timestamped, Versioned, Base):
    """One snapshot of a VM: a qcow2 internal snapshot named ``id`` in the VM's disk.

    ``parent_id`` is the snapshot the VM's disk stood on when this one was taken (the tree);
    ``current`` marks the one the VM's disk stands on now (the last taken or reverted to), at most
    one per VM. ``status``: creating, available, reverting, deleting, error.
    ``consistency``: crash, application (filesystems frozen by the guest agent, or a stopped VM)
    or memory (the guest's RAM is in the snapshot: a revert resumes the running guest there).
    """

    __tablename__ = "vm_snapshots"
    __table_args__ = (UniqueConstraint("vm_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    vm_id: Mapped[str] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("vm_snapshots.id", ondelete="SET NULL"), nullable=True
    )
    current: Mapped[bool] = mapped_column(Boolean, default=False)
    memory: Mapped[bool] = mapped_column(Boolean, default=False)
    quiesce: Mapped[bool] = mapped_column(Boolean, default=True)
    consistency: Mapped[str] = mapped_column(String(16), default="")
    vm_state_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16), default="creating")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

"""Backups: targets, policies, the snapshot catalogue, restore jobs and DR runbooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, UTCDateTime, Versioned


class BackupTarget(Timestamped, Versioned, Base):
    """Where chunks go: a local directory or an object store (admins define them)."""

    __tablename__ = "backup_targets"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    #: local, s3, azure, gcs
    type: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    chunk_size: Mapped[int] = mapped_column(Integer, default=4 << 20)
    #: the target (at the recovery site) this one's objects are copied to by the backup controller
    replica_target_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    replicate_every_s: Mapped[int] = mapped_column(Integer, default=300, server_default="300")
    #: when the last replication pass finished, and why the last one failed (None: it did not)
    replicated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    replication_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class BackupPolicy(Timestamped, Versioned, Base):
    """A schedule and a retention for one VM or every VM of a project."""

    __tablename__ = "backup_policies"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    #: None: every VM of the project
    vm_id: Mapped[str | None] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), nullable=True)
    target_id: Mapped[str] = mapped_column(ForeignKey("backup_targets.id", ondelete="RESTRICT"))
    interval_s: Mapped[int] = mapped_column(Integer, default=86400)
    #: GFS: keep_last, hourly, daily, weekly, monthly, yearly
    retention: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    #: a snapshot cannot be deleted or pruned until this long after it was taken
    immutable_s: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class BackupSnapshot(Timestamped, Versioned, Base):
    """One backup of a VM: logically full (an index of chunks), whatever was read to make it."""

    __tablename__ = "backup_snapshots"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    #: kept when the VM is deleted: its backups outlive it
    vm_id: Mapped[str | None] = mapped_column(String(40), index=True, nullable=True)
    vm_name: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[str] = mapped_column(ForeignKey("backup_targets.id", ondelete="RESTRICT"))
    policy_id: Mapped[str | None] = mapped_column(
        ForeignKey("backup_policies.id", ondelete="SET NULL"), nullable=True
    )
    parent_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: pending, running, available, failed
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    #: full or incremental (what was read), and why
    mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: crash or application
    consistency: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: [{name, size}]
    disks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    changed_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_changed: Mapped[int] = mapped_column(Integer, default=0)
    chunks_uploaded: Mapped[int] = mapped_column(Integer, default=0)
    bytes_uploaded: Mapped[int] = mapped_column(BigInteger, default=0)
    #: what a restore needs to rebuild the VM: image, flavor figures, user-data
    source: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    verify_result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    restore_test_result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    hold_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    immutable_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: where a complete copy of it is (the replica of its target), and since when: what failover uses
    replica_target_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    replicated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RestoreJob(Timestamped, Base):
    __tablename__ = "restore_jobs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    snapshot_id: Mapped[str] = mapped_column(
        ForeignKey("backup_snapshots.id", ondelete="CASCADE"), index=True
    )
    #: new_vm, instant (a new VM booted from the backup), existing_vm, image, test, drill
    mode: Mapped[str] = mapped_column(String(16))
    vm_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: pending, running, succeeded, failed
    state: Mapped[str] = mapped_column(String(16), default="pending")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DRRunbook(Timestamped, Versioned, Base):
    """VMs to bring back from their backups, in order, with RPO and RTO targets."""

    __tablename__ = "dr_runbooks"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    #: [{vm: id or name as backed up, name: name of the restored VM, wait_for: console marker}]
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    rpo_target_s: Mapped[int] = mapped_column(Integer, default=86400)
    rto_target_s: Mapped[int] = mapped_column(Integer, default=3600)
    last_drill: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    last_drill_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: the aggregate (host group) the VMs fail over to
    recovery_group: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: source network id -> network id at the recovery site
    network_map: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")
    #: where a dry run's VMs are attached (an isolated network); None: no NIC at all
    test_network: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: normal, failed-over, failed-back
    state: Mapped[str] = mapped_column(String(16), default="normal", server_default="normal")
    state_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: while failed over: [{vm_id (original), recovered_vm_id, name, backup_id}]
    failover: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    #: the last dry run's report (RTO measured there)
    last_test: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: VMs whose RPO is missed now (an alert is raised when one joins)
    rpo_missed: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")

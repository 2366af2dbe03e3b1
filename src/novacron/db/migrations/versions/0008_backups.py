"""backups: chunk stores, snapshots, retention, replication, DR

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backup_targets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_targets")),
        sa.UniqueConstraint("name", name=op.f("uq_backup_targets_name")),
    )
    op.create_table(
        "dr_runbooks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("rpo_target_s", sa.Integer(), nullable=False),
        sa.Column("rto_target_s", sa.Integer(), nullable=False),
        sa.Column("last_drill", sa.JSON(), nullable=True),
        sa.Column("last_drill_at", novacron.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_dr_runbooks_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_dr_runbooks_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dr_runbooks")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_dr_runbooks_project_id")),
    )
    op.create_index(op.f("ix_dr_runbooks_project_id"), "dr_runbooks", ["project_id"], unique=False)
    op.create_index(op.f("ix_dr_runbooks_tenant_id"), "dr_runbooks", ["tenant_id"], unique=False)
    op.create_table(
        "backup_policies",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("vm_id", sa.String(length=40), nullable=True),
        sa.Column("target_id", sa.String(length=40), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("retention", sa.JSON(), nullable=False),
        sa.Column("immutable_s", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("last_run_at", novacron.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_backup_policies_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["backup_targets.id"],
            name=op.f("fk_backup_policies_target_id_backup_targets"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_backup_policies_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vm_id"], ["vms.id"], name=op.f("fk_backup_policies_vm_id_vms"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_policies")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_backup_policies_project_id")),
    )
    op.create_index(op.f("ix_backup_policies_project_id"), "backup_policies", ["project_id"], unique=False)
    op.create_index(op.f("ix_backup_policies_tenant_id"), "backup_policies", ["tenant_id"], unique=False)
    op.create_table(
        "backup_snapshots",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("vm_id", sa.String(length=40), nullable=True),
        sa.Column("vm_name", sa.String(length=64), nullable=False),
        sa.Column("target_id", sa.String(length=40), nullable=False),
        sa.Column("policy_id", sa.String(length=40), nullable=True),
        sa.Column("parent_id", sa.String(length=40), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("consistency", sa.String(length=16), nullable=True),
        sa.Column("disks", sa.JSON(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("bytes_read", sa.BigInteger(), nullable=False),
        sa.Column("changed_bytes", sa.BigInteger(), nullable=False),
        sa.Column("chunks_total", sa.Integer(), nullable=False),
        sa.Column("chunks_changed", sa.Integer(), nullable=False),
        sa.Column("chunks_uploaded", sa.Integer(), nullable=False),
        sa.Column("bytes_uploaded", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.JSON(), nullable=False),
        sa.Column("verify_result", sa.JSON(), nullable=True),
        sa.Column("restore_test_result", sa.JSON(), nullable=True),
        sa.Column("legal_hold", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("hold_reason", sa.Text(), nullable=True),
        sa.Column("immutable_until", novacron.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("task_id", sa.String(length=40), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("completed_at", novacron.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["policy_id"],
            ["backup_policies.id"],
            name=op.f("fk_backup_snapshots_policy_id_backup_policies"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_backup_snapshots_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["backup_targets.id"],
            name=op.f("fk_backup_snapshots_target_id_backup_targets"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_backup_snapshots_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_snapshots")),
    )
    op.create_index(op.f("ix_backup_snapshots_project_id"), "backup_snapshots", ["project_id"], unique=False)
    op.create_index(op.f("ix_backup_snapshots_state"), "backup_snapshots", ["state"], unique=False)
    op.create_index(op.f("ix_backup_snapshots_tenant_id"), "backup_snapshots", ["tenant_id"], unique=False)
    op.create_index(op.f("ix_backup_snapshots_vm_id"), "backup_snapshots", ["vm_id"], unique=False)
    op.create_table(
        "restore_jobs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("snapshot_id", sa.String(length=40), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("vm_id", sa.String(length=40), nullable=True),
        sa.Column("task_id", sa.String(length=40), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("finished_at", novacron.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_restore_jobs_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["backup_snapshots.id"],
            name=op.f("fk_restore_jobs_snapshot_id_backup_snapshots"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_restore_jobs_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_restore_jobs")),
    )
    op.create_index(op.f("ix_restore_jobs_project_id"), "restore_jobs", ["project_id"], unique=False)
    op.create_index(op.f("ix_restore_jobs_snapshot_id"), "restore_jobs", ["snapshot_id"], unique=False)
    op.create_index(op.f("ix_restore_jobs_tenant_id"), "restore_jobs", ["tenant_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_restore_jobs_tenant_id"), table_name="restore_jobs")
    op.drop_index(op.f("ix_restore_jobs_snapshot_id"), table_name="restore_jobs")
    op.drop_index(op.f("ix_restore_jobs_project_id"), table_name="restore_jobs")
    op.drop_table("restore_jobs")
    op.drop_index(op.f("ix_backup_snapshots_vm_id"), table_name="backup_snapshots")
    op.drop_index(op.f("ix_backup_snapshots_tenant_id"), table_name="backup_snapshots")
    op.drop_index(op.f("ix_backup_snapshots_state"), table_name="backup_snapshots")
    op.drop_index(op.f("ix_backup_snapshots_project_id"), table_name="backup_snapshots")
    op.drop_table("backup_snapshots")
    op.drop_index(op.f("ix_backup_policies_tenant_id"), table_name="backup_policies")
    op.drop_index(op.f("ix_backup_policies_project_id"), table_name="backup_policies")
    op.drop_table("backup_policies")
    op.drop_index(op.f("ix_dr_runbooks_tenant_id"), table_name="dr_runbooks")
    op.drop_index(op.f("ix_dr_runbooks_project_id"), table_name="dr_runbooks")
    op.drop_table("dr_runbooks")
    op.drop_table("backup_targets")

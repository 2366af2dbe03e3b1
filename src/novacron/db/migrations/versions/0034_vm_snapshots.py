"""vm_snapshots: live snapshots of a VM's disk (and RAM), a tree per VM

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None

_WHEN = novacron.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "vm_snapshots",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("vm_id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("parent_id", sa.String(length=40), nullable=True),
        sa.Column("current", sa.Boolean(), nullable=False),
        sa.Column("memory", sa.Boolean(), nullable=False),
        sa.Column("quiesce", sa.Boolean(), nullable=False),
        sa.Column("consistency", sa.String(length=16), nullable=False),
        sa.Column("vm_state_bytes", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["vm_id"], ["vms.id"], name=op.f("fk_vm_snapshots_vm_id_vms"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_vm_snapshots_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_vm_snapshots_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["vm_snapshots.id"],
            name=op.f("fk_vm_snapshots_parent_id_vm_snapshots"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vm_snapshots")),
        sa.UniqueConstraint("vm_id", "name", name=op.f("uq_vm_snapshots_vm_id")),
    )
    op.create_index(op.f("ix_vm_snapshots_vm_id"), "vm_snapshots", ["vm_id"], unique=False)
    op.create_index(op.f("ix_vm_snapshots_project_id"), "vm_snapshots", ["project_id"], unique=False)
    op.create_index(op.f("ix_vm_snapshots_tenant_id"), "vm_snapshots", ["tenant_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_vm_snapshots_tenant_id"), table_name="vm_snapshots")
    op.drop_index(op.f("ix_vm_snapshots_project_id"), table_name="vm_snapshots")
    op.drop_index(op.f("ix_vm_snapshots_vm_id"), table_name="vm_snapshots")
    op.drop_table("vm_snapshots")

"""volume depth: I/O limits, boot volumes, clone and snapshot sources; volume snapshots

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None

_WHEN = novacron.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("volumes") as batch:
        batch.add_column(sa.Column("source_snapshot_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("source_volume_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("boot", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("io_limits", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
    op.create_table(
        "volume_snapshots",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("volume_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("size_gb", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_volume_snapshots_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_volume_snapshots_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["volume_id"],
            ["volumes.id"],
            name=op.f("fk_volume_snapshots_volume_id_volumes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_snapshots")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_volume_snapshots_project_id")),
    )
    for col in ("project_id", "tenant_id", "volume_id"):
        op.create_index(op.f(f"ix_volume_snapshots_{col}"), "volume_snapshots", [col], unique=False)


def downgrade() -> None:
    for col in ("volume_id", "tenant_id", "project_id"):
        op.drop_index(op.f(f"ix_volume_snapshots_{col}"), table_name="volume_snapshots")
    op.drop_table("volume_snapshots")
    with op.batch_alter_table("volumes") as batch:
        for col in ("io_limits", "boot", "source_volume_id", "source_snapshot_id"):
            batch.drop_column(col)

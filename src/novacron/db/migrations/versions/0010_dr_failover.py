"""DR runbook failover and fail-back to a host group, RPO alerts

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backup_targets") as batch:
        batch.add_column(sa.Column("replica_target_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("replicate_every_s", sa.Integer(), nullable=False, server_default="300"))
        batch.add_column(
            sa.Column("replicated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("replication_error", sa.Text(), nullable=True))
    with op.batch_alter_table("backup_snapshots") as batch:
        batch.add_column(sa.Column("replica_target_id", sa.String(length=40), nullable=True))
        batch.add_column(
            sa.Column("replicated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("dr_runbooks") as batch:
        batch.add_column(sa.Column("recovery_group", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("network_map", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("test_network", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("state", sa.String(length=16), nullable=False, server_default="normal"))
        batch.add_column(
            sa.Column("state_changed_at", novacron.db.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("failover", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("last_test", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("rpo_missed", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("dr_runbooks") as batch:
        for name in (
            "rpo_missed", "last_test", "failover", "state_changed_at", "state", "test_network",
            "network_map", "recovery_group",
        ):  # fmt: skip
            batch.drop_column(name)
    with op.batch_alter_table("backup_snapshots") as batch:
        batch.drop_column("replicated_at")
        batch.drop_column("replica_target_id")
    with op.batch_alter_table("backup_targets") as batch:
        for name in ("replication_error", "replicated_at", "replicate_every_s", "replica_target_id"):
            batch.drop_column(name)

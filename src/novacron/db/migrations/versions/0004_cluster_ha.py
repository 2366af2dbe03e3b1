"""cluster: HA flags and priority, the rebalance cool-down, host fencing, task cancellation

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vms") as batch:
        batch.add_column(sa.Column("ha", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("ha_priority", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("moved_at", novacron.db.base.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("fenced_at", novacron.db.base.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("cancel_requested")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("fenced_at")
    with op.batch_alter_table("vms") as batch:
        batch.drop_column("moved_at")
        batch.drop_column("ha_priority")
        batch.drop_column("ha")

"""scaling_groups.drain_timeout_s: how long a leaving member's sessions may take to end

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scaling_groups") as batch:
        batch.add_column(sa.Column("drain_timeout_s", sa.Integer(), nullable=False, server_default="30"))


def downgrade() -> None:
    with op.batch_alter_table("scaling_groups") as batch:
        batch.drop_column("drain_timeout_s")

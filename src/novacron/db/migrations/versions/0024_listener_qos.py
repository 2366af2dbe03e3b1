"""listener_qos: a listener's bandwidth and connection-rate limits

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lb_listeners") as batch:
        batch.add_column(sa.Column("qos", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lb_listeners") as batch:
        batch.drop_column("qos")

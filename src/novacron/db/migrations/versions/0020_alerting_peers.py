"""alerting_peers: the replicas' Alertmanagers that gossip as one cluster

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerting_peers",
        sa.Column("address", sa.String(length=260), nullable=False),
        sa.Column("replica", sa.String(length=255), nullable=False),
        sa.Column("seen_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address"),
    )


def downgrade() -> None:
    op.drop_table("alerting_peers")

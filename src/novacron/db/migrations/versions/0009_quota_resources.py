"""quotas on every registered resource (networks, ports, floating IPs, snapshots, backup storage)

Images made from a VM's disk remember the VM (``images.snapshot_of``): they are the ``snapshots``
a project's quota counts, and reconciliation recounts them from this column.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("snapshot_of", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("snapshot_of")

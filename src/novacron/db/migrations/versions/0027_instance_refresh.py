"""instance refresh: the launch template's version on scaling groups and on each member

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scaling_groups") as batch:
        batch.add_column(sa.Column("template_version", sa.Integer(), server_default="1", nullable=False))
    with op.batch_alter_table("scaling_group_members") as batch:
        batch.add_column(sa.Column("template_version", sa.Integer(), server_default="1", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("scaling_group_members") as batch:
        batch.drop_column("template_version")
    with op.batch_alter_table("scaling_groups") as batch:
        batch.drop_column("template_version")

"""compliance_runs, compliance_results; users.last_login_at (compliance/)

Revision ID: 0045
Revises: 0044
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from novacron.db.base import UTCDateTime

revision = "0045"
down_revision = "0044"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compliance_runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), nullable=True, index=True),
        sa.Column("trigger", sa.String(64), nullable=False),
        sa.Column("started_at", UTCDateTime(timezone=True), nullable=False, index=True),
        sa.Column("finished_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("not_applicable", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_table(
        "compliance_results",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "run_id",
            sa.String(40),
            sa.ForeignKey("compliance_runs.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("check_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("checked_at", UTCDateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("last_login_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("last_login_at")
    op.drop_table("compliance_results")
    op.drop_table("compliance_runs")

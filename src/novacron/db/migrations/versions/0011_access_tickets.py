"""Single-use WebSocket/SSE tickets (tokens no longer travel in URLs or cookies)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_tickets",
        sa.Column("ticket_hash", sa.String(length=64), primary_key=True),
        sa.Column(
            "user_id", sa.String(length=40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("token_id", sa.String(length=40), nullable=False),
        sa.Column("token_exp", sa.Float(), nullable=False),
        sa.Column("issued_at", sa.Float(), nullable=False),
        sa.Column("session_id", sa.String(length=40), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("expires_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_access_tickets_user_id", "access_tickets", ["user_id"])
    op.create_index("ix_access_tickets_expires_at", "access_tickets", ["expires_at"])


def downgrade() -> None:
    op.drop_table("access_tickets")

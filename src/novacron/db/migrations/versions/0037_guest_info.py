"""guest information: what a VM's guest agent tells and the addresses its NICs leased

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from novacron.db.base import UTCDateTime

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vm_guest_info",
        sa.Column(
            "vm_id", sa.String(length=40), sa.ForeignKey("vms.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("agent_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("os", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("interfaces", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
        sa.Column("filesystems", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
        sa.Column("lease_ips", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
        sa.Column("lease_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("ips", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
        sa.Column("source", sa.String(length=8), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("vm_guest_info")

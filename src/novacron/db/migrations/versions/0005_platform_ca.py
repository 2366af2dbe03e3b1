"""the platform CA in the database, shared by every server replica

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificate_authorities",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("key_pem", sa.Text(), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_certificate_authorities")),
    )


def downgrade() -> None:
    op.drop_table("certificate_authorities")

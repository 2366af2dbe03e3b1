"""node agents: join tokens, node credentials, host operations

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "join_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("used_by_host", sa.String(length=40), nullable=True),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_join_tokens")),
    )
    op.create_table(
        "node_credentials",
        sa.Column("host_id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", novacron.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_node_credentials_host_id_hosts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("host_id", name=op.f("pk_node_credentials")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_node_credentials_token_hash")),
    )
    op.create_table(
        "host_operations",
        sa.Column("id", sa.String(length=120), nullable=False),
        sa.Column("host_id", sa.String(length=40), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=True),
        sa.Column("op", sa.String(length=32), nullable=False),
        sa.Column("instance_id", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("claimed_at", novacron.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_host_operations_host_id_hosts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_host_operations")),
    )
    with op.batch_alter_table("host_operations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_host_operations_host_id"), ["host_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_host_operations_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_host_operations_task_id"), ["task_id"], unique=False)


def downgrade() -> None:
    op.drop_table("host_operations")
    op.drop_table("node_credentials")
    op.drop_table("join_tokens")

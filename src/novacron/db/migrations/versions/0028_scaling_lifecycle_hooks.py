"""scaling_lifecycle_hooks: signed webhooks a scaling group awaits on launch and terminate

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

_WHEN = novacron.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scaling_lifecycle_hooks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("group_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=48), nullable=False),
        sa.Column("transition", sa.String(length=16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("safe_url", sa.Text(), nullable=False),
        sa.Column("signing_secret", sa.Text(), nullable=False),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("default_result", sa.String(length=16), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["scaling_groups.id"],
            name=op.f("fk_scaling_lifecycle_hooks_group_id_scaling_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_scaling_lifecycle_hooks_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scaling_lifecycle_hooks")),
        sa.UniqueConstraint("group_id", "name", name=op.f("uq_scaling_lifecycle_hooks_group_id")),
    )
    op.create_index(
        op.f("ix_scaling_lifecycle_hooks_group_id"), "scaling_lifecycle_hooks", ["group_id"], unique=False
    )
    op.create_index(
        op.f("ix_scaling_lifecycle_hooks_tenant_id"), "scaling_lifecycle_hooks", ["tenant_id"], unique=False
    )
    with op.batch_alter_table("scaling_group_members") as batch:
        # pending_launch / pending_terminate do not fit 16 characters... with room to spare
        batch.alter_column("state", existing_type=sa.String(length=16), type_=sa.String(length=24))
        batch.add_column(sa.Column("action_token", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("action_deadline", _WHEN, nullable=True))
        batch.add_column(sa.Column("action", sa.JSON(), nullable=False, server_default="{}"))
        batch.create_unique_constraint(op.f("uq_scaling_group_members_action_token"), ["action_token"])


def downgrade() -> None:
    with op.batch_alter_table("scaling_group_members") as batch:
        batch.drop_constraint(op.f("uq_scaling_group_members_action_token"), type_="unique")
        batch.drop_column("action")
        batch.drop_column("action_deadline")
        batch.drop_column("action_token")
        batch.alter_column("state", existing_type=sa.String(length=24), type_=sa.String(length=16))
    op.drop_table("scaling_lifecycle_hooks")

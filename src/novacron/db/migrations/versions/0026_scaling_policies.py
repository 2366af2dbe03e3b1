"""scaling_policies: target-tracking, step, scheduled and predictive policies of scaling groups

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

_WHEN = novacron.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scaling_policies",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("group_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=48), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("cooldown_s", sa.Integer(), nullable=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["scaling_groups.id"],
            name=op.f("fk_scaling_policies_group_id_scaling_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_scaling_policies_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scaling_policies")),
        sa.UniqueConstraint("group_id", "name", name=op.f("uq_scaling_policies_group_id")),
    )
    op.create_index(op.f("ix_scaling_policies_group_id"), "scaling_policies", ["group_id"], unique=False)
    op.create_index(op.f("ix_scaling_policies_tenant_id"), "scaling_policies", ["tenant_id"], unique=False)


def downgrade() -> None:
    op.drop_table("scaling_policies")

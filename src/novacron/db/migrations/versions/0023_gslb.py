"""gslb: global names with their sites (tenant-scoped) and the CIDR → region table

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

_WHEN = novacron.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "gslb_names",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("ttl", sa.Integer(), nullable=False),
        sa.Column("sites", sa.JSON(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_gslb_names_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gslb_names")),
        sa.UniqueConstraint("name", name=op.f("uq_gslb_names_name")),
    )
    op.create_index(op.f("ix_gslb_names_tenant_id"), "gslb_names", ["tenant_id"], unique=False)
    op.create_table(
        "gslb_regions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("cidr", sa.String(length=64), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gslb_regions")),
        sa.UniqueConstraint("cidr", name=op.f("uq_gslb_regions_cidr")),
    )
    op.create_index(op.f("ix_gslb_regions_region"), "gslb_regions", ["region"], unique=False)


def downgrade() -> None:
    op.drop_table("gslb_regions")
    op.drop_table("gslb_names")

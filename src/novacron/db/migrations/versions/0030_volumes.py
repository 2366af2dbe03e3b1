"""volumes: block devices of a project in a storage pool, attached to at most one VM

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

_WHEN = novacron.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "volumes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("size_gb", sa.Integer(), nullable=False),
        sa.Column("pool", sa.String(length=16), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source_image_id", sa.String(length=40), nullable=True),
        sa.Column("vm_id", sa.String(length=40), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_volumes_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_volumes_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["source_image_id"],
            ["images.id"],
            name=op.f("fk_volumes_source_image_id_images"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["vm_id"], ["vms.id"], name=op.f("fk_volumes_vm_id_vms"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volumes")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_volumes_project_id")),
    )
    op.create_index(op.f("ix_volumes_project_id"), "volumes", ["project_id"], unique=False)
    op.create_index(op.f("ix_volumes_tenant_id"), "volumes", ["tenant_id"], unique=False)
    op.create_index(op.f("ix_volumes_vm_id"), "volumes", ["vm_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_volumes_vm_id"), table_name="volumes")
    op.drop_index(op.f("ix_volumes_tenant_id"), table_name="volumes")
    op.drop_index(op.f("ix_volumes_project_id"), table_name="volumes")
    op.drop_table("volumes")

"""custom_roles: tenants' own roles; role_assignments per tenant or project with label conditions;
API keys scoped to a project (identity/authz.py)

Revision ID: 0046
Revises: 0045
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from novacron.db.base import UTCDateTime

revision = "0046"
down_revision = "0045"
branch_labels = None
depends_on = None


def _times() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "custom_roles",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        *_times(),
        sa.UniqueConstraint("tenant_id", "name"),
    )
    op.create_table(
        "role_assignments",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True),
        sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), index=True),
        sa.Column("api_key_id", sa.String(40), sa.ForeignKey("api_keys.id", ondelete="CASCADE"), index=True),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(40), sa.ForeignKey("projects.id", ondelete="CASCADE"), index=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        *_times(),
    )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("project_id", sa.String(40), nullable=True))
        batch.create_index("ix_api_keys_project_id", ["project_id"])
        batch.create_foreign_key(
            "fk_api_keys_project_id", "projects", ["project_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint("fk_api_keys_project_id", type_="foreignkey")
        batch.drop_index("ix_api_keys_project_id")
        batch.drop_column("project_id")
    op.drop_table("role_assignments")
    op.drop_table("custom_roles")

"""scaling_groups: groups of identical VMs, their members and their activity history

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

_WHEN = novacron.db.base.UTCDateTime(timezone=True)


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"), ondelete=ondelete
    )


def upgrade() -> None:
    op.create_table(
        "scaling_groups",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=48), nullable=False),
        sa.Column("template", sa.JSON(), nullable=False),
        sa.Column("min_size", sa.Integer(), nullable=False),
        sa.Column("max_size", sa.Integer(), nullable=False),
        sa.Column("desired", sa.Integer(), nullable=False),
        sa.Column("lb_pools", sa.JSON(), nullable=False),
        sa.Column("termination_policy", sa.String(length=16), nullable=False),
        sa.Column("cooldown_s", sa.Integer(), nullable=False),
        sa.Column("warmup_s", sa.Integer(), nullable=False),
        sa.Column("server_group_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _fk("scaling_groups", "project_id", "projects", "CASCADE"),
        _fk("scaling_groups", "tenant_id", "tenants", "CASCADE"),
        _fk("scaling_groups", "server_group_id", "server_groups", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scaling_groups")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_scaling_groups_project_id")),
    )
    op.create_index(op.f("ix_scaling_groups_project_id"), "scaling_groups", ["project_id"], unique=False)
    op.create_index(op.f("ix_scaling_groups_tenant_id"), "scaling_groups", ["tenant_id"], unique=False)
    op.create_table(
        "scaling_group_members",
        sa.Column("vm_id", sa.String(length=40), nullable=False),
        sa.Column("group_id", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("protected_from_scale_in", sa.Boolean(), nullable=False),
        sa.Column("launched_at", _WHEN, nullable=False),
        sa.Column("health", sa.String(length=16), nullable=False),
        sa.Column("health_reason", sa.Text(), nullable=True),
        sa.Column("down_since", _WHEN, nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        _fk("scaling_group_members", "group_id", "scaling_groups", "CASCADE"),
        sa.PrimaryKeyConstraint("vm_id", name=op.f("pk_scaling_group_members")),
    )
    op.create_index(
        op.f("ix_scaling_group_members_group_id"), "scaling_group_members", ["group_id"], unique=False
    )
    op.create_table(
        "scaling_activities",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("group_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("policy", sa.String(length=64), nullable=True),
        sa.Column("numbers", sa.JSON(), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=True),
        sa.Column("started_at", _WHEN, nullable=False),
        sa.Column("finished_at", _WHEN, nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        _fk("scaling_activities", "group_id", "scaling_groups", "CASCADE"),
        _fk("scaling_activities", "tenant_id", "tenants", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scaling_activities")),
    )
    for column in ("group_id", "tenant_id", "started_at"):
        op.create_index(op.f(f"ix_scaling_activities_{column}"), "scaling_activities", [column], unique=False)


def downgrade() -> None:
    op.drop_table("scaling_activities")
    op.drop_table("scaling_group_members")
    op.drop_table("scaling_groups")

"""hierarchical quotas, reservations, budgets and usage ledger

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meter_state",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("last_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meter_state")),
    )
    op.create_table(
        "prices",
        sa.Column("resource", sa.String(length=40), nullable=False),
        sa.Column("per_hour", sa.Float(), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("resource", name=op.f("pk_prices")),
    )
    op.create_table(
        "quota_nodes",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("parent_id", sa.String(length=100), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=True),
        sa.Column("ref_id", sa.String(length=40), nullable=True),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["quota_nodes.id"],
            name=op.f("fk_quota_nodes_parent_id_quota_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quota_nodes")),
    )
    op.create_index(op.f("ix_quota_nodes_parent_id"), "quota_nodes", ["parent_id"], unique=False)
    op.create_index(op.f("ix_quota_nodes_tenant_id"), "quota_nodes", ["tenant_id"], unique=False)
    op.create_table(
        "quota_templates",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("applies_to", sa.String(length=16), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quota_templates")),
        sa.UniqueConstraint("name", name=op.f("uq_quota_templates_name")),
    )
    op.create_table(
        "usage_ledger",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("resource", sa.String(length=40), nullable=False),
        sa.Column("hour", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_ledger")),
        sa.UniqueConstraint("project_id", "resource", "hour", name=op.f("uq_usage_ledger_project_id")),
    )
    op.create_index(op.f("ix_usage_ledger_hour"), "usage_ledger", ["hour"], unique=False)
    op.create_index(op.f("ix_usage_ledger_project_id"), "usage_ledger", ["project_id"], unique=False)
    op.create_index(op.f("ix_usage_ledger_tenant_id"), "usage_ledger", ["tenant_id"], unique=False)
    op.create_table(
        "budgets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("node_id", sa.String(length=100), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=True),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"], ["quota_nodes.id"], name=op.f("fk_budgets_node_id_quota_nodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budgets")),
        sa.UniqueConstraint("node_id", "month", name=op.f("uq_budgets_node_id")),
    )
    op.create_index(op.f("ix_budgets_node_id"), "budgets", ["node_id"], unique=False)
    op.create_index(op.f("ix_budgets_tenant_id"), "budgets", ["tenant_id"], unique=False)
    op.create_table(
        "policy_rules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("resource", sa.String(length=40), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=True),
        sa.Column("node_id", sa.String(length=100), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["quota_nodes.id"],
            name=op.f("fk_policy_rules_node_id_quota_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_rules")),
        sa.UniqueConstraint("name", name=op.f("uq_policy_rules_name")),
    )
    op.create_table(
        "quota_charges",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=40), nullable=False),
        sa.Column("node_id", sa.String(length=100), nullable=False),
        sa.Column("amounts", sa.JSON(), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["quota_nodes.id"],
            name=op.f("fk_quota_charges_node_id_quota_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("kind", "resource_id", name=op.f("pk_quota_charges")),
    )
    op.create_index(op.f("ix_quota_charges_node_id"), "quota_charges", ["node_id"], unique=False)
    op.create_table(
        "quota_limits",
        sa.Column("node_id", sa.String(length=100), nullable=False),
        sa.Column("resource", sa.String(length=40), nullable=False),
        sa.Column("limit", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["quota_nodes.id"],
            name=op.f("fk_quota_limits_node_id_quota_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("node_id", "resource", name=op.f("pk_quota_limits")),
    )
    op.create_table(
        "quota_usage",
        sa.Column("node_id", sa.String(length=100), nullable=False),
        sa.Column("resource", sa.String(length=40), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("over_since", novacron.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["quota_nodes.id"],
            name=op.f("fk_quota_usage_node_id_quota_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("node_id", "resource", name=op.f("pk_quota_usage")),
    )
    op.create_table(
        "capacity_reservations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("host_id", sa.String(length=40), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("ram_mb", sa.Integer(), nullable=False),
        sa.Column("starts_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("vcpus_used", sa.Integer(), nullable=False),
        sa.Column("ram_mb_used", sa.Integer(), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_capacity_reservations_host_id_hosts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_capacity_reservations_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_capacity_reservations_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capacity_reservations")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_capacity_reservations_project_id")),
    )
    op.create_index(
        op.f("ix_capacity_reservations_ends_at"), "capacity_reservations", ["ends_at"], unique=False
    )
    op.create_index(
        op.f("ix_capacity_reservations_host_id"), "capacity_reservations", ["host_id"], unique=False
    )
    op.create_index(
        op.f("ix_capacity_reservations_project_id"), "capacity_reservations", ["project_id"], unique=False
    )
    op.create_index(
        op.f("ix_capacity_reservations_starts_at"), "capacity_reservations", ["starts_at"], unique=False
    )
    op.create_index(
        op.f("ix_capacity_reservations_status"), "capacity_reservations", ["status"], unique=False
    )
    op.create_index(
        op.f("ix_capacity_reservations_tenant_id"), "capacity_reservations", ["tenant_id"], unique=False
    )
    op.add_column("allocations", sa.Column("reservation_id", sa.String(length=40), nullable=True))
    op.add_column("allocations", sa.Column("res_vcpus", sa.Integer(), server_default="0", nullable=False))
    op.add_column("allocations", sa.Column("res_ram_mb", sa.Integer(), server_default="0", nullable=False))
    op.create_index(op.f("ix_allocations_reservation_id"), "allocations", ["reservation_id"], unique=False)
    # plain ADD COLUMN (constant defaults): SQLite does it in place; a batch copy of these tables
    # would be refused by the foreign keys pointing at them
    op.add_column("audit_log", sa.Column("detail", sa.Text(), nullable=True))
    op.add_column("hosts", sa.Column("vcpus_reserved", sa.Integer(), server_default="0", nullable=False))
    op.add_column("hosts", sa.Column("ram_mb_reserved", sa.Integer(), server_default="0", nullable=False))
    op.add_column("projects", sa.Column("parent_id", sa.String(length=40), nullable=True))
    op.create_index(op.f("ix_projects_parent_id"), "projects", ["parent_id"], unique=False)
    nodes = sa.table(
        "quota_nodes",
        sa.column("id", sa.String),
        sa.column("kind", sa.String),
        sa.column("depth", sa.Integer),
        sa.column("created_at", novacron.db.base.UTCDateTime),
        sa.column("updated_at", novacron.db.base.UTCDateTime),
        sa.column("version", sa.Integer),
    )
    now = novacron.db.base.utcnow()
    op.bulk_insert(
        nodes,
        [{"id": "system", "kind": "system", "depth": 0, "created_at": now, "updated_at": now, "version": 1}],
    )


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_index("ix_projects_parent_id")
        batch.drop_column("parent_id")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("ram_mb_reserved")
        batch.drop_column("vcpus_reserved")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("detail")
    with op.batch_alter_table("allocations") as batch:
        batch.drop_index("ix_allocations_reservation_id")
        batch.drop_column("res_ram_mb")
        batch.drop_column("res_vcpus")
        batch.drop_column("reservation_id")
    for table in (
        "capacity_reservations",
        "quota_usage",
        "quota_limits",
        "quota_charges",
        "policy_rules",
        "budgets",
        "usage_ledger",
        "quota_templates",
        "quota_nodes",
        "prices",
        "meter_state",
    ):
        op.drop_table(table)

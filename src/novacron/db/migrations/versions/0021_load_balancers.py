"""load_balancers: Octavia-style load balancers, their amphorae (legs on hosts), listeners, pools
and members

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loadbalancers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("vip_subnet_id", sa.String(length=40), nullable=False),
        sa.Column("vip_network_id", sa.String(length=40), nullable=False),
        sa.Column("vip_port_id", sa.String(length=40), nullable=True),
        sa.Column("vip_address", sa.String(length=64), nullable=False),
        sa.Column("topology", sa.String(length=16), nullable=False),
        sa.Column("vrrp_id", sa.Integer(), nullable=True),
        sa.Column("admin_state_up", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("provisioning_status", sa.String(length=16), nullable=False),
        sa.Column("operating_status", sa.String(length=16), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=True),
        sa.Column("applied", sa.JSON(), nullable=True),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_loadbalancers_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_loadbalancers_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["vip_network_id"],
            ["networks.id"],
            name=op.f("fk_loadbalancers_vip_network_id_networks"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["vip_port_id"],
            ["ports.id"],
            name=op.f("fk_loadbalancers_vip_port_id_ports"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["vip_subnet_id"],
            ["subnets.id"],
            name=op.f("fk_loadbalancers_vip_subnet_id_subnets"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loadbalancers")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_loadbalancers_project_id")),
    )
    op.create_index(op.f("ix_loadbalancers_project_id"), "loadbalancers", ["project_id"], unique=False)
    op.create_index(op.f("ix_loadbalancers_tenant_id"), "loadbalancers", ["tenant_id"], unique=False)
    op.create_index(op.f("ix_loadbalancers_vip_subnet_id"), "loadbalancers", ["vip_subnet_id"], unique=False)
    op.create_table(
        "lb_amphorae",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("loadbalancer_id", sa.String(length=40), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("host_id", sa.String(length=40), nullable=True),
        sa.Column("port_id", sa.String(length=40), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_lb_amphorae_host_id_hosts"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["loadbalancer_id"],
            ["loadbalancers.id"],
            name=op.f("fk_lb_amphorae_loadbalancer_id_loadbalancers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["port_id"], ["ports.id"], name=op.f("fk_lb_amphorae_port_id_ports"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lb_amphorae")),
    )
    op.create_index(op.f("ix_lb_amphorae_host_id"), "lb_amphorae", ["host_id"], unique=False)
    op.create_index(op.f("ix_lb_amphorae_loadbalancer_id"), "lb_amphorae", ["loadbalancer_id"], unique=False)
    op.create_table(
        "lb_listeners",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("loadbalancer_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("protocol", sa.String(length=20), nullable=False),
        sa.Column("protocol_port", sa.Integer(), nullable=False),
        sa.Column("default_pool_id", sa.String(length=40), nullable=True),
        sa.Column("connection_limit", sa.Integer(), nullable=True),
        sa.Column("timeout_client_data", sa.Integer(), nullable=True),
        sa.Column("timeout_member_connect", sa.Integer(), nullable=True),
        sa.Column("timeout_member_data", sa.Integer(), nullable=True),
        sa.Column("insert_headers", sa.JSON(), nullable=False),
        sa.Column("default_tls_container_ref", sa.String(length=64), nullable=True),
        sa.Column("sni_container_refs", sa.JSON(), nullable=False),
        sa.Column("protection", sa.JSON(), nullable=True),
        sa.Column("l7policies", sa.JSON(), nullable=False),
        sa.Column("admin_state_up", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("operating_status", sa.String(length=16), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["loadbalancer_id"],
            ["loadbalancers.id"],
            name=op.f("fk_lb_listeners_loadbalancer_id_loadbalancers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_lb_listeners_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lb_listeners")),
        sa.UniqueConstraint("loadbalancer_id", "protocol_port", name=op.f("uq_lb_listeners_loadbalancer_id")),
    )
    op.create_index(
        op.f("ix_lb_listeners_loadbalancer_id"), "lb_listeners", ["loadbalancer_id"], unique=False
    )
    op.create_index(op.f("ix_lb_listeners_tenant_id"), "lb_listeners", ["tenant_id"], unique=False)
    op.create_table(
        "lb_pools",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("loadbalancer_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("protocol", sa.String(length=20), nullable=False),
        sa.Column("lb_algorithm", sa.String(length=20), nullable=False),
        sa.Column("hash_key", sa.String(length=128), nullable=True),
        sa.Column("session_persistence", sa.JSON(), nullable=True),
        sa.Column("healthmonitor", sa.JSON(), nullable=True),
        sa.Column("admin_state_up", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("operating_status", sa.String(length=16), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["loadbalancer_id"],
            ["loadbalancers.id"],
            name=op.f("fk_lb_pools_loadbalancer_id_loadbalancers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_lb_pools_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lb_pools")),
    )
    op.create_index(op.f("ix_lb_pools_loadbalancer_id"), "lb_pools", ["loadbalancer_id"], unique=False)
    op.create_index(op.f("ix_lb_pools_tenant_id"), "lb_pools", ["tenant_id"], unique=False)
    op.create_table(
        "lb_members",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("pool_id", sa.String(length=40), nullable=False),
        sa.Column("loadbalancer_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("protocol_port", sa.Integer(), nullable=False),
        sa.Column("subnet_id", sa.String(length=40), nullable=False),
        sa.Column("vm_id", sa.String(length=40), nullable=True),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("backup", sa.Boolean(), nullable=False),
        sa.Column("admin_state_up", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("drain", sa.Boolean(), nullable=False),
        sa.Column("operating_status", sa.String(length=16), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["loadbalancer_id"],
            ["loadbalancers.id"],
            name=op.f("fk_lb_members_loadbalancer_id_loadbalancers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["lb_pools.id"], name=op.f("fk_lb_members_pool_id_lb_pools"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_lb_members_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lb_members")),
        sa.UniqueConstraint("pool_id", "address", "protocol_port", name=op.f("uq_lb_members_pool_id")),
    )
    op.create_index(op.f("ix_lb_members_loadbalancer_id"), "lb_members", ["loadbalancer_id"], unique=False)
    op.create_index(op.f("ix_lb_members_pool_id"), "lb_members", ["pool_id"], unique=False)
    op.create_index(op.f("ix_lb_members_tenant_id"), "lb_members", ["tenant_id"], unique=False)


def downgrade() -> None:
    for table in ("lb_members", "lb_pools", "lb_listeners", "lb_amphorae", "loadbalancers"):
        op.drop_table(table)

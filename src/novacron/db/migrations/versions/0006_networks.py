"""tenant networks: networks, subnets, ports, routers, floating IPs, security groups, QoS

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "networks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("vni", sa.Integer(), nullable=False),
        sa.Column("mtu", sa.Integer(), nullable=False),
        sa.Column("external", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("physical_interface", sa.String(length=15), nullable=True),
        sa.Column("shared", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_networks_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_networks_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_networks")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_networks_project_id")),
        sa.UniqueConstraint("vni", name=op.f("uq_networks_vni")),
    )
    op.create_index(op.f("ix_networks_project_id"), "networks", ["project_id"], unique=False)
    op.create_index(op.f("ix_networks_tenant_id"), "networks", ["tenant_id"], unique=False)
    op.create_table(
        "qos_policies",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ingress_kbps", sa.Integer(), nullable=True),
        sa.Column("egress_kbps", sa.Integer(), nullable=True),
        sa.Column("guaranteed_kbps", sa.Integer(), nullable=True),
        sa.Column("dscp", sa.Integer(), nullable=True),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_qos_policies_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_qos_policies_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qos_policies")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_qos_policies_project_id")),
    )
    op.create_index(op.f("ix_qos_policies_project_id"), "qos_policies", ["project_id"], unique=False)
    op.create_index(op.f("ix_qos_policies_tenant_id"), "qos_policies", ["tenant_id"], unique=False)
    op.create_table(
        "security_groups",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("selector", sa.JSON(), nullable=True),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_security_groups_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_security_groups_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_groups")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_security_groups_project_id")),
    )
    op.create_index(op.f("ix_security_groups_project_id"), "security_groups", ["project_id"], unique=False)
    op.create_index(op.f("ix_security_groups_tenant_id"), "security_groups", ["tenant_id"], unique=False)
    op.create_table(
        "routers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("external_network_id", sa.String(length=40), nullable=True),
        sa.Column("snat", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["external_network_id"],
            ["networks.id"],
            name=op.f("fk_routers_external_network_id_networks"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_routers_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_routers_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routers")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_routers_project_id")),
    )
    op.create_index(op.f("ix_routers_project_id"), "routers", ["project_id"], unique=False)
    op.create_index(op.f("ix_routers_tenant_id"), "routers", ["tenant_id"], unique=False)
    op.create_table(
        "security_group_rules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("group_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("ethertype", sa.String(length=4), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=True),
        sa.Column("port_min", sa.Integer(), nullable=True),
        sa.Column("port_max", sa.Integer(), nullable=True),
        sa.Column("remote_cidr", sa.String(length=64), nullable=True),
        sa.Column("remote_group_id", sa.String(length=40), nullable=True),
        sa.Column("remote_labels", sa.JSON(), nullable=True),
        sa.Column("sni_allow", sa.JSON(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["security_groups.id"],
            name=op.f("fk_security_group_rules_group_id_security_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["remote_group_id"],
            ["security_groups.id"],
            name=op.f("fk_security_group_rules_remote_group_id_security_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_security_group_rules_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_group_rules")),
    )
    op.create_index(
        op.f("ix_security_group_rules_group_id"), "security_group_rules", ["group_id"], unique=False
    )
    op.create_index(
        op.f("ix_security_group_rules_remote_group_id"),
        "security_group_rules",
        ["remote_group_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_security_group_rules_tenant_id"), "security_group_rules", ["tenant_id"], unique=False
    )
    op.create_table(
        "subnets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("network_id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ip_version", sa.Integer(), nullable=False),
        sa.Column("cidr", sa.String(length=64), nullable=False),
        sa.Column("gateway_ip", sa.String(length=64), nullable=True),
        sa.Column("allocation_pools", sa.JSON(), nullable=False),
        sa.Column("dns_servers", sa.JSON(), nullable=False),
        sa.Column("host_routes", sa.JSON(), nullable=False),
        sa.Column("dhcp", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], name=op.f("fk_subnets_network_id_networks"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_subnets_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_subnets_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subnets")),
        sa.UniqueConstraint("network_id", "name", name=op.f("uq_subnets_network_id")),
    )
    op.create_index(op.f("ix_subnets_network_id"), "subnets", ["network_id"], unique=False)
    op.create_index(op.f("ix_subnets_project_id"), "subnets", ["project_id"], unique=False)
    op.create_index(op.f("ix_subnets_tenant_id"), "subnets", ["tenant_id"], unique=False)
    op.create_table(
        "ports",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("network_id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=20), nullable=False),
        sa.Column("vm_id", sa.String(length=40), nullable=True),
        sa.Column("router_id", sa.String(length=40), nullable=True),
        sa.Column("host_id", sa.String(length=40), nullable=True),
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("device", sa.String(length=15), nullable=False),
        sa.Column("port_security", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("vnic_type", sa.String(length=12), server_default="normal", nullable=False),
        sa.Column("qos_policy_id", sa.String(length=40), nullable=True),
        sa.Column("position", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_ports_host_id_hosts"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], name=op.f("fk_ports_network_id_networks"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_ports_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["qos_policy_id"],
            ["qos_policies.id"],
            name=op.f("fk_ports_qos_policy_id_qos_policies"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["router_id"], ["routers.id"], name=op.f("fk_ports_router_id_routers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_ports_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["vm_id"], ["vms.id"], name=op.f("fk_ports_vm_id_vms"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ports")),
        sa.UniqueConstraint("network_id", "mac", name=op.f("uq_ports_network_id")),
    )
    op.create_index(op.f("ix_ports_network_id"), "ports", ["network_id"], unique=False)
    op.create_index(op.f("ix_ports_project_id"), "ports", ["project_id"], unique=False)
    op.create_index(op.f("ix_ports_router_id"), "ports", ["router_id"], unique=False)
    op.create_index(op.f("ix_ports_tenant_id"), "ports", ["tenant_id"], unique=False)
    op.create_index(op.f("ix_ports_vm_id"), "ports", ["vm_id"], unique=False)
    op.create_table(
        "floating_ips",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("network_id", sa.String(length=40), nullable=False),
        sa.Column("own_port_id", sa.String(length=40), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("port_id", sa.String(length=40), nullable=True),
        sa.Column("router_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name=op.f("fk_floating_ips_network_id_networks"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["own_port_id"], ["ports.id"], name=op.f("fk_floating_ips_own_port_id_ports"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["port_id"], ["ports.id"], name=op.f("fk_floating_ips_port_id_ports"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_floating_ips_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["router_id"], ["routers.id"], name=op.f("fk_floating_ips_router_id_routers"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_floating_ips_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_floating_ips")),
        sa.UniqueConstraint("own_port_id", name=op.f("uq_floating_ips_own_port_id")),
    )
    op.create_index(op.f("ix_floating_ips_network_id"), "floating_ips", ["network_id"], unique=False)
    op.create_index(op.f("ix_floating_ips_port_id"), "floating_ips", ["port_id"], unique=False)
    op.create_index(op.f("ix_floating_ips_project_id"), "floating_ips", ["project_id"], unique=False)
    op.create_index(op.f("ix_floating_ips_router_id"), "floating_ips", ["router_id"], unique=False)
    op.create_index(op.f("ix_floating_ips_tenant_id"), "floating_ips", ["tenant_id"], unique=False)
    op.create_table(
        "ip_allocations",
        sa.Column("subnet_id", sa.String(length=40), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("port_id", sa.String(length=40), nullable=False),
        sa.Column("network_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name=op.f("fk_ip_allocations_network_id_networks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["port_id"], ["ports.id"], name=op.f("fk_ip_allocations_port_id_ports"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["subnet_id"],
            ["subnets.id"],
            name=op.f("fk_ip_allocations_subnet_id_subnets"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("subnet_id", "ip", name=op.f("pk_ip_allocations")),
    )
    op.create_index(op.f("ix_ip_allocations_network_id"), "ip_allocations", ["network_id"], unique=False)
    op.create_index(op.f("ix_ip_allocations_port_id"), "ip_allocations", ["port_id"], unique=False)
    op.create_table(
        "port_security_groups",
        sa.Column("port_id", sa.String(length=40), nullable=False),
        sa.Column("group_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["security_groups.id"],
            name=op.f("fk_port_security_groups_group_id_security_groups"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["port_id"], ["ports.id"], name=op.f("fk_port_security_groups_port_id_ports"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("port_id", "group_id", name=op.f("pk_port_security_groups")),
    )
    op.create_index(
        op.f("ix_port_security_groups_group_id"), "port_security_groups", ["group_id"], unique=False
    )
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("underlay_ip", sa.String(length=64), nullable=True))
    with op.batch_alter_table("vms") as batch:
        batch.add_column(sa.Column("labels", sa.JSON(), server_default=sa.text("'{}'"), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("vms") as batch:
        batch.drop_column("labels")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("underlay_ip")
    op.drop_index(op.f("ix_port_security_groups_group_id"), table_name="port_security_groups")
    op.drop_table("port_security_groups")
    op.drop_index(op.f("ix_ip_allocations_port_id"), table_name="ip_allocations")
    op.drop_index(op.f("ix_ip_allocations_network_id"), table_name="ip_allocations")
    op.drop_table("ip_allocations")
    op.drop_index(op.f("ix_floating_ips_tenant_id"), table_name="floating_ips")
    op.drop_index(op.f("ix_floating_ips_router_id"), table_name="floating_ips")
    op.drop_index(op.f("ix_floating_ips_project_id"), table_name="floating_ips")
    op.drop_index(op.f("ix_floating_ips_port_id"), table_name="floating_ips")
    op.drop_index(op.f("ix_floating_ips_network_id"), table_name="floating_ips")
    op.drop_table("floating_ips")
    op.drop_index(op.f("ix_ports_vm_id"), table_name="ports")
    op.drop_index(op.f("ix_ports_tenant_id"), table_name="ports")
    op.drop_index(op.f("ix_ports_router_id"), table_name="ports")
    op.drop_index(op.f("ix_ports_project_id"), table_name="ports")
    op.drop_index(op.f("ix_ports_network_id"), table_name="ports")
    op.drop_table("ports")
    op.drop_index(op.f("ix_subnets_tenant_id"), table_name="subnets")
    op.drop_index(op.f("ix_subnets_project_id"), table_name="subnets")
    op.drop_index(op.f("ix_subnets_network_id"), table_name="subnets")
    op.drop_table("subnets")
    op.drop_index(op.f("ix_security_group_rules_tenant_id"), table_name="security_group_rules")
    op.drop_index(op.f("ix_security_group_rules_remote_group_id"), table_name="security_group_rules")
    op.drop_index(op.f("ix_security_group_rules_group_id"), table_name="security_group_rules")
    op.drop_table("security_group_rules")
    op.drop_index(op.f("ix_routers_tenant_id"), table_name="routers")
    op.drop_index(op.f("ix_routers_project_id"), table_name="routers")
    op.drop_table("routers")
    op.drop_index(op.f("ix_security_groups_tenant_id"), table_name="security_groups")
    op.drop_index(op.f("ix_security_groups_project_id"), table_name="security_groups")
    op.drop_table("security_groups")
    op.drop_index(op.f("ix_qos_policies_tenant_id"), table_name="qos_policies")
    op.drop_index(op.f("ix_qos_policies_project_id"), table_name="qos_policies")
    op.drop_table("qos_policies")
    op.drop_index(op.f("ix_networks_tenant_id"), table_name="networks")
    op.drop_index(op.f("ix_networks_project_id"), table_name="networks")
    op.drop_table("networks")

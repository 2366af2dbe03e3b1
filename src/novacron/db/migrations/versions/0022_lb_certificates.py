"""lb_certificates, acme_accounts: load balancers' TLS certificates (keys sealed) and ACME accounts

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lb_certificates",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=True),
        sa.Column("private_key", sa.Text(), nullable=True),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=True),
        sa.Column("issuer", sa.String(length=512), nullable=True),
        sa.Column("serial", sa.String(length=64), nullable=True),
        sa.Column("fingerprint_sha256", sa.String(length=64), nullable=True),
        sa.Column("not_before", novacron.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("not_after", novacron.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("acme_names", sa.JSON(), nullable=True),
        sa.Column("acme_directory_url", sa.String(length=512), nullable=True),
        sa.Column("acme_loadbalancer_id", sa.String(length=40), nullable=True),
        sa.Column("renew_after", novacron.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_lb_certificates_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_lb_certificates_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lb_certificates")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_lb_certificates_project_id")),
    )
    for column in ("tenant_id", "project_id", "status", "not_after", "renew_after"):
        op.create_index(op.f(f"ix_lb_certificates_{column}"), "lb_certificates", [column], unique=False)
    op.create_table(
        "acme_accounts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("directory_url", sa.String(length=512), nullable=False),
        sa.Column("key_pem", sa.Text(), nullable=False),
        sa.Column("created_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_acme_accounts_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acme_accounts")),
        sa.UniqueConstraint("tenant_id", "directory_url", name=op.f("uq_acme_accounts_tenant_id")),
    )
    op.create_index(op.f("ix_acme_accounts_tenant_id"), "acme_accounts", ["tenant_id"], unique=False)


def downgrade() -> None:
    op.drop_table("acme_accounts")
    op.drop_table("lb_certificates")

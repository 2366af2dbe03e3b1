"""kms: tenants' keys and their versions, tenant secrets, the secrets VMs are created with
(identity/kms.py)

Revision ID: 0048
Revises: 0047
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from novacron.db.base import UTCDateTime

revision = "0048"
down_revision = "0047"
branch_labels = None
depends_on = None


def _stamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "kms_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("algorithm", sa.String(32), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("primary_version", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("rotated_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("deletion_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("destroyed_at", UTCDateTime(timezone=True), nullable=True),
        *_stamps(),
        sa.UniqueConstraint("tenant_id", "name", name="uq_kms_keys_tenant_id"),
    )
    op.create_table(
        "kms_key_versions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("key_id", sa.String(40), sa.ForeignKey("kms_keys.id", ondelete="CASCADE"), index=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("material", sa.Text(), nullable=True),
        *_stamps(),
        sa.UniqueConstraint("key_id", "version", name="uq_kms_key_versions_key_id"),
    )
    op.create_table(
        "tenant_secrets",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(40), sa.ForeignKey("kms_keys.id", ondelete="CASCADE"), index=True),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("path", sa.String(255), nullable=False),
        *_stamps(),
        sa.UniqueConstraint("tenant_id", "name", name="uq_tenant_secrets_tenant_id"),
    )
    op.create_table(
        "vm_secrets",
        sa.Column("vm_id", sa.String(40), sa.ForeignKey("vms.id", ondelete="CASCADE"), primary_key=True),
        sa.Column(
            "secret_id",
            sa.String(40),
            sa.ForeignKey("tenant_secrets.id", ondelete="CASCADE"),
            primary_key=True,
            index=True,
        ),
    )


def downgrade() -> None:
    for table in ("vm_secrets", "tenant_secrets", "kms_key_versions", "kms_keys"):
        op.drop_table(table)

"""probe_tls: HTTPS probes verify the target's certificate (name, CA), unless told not to

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("probes") as batch:
        # probes made before this checked reachability only: they keep doing so
        batch.add_column(sa.Column("tls_verify", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("tls_server_name", sa.String(length=253), nullable=True))
        batch.add_column(sa.Column("tls_ca_pem", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("probes") as batch:
        batch.drop_column("tls_ca_pem")
        batch.drop_column("tls_server_name")
        batch.drop_column("tls_verify")

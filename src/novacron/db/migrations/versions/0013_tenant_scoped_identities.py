"""Usernames unique per tenant; join tokens that re-key one named host

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a username is unique inside its tenant only: a global constraint told every tenant which
    # names the others use (409 "already exists"); platform users (no tenant) are checked in code
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_username", type_="unique")
        batch.create_unique_constraint("uq_users_tenant_id", ["tenant_id", "username"])
        batch.create_index("ix_users_username", ["username"], unique=False)
    # a token minted for one existing host (its reinstall): the only way to replace its credential
    with op.batch_alter_table("join_tokens") as batch:
        batch.add_column(sa.Column("host_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("join_tokens") as batch:
        batch.drop_column("host_id")
    with op.batch_alter_table("users") as batch:
        batch.drop_index("ix_users_username")
        batch.drop_constraint("uq_users_tenant_id", type_="unique")
        batch.create_unique_constraint("uq_users_username", ["username"])

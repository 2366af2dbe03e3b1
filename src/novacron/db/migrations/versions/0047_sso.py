"""sso: tenants' identity providers, sign-ins under way, users' provider links (identity/sso*.py)

Revision ID: 0047
Revises: 0046
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from novacron.db.base import UTCDateTime

revision = "0047"
down_revision = "0046"
branch_labels = None
depends_on = None


def _stamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "identity_providers",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(64), nullable=False),
        sa.Column("preset", sa.String(16), nullable=False),
        sa.Column("issuer", sa.String(512), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("client_secret", sa.Text(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("username_claim", sa.String(64), nullable=False),
        sa.Column("email_claim", sa.String(64), nullable=False),
        sa.Column("groups_claim", sa.String(64), nullable=False),
        sa.Column("group_roles", sa.JSON(), nullable=False),
        sa.Column("default_role", sa.String(32), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        *_stamps(),
        sa.UniqueConstraint("tenant_id", "name"),
    )
    op.create_table(
        "sso_logins",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "provider_id",
            sa.String(40),
            sa.ForeignKey("identity_providers.id", ondelete="CASCADE"),
            index=True,
        ),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("redirect_uri", sa.String(512), nullable=True),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False, index=True),
    )
    op.create_table(
        "sso_links",
        sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column(
            "provider_id",
            sa.String(40),
            sa.ForeignKey("identity_providers.id", ondelete="CASCADE"),
            index=True,
        ),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("tokens", sa.Text(), nullable=False),
        sa.Column("checked_at", UTCDateTime(timezone=True), nullable=True),
        *_stamps(),
        sa.UniqueConstraint("provider_id", "subject"),
    )


def downgrade() -> None:
    op.drop_table("sso_links")
    op.drop_table("sso_logins")
    op.drop_table("identity_providers")

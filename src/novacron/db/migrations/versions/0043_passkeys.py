"""mfa_passkeys, mfa_passkey_challenges: WebAuthn passkeys as a second factor

Revision ID: 0043
Revises: 0042
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from novacron.db.base import UTCDateTime

revision = "0043"
down_revision = "0042"
branch_labels = None
depends_on = None


def _stamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
    ]


def _user() -> sa.Column[object]:
    fk = sa.ForeignKey("users.id", ondelete="CASCADE")
    return sa.Column("user_id", sa.String(40), fk, nullable=False)


def upgrade() -> None:
    op.create_table(
        "mfa_passkeys",
        sa.Column("id", sa.String(40), primary_key=True),
        _user(),
        sa.Column("credential_id", sa.String(1400), nullable=False, unique=True),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("last_used_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("stepup_sid", sa.String(40), nullable=True),
        sa.Column("stepup_at", UTCDateTime(timezone=True), nullable=True),
        *_stamps(),
    )
    op.create_index("ix_mfa_passkeys_user_id", "mfa_passkeys", ["user_id"])
    op.create_table(
        "mfa_passkey_challenges",
        sa.Column("id", sa.String(40), primary_key=True),
        _user(),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("challenge", sa.String(128), nullable=False, unique=True),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        *_stamps(),
    )
    op.create_index("ix_mfa_passkey_challenges_user_id", "mfa_passkey_challenges", ["user_id"])


def downgrade() -> None:
    op.drop_table("mfa_passkey_challenges")
    op.drop_table("mfa_passkeys")

"""second factors: TOTP authenticators, recovery codes, login challenges, tenant MFA policies

Revision ID: 0039
Revises: 0038
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from novacron.db.base import UTCDateTime

revision = "0039"
down_revision = "0038"
branch_labels = None
depends_on = None


def _stamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
    ]


def _user(primary: bool = False) -> sa.Column[object]:
    fk = sa.ForeignKey("users.id", ondelete="CASCADE")
    return sa.Column("user_id", sa.String(40), fk, primary_key=primary, nullable=False)


def upgrade() -> None:
    op.create_table(
        "mfa_totp",
        _user(primary=True),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("confirmed_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_step", sa.Integer(), nullable=False),
        sa.Column("stepup_sid", sa.String(40), nullable=True),
        sa.Column("stepup_at", UTCDateTime(timezone=True), nullable=True),
        *_stamps(),
    )
    op.create_table(
        "mfa_recovery_codes",
        sa.Column("id", sa.String(40), primary_key=True),
        _user(),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("used_at", UTCDateTime(timezone=True), nullable=True),
        *_stamps(),
    )
    op.create_index("ix_mfa_recovery_codes_user_id", "mfa_recovery_codes", ["user_id"])
    op.create_table(
        "mfa_challenges",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        _user(),
        sa.Column("throttle_key", sa.String(200), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        *_stamps(),
    )
    op.create_index("ix_mfa_challenges_user_id", "mfa_challenges", ["user_id"])
    op.create_table(
        "tenant_mfa_policies",
        sa.Column(
            "tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("require", sa.String(16), nullable=False),
        *_stamps(),
    )


def downgrade() -> None:
    for table in ("tenant_mfa_policies", "mfa_challenges", "mfa_recovery_codes", "mfa_totp"):
        op.drop_table(table)

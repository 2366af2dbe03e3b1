"""alerting: alert rules, receivers (notification policies) and the alerts they raised

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_WHEN = novacron.db.base.UTCDateTime(timezone=True)


def _owned(table: str) -> list[Any]:
    """id, tenant, name and the timestamps/version every tenant-owned alerting resource has."""
    return [
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f(f"fk_{table}_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f(f"uq_{table}_tenant_id")),
    ]


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        *_owned("alert_rules"),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("expr", sa.Text(), nullable=False),
        sa.Column("for_s", sa.Integer(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("receiver_ids", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
    )
    op.create_index(op.f("ix_alert_rules_tenant_id"), "alert_rules", ["tenant_id"], unique=False)
    op.create_table(
        "alert_receivers",
        *_owned("alert_receivers"),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("url_shown", sa.Text(), nullable=True),
        sa.Column("email_to", sa.String(length=254), nullable=True),
        sa.Column("signing_secret", sa.Text(), nullable=True),
        sa.Column("group_by", sa.JSON(), nullable=False),
        sa.Column("group_wait_s", sa.Integer(), nullable=False),
        sa.Column("group_interval_s", sa.Integer(), nullable=False),
        sa.Column("repeat_interval_s", sa.Integer(), nullable=False),
        sa.Column("matchers", sa.JSON(), nullable=False),
    )
    op.create_index(op.f("ix_alert_receivers_tenant_id"), "alert_receivers", ["tenant_id"], unique=False)
    op.create_table(
        "alerts",
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=True),
        sa.Column("rule_id", sa.String(length=40), nullable=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("starts_at", _WHEN, nullable=False),
        sa.Column("ends_at", _WHEN, nullable=True),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_rule_id"), "alerts", ["rule_id"], unique=False)
    op.create_index(op.f("ix_alerts_tenant_id"), "alerts", ["tenant_id"], unique=False)


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("alert_receivers")
    op.drop_table("alert_rules")

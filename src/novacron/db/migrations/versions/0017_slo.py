"""slo: synthetic probes, their last results, and SLOs

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

Number 0017 was given to this branch; it follows 0016 (traces). Whoever merges another
migration numbered before it points this ``down_revision`` at that one.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_WHEN = novacron.db.base.UTCDateTime(timezone=True)


def _owned(table: str) -> list[Any]:
    """id, project, tenant, name, timestamps and version of a tenant-owned resource."""
    return [
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f(f"fk_{table}_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f(f"fk_{table}_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("project_id", "name", name=op.f(f"uq_{table}_project_id")),
    ]


def _indexes(table: str, *columns: str) -> None:
    for column in ("project_id", "tenant_id", *columns):
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=False)


def upgrade() -> None:
    op.create_table(
        "probes",
        *_owned("probes"),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("port_id", sa.String(length=40), nullable=False),
        sa.Column("vm_id", sa.String(length=40), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("target_port", sa.Integer(), nullable=True),
        sa.Column("path", sa.String(length=256), nullable=False),
        sa.Column("expected_status", sa.Integer(), nullable=False),
        sa.Column("body_contains", sa.String(length=256), nullable=True),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("timeout_s", sa.Float(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["port_id"], ["ports.id"], name=op.f("fk_probes_port_id_ports"), ondelete="CASCADE"
        ),
    )
    _indexes("probes", "port_id")
    op.create_table(
        "probe_results",
        sa.Column("probe_id", sa.String(length=40), nullable=False),
        sa.Column("checked_at", _WHEN, nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("error", sa.String(length=512), nullable=True),
        sa.Column("vantage", sa.String(length=160), nullable=False),
        sa.ForeignKeyConstraint(
            ["probe_id"], ["probes.id"], name=op.f("fk_probe_results_probe_id_probes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("probe_id", name=op.f("pk_probe_results")),
    )
    op.create_table(
        "slos",
        *_owned("slos"),
        sa.Column("probe_id", sa.String(length=40), nullable=False),
        sa.Column("indicator", sa.String(length=16), nullable=False),
        sa.Column("latency_threshold_s", sa.Float(), nullable=True),
        sa.Column("target", sa.Float(), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("alert_rule_ids", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["probe_id"], ["probes.id"], name=op.f("fk_slos_probe_id_probes"), ondelete="CASCADE"
        ),
    )
    _indexes("slos", "probe_id")


def downgrade() -> None:
    op.drop_table("slos")
    op.drop_table("probe_results")
    op.drop_table("probes")

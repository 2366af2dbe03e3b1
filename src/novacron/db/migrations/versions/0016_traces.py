"""Tracing: the local store of recent spans, and the trace context tasks and host operations carry

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import novacron.db.base

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trace_spans",
        sa.Column("id", sa.String(length=48), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("span_id", sa.String(length=16), nullable=False),
        sa.Column("parent_id", sa.String(length=16), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("entry", sa.Boolean(), nullable=False),
        sa.Column("started_at", novacron.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("duration_us", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trace_spans")),
    )
    for column in ("trace_id", "entry", "started_at", "tenant_id"):
        op.create_index(op.f(f"ix_trace_spans_{column}"), "trace_spans", [column], unique=False)
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("traceparent", sa.String(length=64), nullable=True))
    with op.batch_alter_table("host_operations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("traceparent", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("host_operations", schema=None) as batch_op:
        batch_op.drop_column("traceparent")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("traceparent")
    for column in ("tenant_id", "started_at", "entry", "trace_id"):
        op.drop_index(op.f(f"ix_trace_spans_{column}"), table_name="trace_spans")
    op.drop_table("trace_spans")

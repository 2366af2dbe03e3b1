"""vms: an index on (created_at, id), the VM list's default order

A page of ``GET /v1/vms`` is then read in index order and stops at its limit instead of sorting
every VM row the caller may see (docs/benchmarks.md, VM list at 1,000 VMs).

Revision ID: 0041
Revises: 0040
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0041"
down_revision = "0040"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_vms_created_at_id", "vms", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_vms_created_at_id", table_name="vms")

"""the audit log as a hash chain: seq, prev_hash, hash on audit_log; its head row; signed checkpoints

Existing records are chained here in id order (``db/models/audit_chain.py`` says how).

Revision ID: 0040
Revises: 0039
Create Date: 2026-12-07
"""

from __future__ import annotations

from types import SimpleNamespace

import sqlalchemy as sa
from alembic import op

from novacron.db.base import UTCDateTime
from novacron.db.models.audit_chain import GENESIS, HASHED_FIELDS, record_hash

revision = "0040"
down_revision = "0039"
branch_labels = None
depends_on = None


def _big() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("seq", _big(), nullable=True))
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(64), nullable=True))
    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("count", _big(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", _big(), primary_key=True, autoincrement=True),
        sa.Column("time", UTCDateTime(timezone=True), nullable=False),
        sa.Column("count", _big(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("kid", sa.String(40), nullable=False),
        sa.Column("alg", sa.String(8), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
    )
    count, prev = _chain_existing()
    op.bulk_insert(head, [{"id": 1, "count": count, "head_hash": prev}])


def _chain_existing() -> tuple[int, str]:
    """Chain the records already written, oldest first; the count and head hash at the end."""
    log = sa.table(
        "audit_log",
        sa.column("id", sa.Integer()),
        sa.column("time", UTCDateTime(timezone=True)),
        sa.column("status_code", sa.Integer()),
        *(sa.column(name, sa.Text()) for name in HASHED_FIELDS if name not in {"time", "status_code"}),
        sa.column("seq", sa.Integer()),
        sa.column("prev_hash", sa.String(64)),
        sa.column("hash", sa.String(64)),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.select(log.c.id, *(log.c[name] for name in HASHED_FIELDS)).order_by(log.c.id))
    seq, prev = 0, GENESIS
    links = []
    for row in rows.mappings():
        seq += 1
        digest = record_hash(SimpleNamespace(**row), seq, prev)
        links.append({"rid": row["id"], "s": seq, "p": prev, "h": digest})
        prev = digest
    if links:
        conn.execute(
            log.update()
            .where(log.c.id == sa.bindparam("rid"))
            .values(seq=sa.bindparam("s"), prev_hash=sa.bindparam("p"), hash=sa.bindparam("h")),
            links,
        )
    return seq, prev


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_chain_head")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
        batch.drop_column("seq")

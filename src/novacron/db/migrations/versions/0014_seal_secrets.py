"""Seal the secrets older versions stored in clear (signing keys, CA key, target credentials)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

No schema change: the values of existing rows are sealed by the encryption service
(``identity/encryption.py``) that ``db.migrate.upgrade`` hands over in the Alembic config's
attributes. Without one (a bare ``alembic upgrade``), nothing is sealed here and the server's
start-up does it (``identity/sealing.seal_clear_rows``) before it serves anything.
"""

from __future__ import annotations

import json
import logging

import sqlalchemy as sa
from alembic import context, op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

_TEXT = (
    ("signing_keys", "kid", "private_pem"),
    ("certificate_authorities", "name", "key_pem"),
)


def upgrade() -> None:
    enc = context.config.attributes.get("encryption")
    if enc is None:
        log.info("0014: no encryption service given; the server seals clear secrets at start-up")
        return
    from novacron.identity.encryption import is_sealed

    conn = op.get_bind()
    sealed = 0
    for table, key, column in _TEXT:
        t = sa.table(table, sa.column(key), sa.column(column))
        for ident, value in conn.execute(sa.select(t.c[key], t.c[column])).all():
            if value is not None and not is_sealed(value):
                value = enc.seal_text(value, f"{table}.{column}:{ident}")
                conn.execute(t.update().where(t.c[key] == ident).values({column: value}))
                sealed += 1
    targets = sa.table("backup_targets", sa.column("id"), sa.column("config", sa.JSON))
    for ident, config in conn.execute(sa.select(targets.c.id, targets.c.config)).all():
        raw = json.loads(config) if isinstance(config, str) else dict(config or {})
        new = enc.seal_fields(raw, f"backup_targets.config:{ident}")
        if new != raw:
            conn.execute(targets.update().where(targets.c.id == ident).values(config=new))
            sealed += 1
    # db.migrate.upgrade scrubs the clear copies from the file once this transaction committed
    context.config.attributes["sealed"] = sealed


def downgrade() -> None:
    pass  # sealed values stay sealed: opening them again would need the KEK here

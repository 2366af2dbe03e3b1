"""The audit log's hash chain: its head row, its signed checkpoints, and the hook that chains
every audit record as it is flushed.

Each ``AuditRecord`` gets a position ``seq`` (1, 2, ...), the ``prev_hash`` of the record before
(``GENESIS`` for the first) and ``hash`` = SHA-256 over a canonical JSON of its fields, ``seq``
and ``prev_hash`` (``record_hash``). The hook runs in the writer's own transaction, so a record
and its link are committed together, wherever the record is added (the audit middleware, the
login throttle's lockouts): ``Database`` installs the hook on its writing sessions when it is made,
before any thread uses them. Appends are serialised by updating the single ``audit_chain_head``
row first: on PostgreSQL that row lock makes a concurrent writer wait for this transaction, on
SQLite the update takes the database's write lock; so two writers can never link to the same
head and fork the chain.

Checkpoints (``identity/audit_chain.py`` signs them) hold a count and the head hash at that
count, signed with the platform's JWT signing key: a verifier holding them notices a rewritten
chain and a truncated tail, which the unkeyed chain alone cannot show.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import BigInteger, Integer, String, Table, Text, insert, select, update
from sqlalchemy.orm import Mapped, Session, UOWTransaction, mapped_column

from novacron.db.base import Base, UTCDateTime, utcnow
from novacron.db.models.ops import AuditRecord

GENESIS = "0" * 64
#: the record's fields the hash covers (with ``seq`` and ``prev_hash``); its id is not covered
#: (it is given by the database at insert, after the hash is made) and names the record only
HASHED_FIELDS = (
    "time",
    "actor_id",
    "actor_name",
    "tenant_id",
    "action",
    "method",
    "path",
    "resource_id",
    "source_ip",
    "status_code",
    "outcome",
    "detail",
)


class AuditChainHead(Base):
    """The one row (id 1) naming the chain's last position and hash; appends lock it."""

    __tablename__ = "audit_chain_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    head_hash: Mapped[str] = mapped_column(String(64), default=GENESIS)


class AuditCheckpoint(Base):
    """A signed statement: the chain had ``count`` records and the last one's hash was
    ``head_hash`` at ``time``; signed by the signing key ``kid``."""

    __tablename__ = "audit_checkpoints"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    count: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    head_hash: Mapped[str] = mapped_column(String(64))
    kid: Mapped[str] = mapped_column(String(40))
    alg: Mapped[str] = mapped_column(String(8))
    #: base64url of the signature over ``checkpoint_message``
    signature: Mapped[str] = mapped_column(Text)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def record_hash(record: Any, seq: int, prev_hash: str) -> str:
    """SHA-256 (hex) of a record's canonical encoding: sorted-key compact JSON of its hashed
    fields, its ``seq``, its ``prev_hash`` and the encoding's version."""
    doc = {name: _plain(getattr(record, name)) for name in HASHED_FIELDS}
    doc.update(seq=seq, prev_hash=prev_hash, v=1)
    data = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


def checkpoint_message(count: int, head_hash: str, time: datetime) -> bytes:
    """The bytes a checkpoint signs."""
    return f"novacron-audit-checkpoint/v1\n{count}\n{head_hash}\n{_plain(time)}".encode()


_HEAD = cast(Table, AuditChainHead.__table__)


def _reserve(session: Session, n: int) -> tuple[int, str]:
    """Take ``n`` positions at the head (locking it until commit): the first seq's predecessor
    count and the head hash before them."""
    conn = session.connection()
    bump = update(_HEAD).where(_HEAD.c.id == 1).values(count=_HEAD.c.count + n)
    if conn.execute(bump).rowcount == 0:  # a database made without the migrations
        conn.execute(insert(_HEAD).values(id=1, count=0, head_hash=GENESIS))
        conn.execute(bump)
    count, head = conn.execute(select(_HEAD.c.count, _HEAD.c.head_hash).where(_HEAD.c.id == 1)).one()
    return int(count) - n, str(head)


def chain(session: Session, records: Iterable[AuditRecord]) -> None:
    """Link ``records`` (new, unflushed) to the chain's head, in order, in ``session``'s transaction."""
    todo = list(records)
    if not todo:
        return
    seq, prev = _reserve(session, len(todo))
    for record in todo:
        if record.time is None:
            record.time = utcnow()
        seq += 1
        record.seq, record.prev_hash = seq, prev
        record.hash = prev = record_hash(record, seq, prev)
    session.connection().execute(update(_HEAD).where(_HEAD.c.id == 1).values(head_hash=prev))


def chain_new_records(session: Session, _flush: UOWTransaction, _instances: object) -> None:
    """The ``before_flush`` hook ``Database`` installs on its writing sessions."""
    chain(session, (o for o in session.new if isinstance(o, AuditRecord) and o.hash is None))

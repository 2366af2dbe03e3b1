"""Proving the audit log: signed checkpoints of its hash chain, and the walk that verifies both.

The chain itself is made as records are written (``db/models/audit_chain.py``). A checkpoint
signs the chain's count and head hash with the platform's active JWT signing key (``keys.py``:
ES256 or RS256, its private key sealed by the KEK, which is not in the database). One is made
every ``CHECKPOINT_EVERY`` records or ``CHECKPOINT_AGE`` after the last, in the transaction of
the record that makes it due, and on demand (``POST /v1/audit/checkpoints``).

``verify`` walks every record in chain order and every checkpoint, and names each problem:
*edited* (a record's fields no longer match its hash), *deleted* (positions missing between
two records), *inserted* (a record outside the chain, repeating a position, beyond the head, or
not linking to its predecessor), *truncated* (the head or a checkpoint counts records that are
gone) and *checkpoint* (a signature that does not verify, or a key that is not the platform's).
A key is trusted only if its sealed private key opens with the KEK and matches its public key,
so a signing key row planted by someone holding only the database does not count.
What it cannot see: someone holding the KEK too, or a tail cut together with the checkpoints
that covered it (keep an exported checkpoint outside the platform for that).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from jwt.algorithms import get_default_algorithms
from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.config import Settings
from novacron.db.base import utcnow
from novacron.db.models import AuditChainHead, AuditCheckpoint, AuditRecord, SigningKey
from novacron.db.models.audit_chain import GENESIS, checkpoint_message, record_hash
from novacron.identity.encryption import encryption_for
from novacron.identity.keys import KeyRing, private_pem_aad
from novacron.service import Service

CHECKPOINT_EVERY = 256
CHECKPOINT_AGE = timedelta(minutes=10)
_BATCH = 1000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_checkpoint(session: Session, keys: KeyRing) -> AuditCheckpoint | None:
    """Sign the chain's head now (None: nothing new since the last checkpoint)."""
    head = session.get(AuditChainHead, 1)
    count, head_hash = (head.count, head.head_hash) if head is not None else (0, GENESIS)
    last = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)).first()
    if last is not None and last.count == count and last.head_hash == head_hash:
        return None
    key = keys.ensure_active(session)
    now = utcnow()
    signature = get_default_algorithms()[key.alg].sign(checkpoint_message(count, head_hash, now), key.private)
    point = AuditCheckpoint(
        time=now, count=count, head_hash=head_hash, kid=key.kid, alg=key.alg, signature=_b64(signature)
    )
    session.add(point)
    session.flush()
    return point


def maybe_checkpoint(session: Session, keys: KeyRing) -> None:
    """Sign a checkpoint if ``CHECKPOINT_EVERY`` records or ``CHECKPOINT_AGE`` have passed."""
    head = session.get(AuditChainHead, 1)
    if head is None or head.count == 0:
        return
    last = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)).first()
    due = last is None or head.count - last.count >= CHECKPOINT_EVERY
    if due or (last is not None and head.count > last.count and utcnow() - last.time >= CHECKPOINT_AGE):
        sign_checkpoint(session, keys)


@dataclass
class Problem:
    """One thing wrong with the log: which record (or position), what kind, what exactly."""

    kind: str
    detail: str
    record_id: int | None = None
    seq: int | None = None


@dataclass
class Verification:
    """The outcome of walking the chain and its checkpoints."""

    records: int = 0
    head_count: int = 0
    head_hash: str = GENESIS
    checkpoints: int = 0
    last_checkpoint: dict[str, Any] | None = None
    #: records after the last checkpoint: chained, but no signature covers them yet
    unsigned: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Walk:
    """The state of one walk along the chain, in seq order."""

    def __init__(self, report: Verification, head_count: int, marks: set[int]) -> None:
        self.report = report
        self.head_count = head_count
        self.expected = 1
        self.prev = GENESIS
        self.prev_id: int | None = None
        self.holder: dict[int, int] = {}
        #: seq -> (record id, hash) at the positions checkpoints name
        self.marks: dict[int, tuple[int, str | None]] = {}
        self.wanted = marks

    def problem(self, kind: str, detail: str, r: AuditRecord | None = None, seq: int | None = None) -> None:
        if seq is None and r is not None:
            seq = r.seq
        self.report.problems.append(Problem(kind, detail, r.id if r else None, seq))

    def step(self, r: AuditRecord) -> None:
        seq = int(r.seq or 0)
        if seq < self.expected:
            self.problem(
                "inserted",
                f"record {r.id} repeats chain position {seq}, held by record "
                f"{self.holder.get(seq, '?')}: a forged record",
                r,
            )
            return
        if seq > self.head_count:
            self.problem("inserted", f"record {r.id} is beyond the chain's head ({self.head_count})", r)
            return
        sound = record_hash(r, seq, r.prev_hash or "") == r.hash
        if seq > self.expected:
            first, last = self.expected, seq - 1
            where = f"after record {self.prev_id}" if self.prev_id is not None else "at the start"
            gap = self.prev_id is not None and r.id - self.prev_id > 1
            ids = f" (ids {(self.prev_id or 0) + 1}..{r.id - 1})" if gap else ""
            what = f"chain positions {first}..{last} are missing {where}, before record {r.id}{ids}"
            self.problem("deleted", what, seq=first)
        elif r.prev_hash != self.prev:
            culprit = "forged in place of the record there" if sound else "edited, with its link"
            self.problem(
                "inserted" if sound else "edited",
                f"record {r.id} does not link to record {self.prev_id}: {culprit}",
                r,
            )
            sound = True  # named once
        if not sound:
            self.problem("edited", f"record {r.id}: its fields no longer match its hash (edited)", r)
        self.holder[seq] = r.id
        if seq in self.wanted:
            self.marks[seq] = (r.id, r.hash)
        self.prev, self.prev_id, self.expected = r.hash or "", r.id, seq + 1
        self.report.records += 1


class AuditChain(Service):
    """Verify the audit log, and sign a checkpoint on demand (administrators)."""

    def checkpoint(self) -> AuditCheckpoint | None:
        """Sign the chain's head now (None: the last checkpoint already covers it)."""
        return sign_checkpoint(self.session, self.ctx.tokens.keys)

    def verify(self) -> Verification:
        """Walk the whole chain and every checkpoint; see the module docstring."""
        session = self.session
        head = session.get(AuditChainHead, 1)
        report = Verification()
        report.head_count, report.head_hash = (head.count, head.head_hash) if head else (0, GENESIS)
        points = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)))
        walk = _Walk(report, max([report.head_count, *(p.count for p in points)]), {p.count for p in points})
        outside = select(AuditRecord).where(AuditRecord.seq.is_(None) | AuditRecord.hash.is_(None))
        for r in session.scalars(outside):
            walk.problem("inserted", f"record {r.id} is not in the chain (no position or hash): forged", r)
        chained = select(AuditRecord).where(AuditRecord.seq.is_not(None), AuditRecord.hash.is_not(None))
        after: tuple[int, int] = (0, 0)
        while True:
            page = list(
                session.scalars(
                    chained.where(
                        (AuditRecord.seq > after[0])
                        | ((AuditRecord.seq == after[0]) & (AuditRecord.id > after[1]))
                    )
                    .order_by(AuditRecord.seq, AuditRecord.id)
                    .limit(_BATCH)
                )
            )
            for r in page:
                walk.step(r)
            if len(page) < _BATCH:
                break
            after = (int(page[-1].seq or 0), page[-1].id)
        last_seq = walk.expected - 1
        if report.head_count > last_seq:
            what = f"the head counts {report.head_count} records, the chain ends at {last_seq}: tail cut"
            walk.problem("truncated", what, seq=last_seq + 1)
        self._check_points(points, walk, last_seq)
        return report

    def _check_points(self, points: list[AuditCheckpoint], walk: _Walk, last_seq: int) -> None:
        report = walk.report
        trusted: dict[str, Any] = {}
        for point in points:
            where = f"checkpoint {point.id} ({point.count} records, {point.time.isoformat()})"
            key = trusted.get(point.kid) or trusted.setdefault(point.kid, self._trusted_key(point.kid))
            if isinstance(key, str):
                walk.problem("checkpoint", f"{where}: {key}", seq=point.count)
                continue
            algorithm = get_default_algorithms().get(point.alg)
            message = checkpoint_message(point.count, point.head_hash, point.time)
            if algorithm is None or not algorithm.verify(message, key, _unb64(point.signature)):
                walk.problem("checkpoint", f"{where}: its signature does not verify", seq=point.count)
                continue
            report.checkpoints += 1
            if point.count > last_seq:
                what = (
                    f"{where}: the chain ends at {last_seq}; positions {last_seq + 1}..{point.count} were cut"
                )
                walk.problem("truncated", what, seq=last_seq + 1)
                continue
            mark = walk.marks.get(point.count)
            if point.count and (mark is None or mark[1] != point.head_hash):
                rid = mark[0] if mark else None
                what = f"{where}: record {rid} at position {point.count} is not the one signed (rewritten)"
                walk.report.problems.append(Problem("checkpoint", what, rid, point.count))
            report.last_checkpoint = {
                "id": point.id,
                "count": point.count,
                "head_hash": point.head_hash,
                "time": point.time.isoformat(),
                "kid": point.kid,
            }
        report.unsigned = max(0, report.records - (report.last_checkpoint or {"count": 0})["count"])

    def _trusted_key(self, kid: str) -> Any:
        """The public key of the platform's signing key ``kid``, or why it is not trusted."""
        row = self.session.get(SigningKey, kid)
        if row is None:
            return f"signed by key {kid}, which the platform does not hold (deleted, or forged)"
        settings: Settings = self.ctx.settings
        try:
            pem = encryption_for(settings).open_text(row.private_pem, private_pem_aad(kid))
            private = serialization.load_pem_private_key(pem.encode(), password=None)
        except Exception:  # noqa: BLE001 - whatever is wrong with it, the key is not the platform's
            return f"key {kid} does not open with the platform's key-encryption key (planted)"
        public = serialization.load_pem_public_key(row.public_pem.encode())
        spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        if private.public_key().public_bytes(*spki) != public.public_bytes(*spki):
            return f"key {kid}'s public key is not its private key's (replaced)"
        return public
